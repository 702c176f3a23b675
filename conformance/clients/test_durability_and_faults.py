"""Data survives a broker restart; Redis outages give retriable errors and the broker recovers by
itself; hostile bytes close only the offending connection; a TLS or HTTP client on the Kafka port
is told so at once."""
import socket
import ssl
import struct
import time

import pytest
from confluent_kafka import KafkaError, Producer
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from clients import confluent_consume
from harness import Korvet, wait_for


def produce_n(bootstrap, topic, n, start=0):
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    futures = [producer.send(topic, key=b"k%d" % i, value=b"v%d" % i, partition=0) for i in range(start, start + n)]
    producer.flush(30)
    offsets = [f.get(timeout=30).offset for f in futures]
    producer.close(timeout=10)
    return offsets


def test_data_survives_broker_restart(fresh_korvet):
    offsets = produce_n(fresh_korvet.bootstrap, "durable", 50)
    assert offsets == list(range(50))
    fresh_korvet.restart()
    got = confluent_consume(fresh_korvet.bootstrap, "durable", 1, 50)
    assert [(r["offset"], r["value"]) for r in got] == [(i, "v%d" % i) for i in range(50)]
    # And appending continues where it left off.
    assert produce_n(fresh_korvet.bootstrap, "durable", 5, start=50) == list(range(50, 55))


def test_list_offsets_earliest_latest_and_by_timestamp(korvet):
    producer = KafkaProducer(bootstrap_servers=korvet.bootstrap)
    base = int(time.time() * 1000) - 100_000
    for i in range(10):
        producer.send("timed", value=b"%d" % i, partition=0, timestamp_ms=base + i * 1000)
    producer.flush(30)
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=korvet.bootstrap)
    tp = TopicPartition("timed", 0)
    assert consumer.beginning_offsets([tp])[tp] == 0
    assert consumer.end_offsets([tp])[tp] == 10
    found = consumer.offsets_for_times({tp: base + 4500})[tp]
    assert (found.offset, found.timestamp) == (5, base + 5000)
    assert consumer.offsets_for_times({tp: base + 999_999})[tp] is None
    consumer.close()


def test_redis_outage_is_retriable_and_recovers(redis):
    broker = Korvet(redis_uri=redis.uri, keyspace="outage")
    try:
        assert produce_n(broker.bootstrap, "outage", 3) == [0, 1, 2]
        redis.stop()
        producer = Producer({"bootstrap.servers": broker.bootstrap, "message.timeout.ms": 3000, "retries": 0})
        errors = []
        producer.produce("outage", value=b"during", partition=0, on_delivery=lambda err, msg: errors.append(err))
        producer.flush(20)
        assert errors and errors[0] is not None, "a produce while Redis is down must fail, not be acknowledged"
        # Retriable either way: KAFKA_STORAGE_ERROR once korvet knows nothing was written (Redis
        # refuses connections), REQUEST_TIMED_OUT while it cannot know (its connection broke).
        assert errors[0].code() in (KafkaError.KAFKA_STORAGE_ERROR, KafkaError.REQUEST_TIMED_OUT), errors[0]
        assert broker.proc.poll() is None, "the broker keeps running without Redis"
        # A producer with ordinary retries sent during the outage is delivered once Redis is back.
        patient = Producer({"bootstrap.servers": broker.bootstrap, "message.timeout.ms": 60000})
        delivered = []
        patient.produce("outage", value=b"patient", partition=0, on_delivery=lambda err, msg: delivered.append((err, msg)))
        patient.poll(1)
        redis.start()
        assert patient.flush(60) == 0
        assert delivered[0][0] is None, delivered[0][0]
        assert delivered[0][1].offset() == 3, "the record acknowledged after the outage follows the earlier ones"
        # Recovery needs no restart: the same broker accepts writes again once Redis is back.
        def produced():
            try:
                produce_n(broker.bootstrap, "outage", 1, start=100)
                return True
            except Exception:
                return False
        wait_for(produced, 60, "produce to succeed after Redis came back")
    finally:
        if redis.proc.poll() is not None:
            redis.start()
        broker.stop()


def raw_request(port, payload):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(payload)
        try:
            return s.recv(1024)
        except (ConnectionResetError, socket.timeout):
            return b""


