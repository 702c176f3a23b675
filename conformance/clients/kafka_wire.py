"""Just enough of the Kafka wire protocol to send one request to one chosen broker, which no
client library does on purpose (they route by partition leadership)."""
import socket
import struct


def _string(s):
    data = s.encode()
    return struct.pack(">h", len(data)) + data


def _request(api_key, version, body, correlation=1):
    header = struct.pack(">hhi", api_key, version, correlation) + _string("korvet-wire-test")
    payload = header + body
    return struct.pack(">i", len(payload)) + payload


def _read_frame(sock):
    def exactly(n):
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("broker closed the connection")
            data += chunk
        return data
    (size,) = struct.unpack(">i", exactly(4))
    return exactly(size)


def fetch(address, topic, partition, offset, max_wait_ms, timeout):
    """Fetch v4 of one partition from the broker at `address`; returns (error code, high
    watermark, bytes of records)."""
    body = struct.pack(">iiiib", -1, max_wait_ms, 1, 1 << 20, 0)
    body += struct.pack(">i", 1) + _string(topic) + struct.pack(">i", 1) + struct.pack(">iqi", partition, offset, 1 << 20)
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(_request(1, 4, body))
        frame = _read_frame(sock)
    pos = 4 + 4  # correlation id, throttle time
    (topics,) = struct.unpack_from(">i", frame, pos)
    pos += 4
    assert topics == 1
    (name_len,) = struct.unpack_from(">h", frame, pos)
    pos += 2 + name_len + 4  # name, partition count
    _partition, error, high_watermark, _lso, aborted = struct.unpack_from(">ihqqi", frame, pos)
    pos += 4 + 2 + 8 + 8 + 4 + max(aborted, 0) * 16
    (records_len,) = struct.unpack_from(">i", frame, pos)
    return error, high_watermark, max(records_len, 0)


def _call(address, api_key, version, body, timeout=10):
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(_request(api_key, version, body))
        return _read_frame(sock)


def find_coordinator(address, group, key_type=0):
    """FindCoordinator v1 for a group (or, with key_type 1, a transactional id); returns (error
    code, node id, "host:port")."""
    frame = _call(address, 10, 1, _string(group) + struct.pack(">b", key_type))
    pos = 4 + 4
    (error,) = struct.unpack_from(">h", frame, pos)
    pos += 2
    (message_len,) = struct.unpack_from(">h", frame, pos)
    pos += 2 + max(message_len, 0)
    (node_id,) = struct.unpack_from(">i", frame, pos)
    pos += 4
    (host_len,) = struct.unpack_from(">h", frame, pos)
    host = frame[pos + 2:pos + 2 + host_len].decode()
    (port,) = struct.unpack_from(">i", frame, pos + 2 + host_len)
    return error, node_id, f"{host}:{port}"


def heartbeat(address, group, generation=1, member="nobody"):
    """Heartbeat v0; returns the error code."""
    frame = _call(address, 12, 0, _string(group) + struct.pack(">i", generation) + _string(member))
    (error,) = struct.unpack_from(">h", frame, 4)
    return error


def metadata(address, topic):
    """Metadata v1 for one topic, answered by the broker at `address` itself; returns (the
    broker ids it lists, {partition: leader id})."""
    frame = _call(address, 3, 1, struct.pack(">i", 1) + _string(topic))
    pos = 4
    (count,) = struct.unpack_from(">i", frame, pos)
    pos += 4
    brokers = []
    for _ in range(count):
        (node_id,) = struct.unpack_from(">i", frame, pos)
        (host_len,) = struct.unpack_from(">h", frame, pos + 4)
        pos += 4 + 2 + host_len + 4
        (rack_len,) = struct.unpack_from(">h", frame, pos)
        pos += 2 + max(rack_len, 0)
        brokers.append(node_id)
    pos += 4  # controller id
    (topics,) = struct.unpack_from(">i", frame, pos)
    assert topics == 1
    pos += 4 + 2  # count, error code
    (name_len,) = struct.unpack_from(">h", frame, pos)
    pos += 2 + name_len + 1  # name, is_internal
    (count,) = struct.unpack_from(">i", frame, pos)
    pos += 4
    leaders = {}
    for _ in range(count):
        _error, partition, leader = struct.unpack_from(">hii", frame, pos)
        pos += 10
        for _list in ("replicas", "isr"):
            (ids,) = struct.unpack_from(">i", frame, pos)
            pos += 4 + 4 * max(ids, 0)
        leaders[partition] = leader
    return sorted(brokers), leaders


def offset_commit(address, group, topic, partition, offset, timeout=10):
    """OffsetCommit v2 of one partition outside any generation (as a standalone consumer
    commits); returns the partition's error code."""
    body = _string(group) + struct.pack(">i", -1) + _string("") + struct.pack(">q", -1)
    body += struct.pack(">i", 1) + _string(topic) + struct.pack(">i", 1) + struct.pack(">iq", partition, offset) + _string("")
    frame = _call(address, 8, 2, body, timeout)
    pos = 4 + 4  # correlation id, topic count
    (name_len,) = struct.unpack_from(">h", frame, pos)
    pos += 2 + name_len + 4  # name, partition count
    _partition, error = struct.unpack_from(">ih", frame, pos)
    return error
