"""What korvet does when Redis is slow, silent, full or evicting, and when clients announce frames
they never send: each test drives a real korvet on a real redis-server (through the fault proxy
where the fault is on the wire) with real clients."""
import contextlib
import socket
import struct
import time

import pytest
from confluent_kafka import KafkaError, Producer

from clients import confluent_consume
from faultproxy import FaultProxy
from harness import Korvet, Redis, wait_for


@pytest.fixture
def own_redis():
    server = Redis()
    yield server
    server.close()


@contextlib.contextmanager
def behind_proxy(redis, **env):
    """A broker whose Redis connections go through a fault proxy; yields (proxy, broker)."""
    proxy = FaultProxy(redis.port)
    broker = Korvet(redis_uri=proxy.uri, extra_env=env)
    try:
        yield proxy, broker
    finally:
        broker.stop()
        proxy.close()


def deliver(bootstrap, topic, values, **config):
    """Produces `values` to partition 0; returns the delivery errors (None when acknowledged)."""
    settings = {"bootstrap.servers": bootstrap, "enable.idempotence": False, "acks": "all", "linger.ms": 0}
    settings.update(config)
    producer = Producer(settings)
    outcomes = {}

    def report(err, msg):
        outcomes[msg.value()] = err

    for value in values:
        producer.produce(topic, value=value, partition=0, on_delivery=report)
        producer.poll(0)
    producer.flush(60)
    return [outcomes.get(v, "undelivered") for v in values]


def test_one_producers_records_stay_in_order_under_redis_latency(own_redis):
    # 20 ms between korvet and Redis: every 5 s the topic cache expires and requests that need a
    # reload overlap with later ones that do not (the old code reordered about 50 in 25 s).
    with behind_proxy(own_redis) as (proxy, broker):
        proxy.latency = 0.02
        producer = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": False, "acks": "all",
                             "linger.ms": 1, "retries": 0})  # librdkafka allows 1,000,000 requests in flight
        failures = []
        deadline = time.monotonic() + 12
        sent = 0
        while time.monotonic() < deadline:
            producer.produce("ordered", value=b"%08d" % sent, partition=0,
                             on_delivery=lambda err, msg: err and failures.append(err))
            sent += 1
            producer.poll(0)
            time.sleep(0.002)
        assert producer.flush(60) == 0
        assert not failures, failures[:5]
        values = [int(r["value"]) for r in confluent_consume(broker.bootstrap, "ordered", 1, sent)]
        out_of_order = [(a, b) for a, b in zip(values, values[1:]) if b != a + 1]
        assert values[0] == 0 and not out_of_order, f"{len(out_of_order)} reorderings, e.g. {out_of_order[:5]}"


def test_a_silent_redis_connection_is_replaced(own_redis):
    with behind_proxy(own_redis, KORVET_REDIS_COMMAND_TIMEOUT="2s") as (proxy, broker):
        assert deliver(broker.bootstrap, "silence", [b"before"]) == [None]
        wait_for(broker.ready, 10, "readiness before the fault")
        proxy.silence_existing()  # open connections stop answering; new ones work
        silenced = time.monotonic()
        # One produce with a short delivery timeout after another until one is acknowledged.
        recovered = None
        while time.monotonic() - silenced < 40:
            if deliver(broker.bootstrap, "silence", [b"after"], **{"message.timeout.ms": 5000}) == [None]:
                recovered = time.monotonic() - silenced
                break
        assert recovered is not None, f"produce never recovered:\n{broker.logs()[-3000:]}"
        assert recovered < 20, recovered
        wait_for(broker.ready, 15, "readiness after the connection was replaced")
        assert "replaced it with a new one" in broker.logs()
        values = [r["value"] for r in confluent_consume(broker.bootstrap, "silence", 1, 2)]
        assert values[0] == "before" and "after" in values