def test_hostile_bytes_close_only_their_connection(korvet):
    hostile = [
        struct.pack(">i", -1),
        struct.pack(">i", 1 << 30) + b"x" * 100,
        struct.pack(">ihhi", 8, 0x7f7f, 0, 1),  # unknown API key
        struct.pack(">ihhi", 10, 0, 9, 1) + b"\x00\x00",  # truncated Produce
        struct.pack(">ihhih", 20, 0, 9, 1, 0) + b"\x00\x01\x00\x00\x00\x00\x7f\xff\xff\xff",  # 2^31 topics
    ]
    for payload in hostile:
        assert raw_request(korvet.port, payload) == b"", f"{payload!r} must be answered by a close"
    # Everyone else is unaffected.
    assert produce_n(korvet.bootstrap, "after-hostile", 2) == [0, 1]
    assert "closing connection" in korvet.logs()


def test_a_tls_client_on_the_plaintext_port_fails_at_once_and_is_logged_once(fresh_korvet):
    korvet = fresh_korvet
    """A client configured for SSL meets a plaintext listener: korvet answers its greeting with a
    TLS alert, so the client's TLS library fails the handshake at once instead of timing out, and
    the broker logs one line that says why however often the client reconnects."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    for _ in range(20):
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", korvet.port), timeout=10) as sock:
            with pytest.raises(ssl.SSLError, match="HANDSHAKE_FAILURE"):
                context.wrap_socket(sock)
        assert time.monotonic() - started < 2, "the handshake failed only after a timeout"
    errors = []
    producer = Producer({"bootstrap.servers": korvet.bootstrap, "security.protocol": "SSL",
                         "enable.ssl.certificate.verification": False, "error_cb": errors.append})
    wait_for(lambda: producer.poll(0.1) >= 0 and any("handshake failure" in str(e) for e in errors), 10,
             "librdkafka to report the failed handshake")
    del producer
    wait_for(lambda: "began a TLS handshake" in korvet.logs(), 10, "the reason in the log")
    warned = [line for line in korvet.logs().splitlines() if "began a TLS handshake" in line]
    assert len(warned) == 1, warned
    assert "PLAINTEXT" in warned[0]
    assert produce_n(korvet.bootstrap, "after-tls", 2) == [0, 1]


def test_an_http_request_on_the_kafka_port_is_refused_with_a_reason(fresh_korvet):
    korvet = fresh_korvet
    assert raw_request(korvet.port, b"GET /actuator/health HTTP/1.1\r\nHost: korvet\r\n\r\n") == b""
    wait_for(lambda: "sent an HTTP request to the Kafka port" in korvet.logs(), 10, "the reason in the log")


def test_a_client_that_never_reads_its_responses_is_disconnected(fresh_korvet):
    import kafka_wire
    producer = Producer({"bootstrap.servers": fresh_korvet.bootstrap, "message.max.bytes": 2_000_000})
    for _ in range(4):
        producer.produce("unread", value=b"x" * 900_000, partition=0)
    assert producer.flush(30) == 0
    # Fetch v4 of the whole partition, 80 times, without reading: about 1.8 MB per answer (two
    # records; korvet reads at most 2 MiB per Fetch), well over the 64 MiB limit in all.
    body = struct.pack(">iiiib", -1, 0, 1, 1 << 24, 0) + struct.pack(">i", 1) + kafka_wire._string("unread") + \
        struct.pack(">i", 1) + struct.pack(">iqi", 0, 0, 1 << 24)
    with socket.create_connection(("127.0.0.1", fresh_korvet.port), timeout=30) as flood:
        flood.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        for correlation in range(80):
            flood.sendall(kafka_wire._request(1, 4, body, correlation))
        wait_for(lambda: "left unread" in fresh_korvet.logs(), 60, "the broker to give up on the client")
    # Everyone else is still served.
    consumer = KafkaConsumer(bootstrap_servers=fresh_korvet.bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=20000, fetch_max_bytes=8_000_000, max_partition_fetch_bytes=2_000_000)
    consumer.assign([TopicPartition("unread", 0)])
    got = []
    for message in consumer:
        got.append(message)
        if len(got) == 4:
            break
    assert len(got) == 4
    consumer.close()
