"""Starts the real parts the client suites run against: a redis-server and a korvet broker, each
on a free loopback port, with bounded waits on readiness (never fixed sleeps)."""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
KORVET_BIN = os.environ.get("KORVET_BIN", os.path.join(ROOT, "target", "debug", "korvet"))
RDKAFKA_CLIENT = os.environ.get("RDKAFKA_CLIENT", os.path.join(ROOT, "target", "debug", "rdkafka-client"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def make_certs(folder):
    """Test certificates in `folder`: a CA (ca.pem, ca.key), a server certificate for localhost and
    127.0.0.1 (server.pem, server.key) and a client certificate with the subject C=US, O=acme,
    CN=carol (client.pem, client.key). Returns a function from file name to path."""
    path = lambda name: os.path.join(folder, name)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", path("ca.key"), "-out", path("ca.pem"), "-days", "2", "-subj", "/CN=korvet-test-ca")
    with open(path("server.ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    with open(path("client.ext"), "w") as f:
        f.write("basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n")
    for name, subject in [("server", "/CN=localhost"), ("client", "/C=US/O=acme/CN=carol")]:
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", path(f"{name}.key"), "-out", path(f"{name}.csr"), "-subj", subject)
        openssl("x509", "-req", "-in", path(f"{name}.csr"), "-CA", path("ca.pem"), "-CAkey", path("ca.key"), "-CAcreateserial",
                "-out", path(f"{name}.pem"), "-days", "2", "-extfile", path(f"{name}.ext"))
    return path


class Redis:
    def __init__(self, extra_args=()):
        self.dir = tempfile.mkdtemp(prefix="korvet-redis-")
        self.port = free_port()
        self.extra_args = list(extra_args)
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
             "--dir", self.dir] + self.extra_args,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: port_open(self.port), 20, f"redis-server on port {self.port}")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                # A replica in the middle of a sync (or a master waiting for its replicas to
                # catch up, Redis 7's shutdown-timeout) can take longer than a test will wait.
                self.proc.kill()
                self.proc.wait(timeout=10)

    @property
    def uri(self):
        return f"redis://127.0.0.1:{self.port}"

    def cli(self, *args):
        """Runs one redis-cli command and returns its output."""
        done = subprocess.run(["redis-cli", "-p", str(self.port)] + [str(a) for a in args],
                              capture_output=True, text=True, timeout=20, check=True)
        return done.stdout.strip()

    def close(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def free_cluster_port(taken=()):
    """A free port whose cluster bus port (port + 10000) is free too, and neither of which is a
    port or bus port in `taken` (the cluster's other nodes, not listening yet)."""
    reserved = {p for port in taken for p in (port, port + 10000)}
    while True:
        port = free_port()
        if port <= 55535 and port not in reserved and port + 10000 not in reserved:
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port + 10000))
                    return port
                except OSError:
                    pass


class RedisCluster:
    """A Redis Cluster of `masters` masters with `replicas` replicas each, made with
    `redis-cli --cluster create`. Offers what the suites use of `Redis`: `uri` (one node: korvet
    finds the others), `port` and `cli` (which follows redirections)."""

    def __init__(self, masters=3, replicas=1, certs=None, password=None):
        """With `certs` (make_certs' function), the nodes speak only TLS, to clients and to each
        other, and ask clients for certificates; with `password` they require it."""
        self.certs, self.password = certs, password
        self.dir = tempfile.mkdtemp(prefix="korvet-cluster-")
        self.ports = []
        for _ in range(masters * (1 + replicas)):
            self.ports.append(free_cluster_port(self.ports))
        self.procs = {}
        for port in self.ports:
            self.start_node(port)
        created = subprocess.run(self.redis_cli() + ["--cluster", "create"] + [f"127.0.0.1:{p}" for p in self.ports] +
                                 ["--cluster-replicas", str(replicas), "--cluster-yes"],
                                 capture_output=True, text=True, timeout=60)
        assert created.returncode == 0, f"redis-cli --cluster create failed:\n{created.stdout}\n{created.stderr}"
        self.wait_healthy()

    def redis_cli(self):
        """redis-cli with what it needs to reach these nodes."""
        command = ["redis-cli"]
        if self.certs:
            c = self.certs
            command += ["--tls", "--cacert", c("ca.pem"), "--cert", c("client.pem"), "--key", c("client.key")]
        if self.password:
            command += ["-a", self.password, "--no-auth-warning"]
        return command

    def start_node(self, port):
        node_dir = os.path.join(self.dir, str(port))
        os.makedirs(node_dir, exist_ok=True)
        listen = ["--port", str(port)]
        if self.certs:
            c = self.certs
            listen = ["--port", "0", "--tls-port", str(port), "--tls-cluster", "yes", "--tls-replication", "yes",
                      "--tls-cert-file", c("server.pem"), "--tls-key-file", c("server.key"), "--tls-ca-cert-file", c("ca.pem"),
                      "--tls-auth-clients", "yes"]
        if self.password:
            listen += ["--requirepass", self.password, "--masterauth", self.password]
        self.procs[port] = subprocess.Popen(
            ["redis-server", *listen, "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
             "--cluster-enabled", "yes", "--cluster-node-timeout", "2000", "--cluster-config-file",
             os.path.join(node_dir, "nodes.conf"), "--dir", node_dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: port_open(port), 20, f"cluster node on port {port}")

    def node_cli(self, port, *args):
        done = subprocess.run(self.redis_cli() + ["-p", str(port)] + [str(a) for a in args],
                              capture_output=True, text=True, timeout=20)
        return done.stdout.strip()

    def live_ports(self):
        return [p for p in self.ports if self.procs[p].poll() is None]

    def wait_healthy(self, timeout=60):
        def healthy():
            ports = self.live_ports()
            return all("cluster_state:ok" in self.node_cli(p, "CLUSTER", "INFO") for p in ports)
        wait_for(healthy, timeout, "the Redis Cluster to be healthy")

    def masters(self):
        """The ports of the live masters."""
        return [p for p in self.live_ports() if "role:master" in self.node_cli(p, "INFO", "replication")]

    def kill(self, port):
        """kill -9 of one node."""
        self.procs[port].kill()
        self.procs[port].wait(timeout=10)

    @property
    def port(self):
        return self.live_ports()[0]

    @property
    def uri(self):
        scheme = "rediss" if self.certs else "redis"
        login = f":{self.password}@" if self.password else ""
        return f"{scheme}://{login}127.0.0.1:{self.ports[0]}"

    def cli(self, *args):
        """Runs one redis-cli command, following redirections, and returns its output."""
        done = subprocess.run(self.redis_cli() + ["-c", "-p", str(self.port)] + [str(a) for a in args],
                              capture_output=True, text=True, timeout=20, check=True)
        return done.stdout.strip()

    def close(self):
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


class Sentinel:
    """One redis-server in Sentinel mode (`--sentinel`) watching `master` as `mymaster`, with
    quorum 1 and a failure noticed after a second, so failover tests are short."""

    def __init__(self, master, name="mymaster"):
        self.dir = tempfile.mkdtemp(prefix="korvet-sentinel-")
        self.port = free_port()
        self.name = name
        config = os.path.join(self.dir, "sentinel.conf")
        with open(config, "w") as f:
            f.write(f"port {self.port}\nbind 127.0.0.1\ndir {self.dir}\n"
                    f"sentinel monitor {name} 127.0.0.1 {master.port} 1\n"
                    f"sentinel down-after-milliseconds {name} 1000\n"
                    f"sentinel failover-timeout {name} 10000\n")
        self.proc = subprocess.Popen(["redis-server", config, "--sentinel"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: port_open(self.port), 20, f"redis-sentinel on port {self.port}")

    def master_port(self):
        done = subprocess.run(["redis-cli", "-p", str(self.port), "SENTINEL", "get-master-addr-by-name", self.name],
                              capture_output=True, text=True, timeout=10)
        lines = done.stdout.split()
        return int(lines[1]) if len(lines) == 2 else None

    @property
    def uri(self):
        return f"redis+sentinel://127.0.0.1:{self.port}/{self.name}"

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


class Korvet:
    """One korvet broker process."""

    def __init__(self, redis_uri=None, keyspace="korvet", extra_env=None, port=None):
        self.redis_uri = redis_uri
        self.keyspace = keyspace
        self.extra_env = extra_env or {}
        self.port = port or free_port()
        self.management_port = free_port()
        self.log_path = tempfile.mktemp(prefix="korvet-", suffix=".log")
        self.proc = None
        self.start()

    def start(self):
        env = dict(os.environ)
        env.update({
            "KORVET_SERVER_HOST": "127.0.0.1",
            "KORVET_SERVER_PORT": str(self.port),
            "KORVET_MANAGEMENT_PORT": str(self.management_port),
            "KORVET_SERVER_KEYSPACE": self.keyspace,
            "KORVET_LOG_LEVEL": "info",
        })
        env.pop("KORVET_REDIS_URI", None)
        if self.redis_uri:
            env["KORVET_REDIS_URI"] = self.redis_uri
        env.update(self.extra_env)
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([KORVET_BIN, "serve"], env=env, stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(lambda: self.proc.poll() is not None or port_open(self.port), 30, f"korvet on port {self.port}")
        assert self.proc.poll() is None, f"korvet exited early:\n{self.logs()}"

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()

    def restart(self):
        self.stop()
        self.start()

    def ready(self):
        """Whether /actuator/health/readiness answers 200."""
        import urllib.error
        import urllib.request
        try:
            url = f"http://127.0.0.1:{self.management_port}/actuator/health/readiness"
            with urllib.request.urlopen(url, timeout=2) as answer:
                return answer.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def rss_bytes(self):
        with open(f"/proc/{self.proc.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def logs(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port}"


class Cluster:
    """Several korvet brokers on one Redis and one keyspace, as the deployment guide runs them.
    Heartbeats every second and a 3 s registry TTL keep failover tests short."""

    SETTINGS = {
        "KORVET_REGISTRY_HEARTBEAT_INTERVAL": "1s",
        "KORVET_REGISTRY_TTL": "3s",
        "KORVET_SERVER_REBALANCE_DELAY": "300ms",
    }

    def __init__(self, redis, keyspace, size, settings=None):
        self.redis = redis
        self.keyspace = keyspace
        self.settings = self.SETTINGS if settings is None else settings
        self.brokers = {}
        for broker_id in range(size):
            self.add(broker_id)

    def add(self, broker_id):
        env = dict(self.settings, KORVET_SERVER_BROKER_ID=str(broker_id))
        broker = Korvet(redis_uri=self.redis.uri, keyspace=self.keyspace, extra_env=env)
        self.brokers[broker_id] = broker
        return broker

    @property
    def bootstrap(self):
        return ",".join(b.bootstrap for b in self.brokers.values())

    def live(self):
        return {i: b for i, b in self.brokers.items() if b.proc.poll() is None}

    def close(self):
        for broker in self.brokers.values():
            broker.stop()