def test_redis_unreachable_then_back_is_survived(own_redis):
    # Open connections go silent and new ones are swallowed (a blackholed route): readiness goes
    # DOWN and produce fails with retriable errors; once the route is back, korvet recovers by
    # itself.
    with behind_proxy(own_redis, KORVET_REDIS_COMMAND_TIMEOUT="2s") as (proxy, broker):
        assert deliver(broker.bootstrap, "blackhole", [b"before"]) == [None]
        wait_for(broker.ready, 10, "readiness before the fault")
        proxy.blackhole = True
        proxy.silence_existing()
        wait_for(lambda: not broker.ready(), 20, "readiness DOWN while Redis cannot be reached")
        [err] = deliver(broker.bootstrap, "blackhole", [b"during"], retries=0, **{"message.timeout.ms": 10000})
        assert err is not None, "acknowledged while Redis could not be reached"
        proxy.blackhole = False
        wait_for(broker.ready, 40, "readiness once Redis can be reached again")
        assert deliver(broker.bootstrap, "blackhole", [b"after"], **{"message.timeout.ms": 30000}) == [None]


def test_an_unknown_outcome_is_answered_request_timed_out(own_redis):
    with behind_proxy(own_redis, KORVET_REDIS_COMMAND_TIMEOUT="2s") as (proxy, broker):
        assert deliver(broker.bootstrap, "unknown", [b"first"]) == [None]
        proxy.silence_existing()  # the append is sent, its reply never comes
        [err] = deliver(broker.bootstrap, "unknown", [b"second"], retries=0, **{"message.timeout.ms": 30000})
        assert err is not None and err.code() == KafkaError.REQUEST_TIMED_OUT, err


def test_a_redis_reset_costs_no_acknowledged_record(own_redis):
    with behind_proxy(own_redis) as (proxy, broker):
        producer = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True, "acks": "all"})
        acked = []
        for i in range(3000):
            producer.produce("resets", value=b"%d" % i, partition=0,
                             on_delivery=lambda err, msg: err is None and acked.append(msg.value()))
            producer.poll(0)
            if i % 1000 == 500:
                proxy.reset_all()
        assert producer.flush(60) == 0
        values = {r["value"].encode() for r in confluent_consume(broker.bootstrap, "resets", 1, len(acked))}
        assert set(acked) <= values and len(acked) == 3000


def test_a_full_redis_keeps_serving_reads_and_producing_recovers():
    redis = Redis(["--maxmemory-policy", "noeviction"])
    broker = None
    second = None
    try:
        broker = Korvet(redis_uri=redis.uri)
        assert deliver(broker.bootstrap, "full", [b"seed"]) == [None]
        used = int(redis.cli("INFO", "memory").split("used_memory:")[1].split()[0])
        redis.cli("CONFIG", "SET", "maxmemory", used + 2 * 1024 * 1024)
        payload = b"x" * 1000
        outcomes = deliver(broker.bootstrap, "full", [payload + b"%d" % i for i in range(5000)],
                           retries=0, **{"message.timeout.ms": 30000})
        acked = sum(1 for e in outcomes if e is None)
        refused = [e for e in outcomes if e is not None]
        assert refused, "Redis never filled up"
        assert all(e.code() == KafkaError.KAFKA_STORAGE_ERROR for e in refused), refused[:3]
        assert "maxmemory" in broker.logs()
        # Reads go on: every acknowledged record comes back.
        assert len(confluent_consume(broker.bootstrap, "full", 1, 1 + acked)) == 1 + acked
        # A broker started now registers and serves reads too.
        second = Korvet(redis_uri=redis.uri, extra_env={"KORVET_SERVER_BROKER_ID": "1"})
        wait_for(second.ready, 20, f"a broker started on a full Redis to be ready:\n{second.logs()}")
        assert len(confluent_consume(second.bootstrap, "full", 1, 1 + acked)) == 1 + acked
        # Room again: producing recovers by itself.
        redis.cli("CONFIG", "SET", "maxmemory", 0)
        assert deliver(broker.bootstrap, "full", [b"room again"]) == [None]
    finally:
        for b in (second, broker):
            if b:
                b.stop()
        redis.close()


def test_an_evicting_redis_is_refused_until_its_policy_changes():
    redis = Redis(["--maxmemory-policy", "allkeys-lru", "--maxmemory", "100mb"])
    broker = Korvet(redis_uri=redis.uri)
    try:
        wait_for(lambda: "maxmemory-policy is allkeys-lru" in broker.logs(), 10, "the refusal in the log")
        assert not broker.ready()
        [err] = deliver(broker.bootstrap, "evicting", [b"no"], retries=0, **{"message.timeout.ms": 5000})
        assert err is not None
        redis.cli("CONFIG", "SET", "maxmemory-policy", "noeviction")
        wait_for(broker.ready, 20, "readiness once the policy is noeviction")
        assert deliver(broker.bootstrap, "evicting", [b"yes"]) == [None]
    finally:
        broker.stop()
        redis.close()


