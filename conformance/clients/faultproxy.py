"""A TCP proxy that injects faults between korvet and Redis: latency (every chunk delivered late,
in order), silence (open connections stop forwarding without closing, as with a dead peer or a
hung proxy, while new connections work), resets and a blackhole for new connections.
Loopback only; every thread stops when the proxy is closed."""
import socket
import struct
import threading
import time
from collections import deque

from harness import free_port


class _Pipe:
    """One direction of one proxied connection, delivering what it reads `latency` seconds late."""

    def __init__(self, proxy, source, target):
        self.proxy, self.source, self.target = proxy, source, target
        self.frozen = False
        self.queue = deque()
        self.ready = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._write, daemon=True).start()

    def _read(self):
        try:
            while not self.proxy.closed:
                data = self.source.recv(65536)
                if not data:
                    break
                if self.frozen:
                    continue  # silence: swallowed, never answered, never closed
                with self.ready:
                    self.queue.append((time.monotonic() + self.proxy.latency, data))
                    self.ready.notify()
        except OSError:
            pass
        with self.ready:
            self.queue.append((0, None))
            self.ready.notify()

    def _write(self):
        while True:
            with self.ready:
                while not self.queue:
                    self.ready.wait(0.5)
                    if self.proxy.closed:
                        return
                due, data = self.queue.popleft()
            if data is None:
                break
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if self.frozen:
                continue
            try:
                self.target.sendall(data)
            except OSError:
                break
        for sock in (self.source, self.target):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class FaultProxy:
    def __init__(self, upstream_port):
        self.upstream_port = upstream_port
        self.port = free_port()
        self.latency = 0.0
        self.blackhole = False
        self.closed = False
        self.connections = []  # (client socket, upstream socket, pipes)
        self.lock = threading.Lock()
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", self.port))
        self.listener.listen(128)
        self.listener.settimeout(0.5)
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def uri(self):
        return f"redis://127.0.0.1:{self.port}"

    def _accept(self):
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            if self.blackhole:
                with self.lock:
                    self.connections.append((client, None, []))
                continue
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
            upstream.settimeout(None)
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            pipes = [_Pipe(self, client, upstream), _Pipe(self, upstream, client)]
            with self.lock:
                self.connections.append((client, upstream, pipes))

    def open_connections(self):
        with self.lock:
            return sum(1 for _, _, pipes in self.connections if pipes and not pipes[0].frozen)

    def silence_existing(self):
        """Every open connection stops forwarding in both directions and stays open."""
        with self.lock:
            for _, _, pipes in self.connections:
                for pipe in pipes:
                    pipe.frozen = True

    def reset_all(self):
        """Closes every open connection with a TCP reset."""
        with self.lock:
            connections, self.connections = self.connections, []
        for client, upstream, _ in connections:
            for sock in (client, upstream):
                if sock is None:
                    continue
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    sock.close()
                except OSError:
                    pass

    def close(self):
        self.closed = True
        self.listener.close()
        self.reset_all()