def test_eviction_can_be_allowed_explicitly():
    redis = Redis(["--maxmemory-policy", "allkeys-lru", "--maxmemory", "100mb"])
    broker = Korvet(redis_uri=redis.uri, extra_env={"KORVET_REDIS_ALLOW_EVICTION": "true"})
    try:
        wait_for(broker.ready, 10, "readiness with eviction allowed")
        assert deliver(broker.bootstrap, "allowed", [b"yes"]) == [None]
        assert "may evict korvet's keys" in broker.logs(), "the risk is still named in the log"
    finally:
        broker.stop()
        redis.close()


def test_offsets_are_never_reused_when_a_partition_lost_its_counter(own_redis):
    broker = Korvet(redis_uri=own_redis.uri, keyspace="lost")
    try:
        assert deliver(broker.bootstrap, "lost", [b"a", b"b", b"c"]) == [None, None, None]
        own_redis.cli("DEL", "lost:partition:{lost:0}")  # as an eviction would
        [err] = deliver(broker.bootstrap, "lost", [b"d"], retries=0, **{"message.timeout.ms": 5000})
        assert err is not None and err.code() == KafkaError.UNKNOWN, err
        assert own_redis.cli("XLEN", "lost:stream:{lost:0}") == "3"
        assert "is missing while its records remain" in broker.logs()
        # The topic's record vanishes while its records remain: it is not auto-created again
        # (with the default partition count, from offset 0) over them.
        assert deliver(broker.bootstrap, "gone", [b"x", b"y"]) == [None, None]
        own_redis.cli("HDEL", "lost:topics", "gone")
        broker.restart()  # no cached metadata
        [err] = deliver(broker.bootstrap, "gone", [b"z"], retries=0, **{"message.timeout.ms": 5000})
        assert err is not None, "produced to a topic created again over its records"
        assert own_redis.cli("XLEN", "lost:stream:{gone:0}") == "2"
        assert own_redis.cli("HEXISTS", "lost:topics", "gone") == "0"
        assert "has records in Redis" in broker.logs()
    finally:
        broker.stop()


@contextlib.contextmanager
def warm_broker_with_sockets(redis):
    """A broker that has served one produce; yields (broker, its RSS then, a list of sockets to
    fill), closing the sockets and stopping the broker afterwards."""
    broker = Korvet(redis_uri=redis.uri)
    sockets = []
    try:
        assert deliver(broker.bootstrap, "warm", [b"warm"]) == [None]
        yield broker, broker.rss_bytes(), sockets
    finally:
        for s in sockets:
            s.close()
        broker.stop()


def test_announced_but_unsent_frames_cost_no_memory(own_redis):
    with warm_broker_with_sockets(own_redis) as (broker, before, sockets):
        for _ in range(1000):
            s = socket.create_connection(("127.0.0.1", broker.port), timeout=5)
            s.sendall(struct.pack(">i", 100_000_000))
            sockets.append(s)
        # Every connection was taken and its prefix read: korvet still answers.
        assert deliver(broker.bootstrap, "frames", [b"still serving"]) == [None]
        during = broker.rss_bytes()
        assert during - before < 200 * 1024 * 1024, (before, during)
        print(f"RSS {before >> 20} MiB before, {during >> 20} MiB with 1,000 frames of 100 MB announced")


def test_idle_connections_are_cheap(own_redis):
    with warm_broker_with_sockets(own_redis) as (broker, before, sockets):
        for _ in range(2000):
            sockets.append(socket.create_connection(("127.0.0.1", broker.port), timeout=5))
        wait_for(lambda: deliver(broker.bootstrap, "idle", [b"x"]) == [None], 30, "a produce with 2,000 idle connections")
        grown = broker.rss_bytes() - before
        print(f"2,000 idle connections: +{grown >> 10} KiB resident ({grown // 2000} bytes each)")
        assert grown < 2000 * 16 * 1024, grown
