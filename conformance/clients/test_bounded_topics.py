"""Bounded topics with real clients on a real Redis: retention by time and size, DeleteRecords,
compaction, size and timestamp limits, and the metrics that show them. The brokers check
retention every second here (KORVET_SERVER_RETENTION_CHECK_INTERVAL) so that tests wait
seconds, not minutes."""
import json
import subprocess
import time

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from harness import KORVET_BIN, Korvet, wait_for
from test_management import get

FAST_RETENTION = {"KORVET_SERVER_RETENTION_CHECK_INTERVAL": "1s"}


@pytest.fixture(scope="module")
def broker(redis):
    server = Korvet(redis_uri=redis.uri, keyspace="bounded", extra_env=FAST_RETENTION)
    yield server
    server.stop()


def create(bootstrap, topic, partitions=1, **configs):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    config = {k.replace("_", "."): str(v) for k, v in configs.items()}
    for future in admin.create_topics([NewTopic(topic, partitions, 1, config=config)]).values():
        future.result(30)


def produce(bootstrap, topic, records, partition=0, **config):
    """Produces (key, value) pairs; returns the delivery errors, None for each acknowledged one."""
    settings = {"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all"}
    settings.update(config)
    producer = Producer(settings)
    errors = []
    for key, value in records:
        producer.produce(topic, key=key, value=value, partition=partition, on_delivery=lambda err, msg: errors.append(err))
        producer.poll(0)
    assert producer.flush(30) == 0, "undelivered records"
    return errors


def watermarks(bootstrap, topic, partition=0):
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "watermarks"})
    try:
        return consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
    finally:
        consumer.close()


def consume_all(bootstrap, topic, group, expect_at_least=0, idle=2.0, **config):
    """Reads partition 0 through a group from its committed offset (else auto.offset.reset) until
    `idle` seconds pass without records; returns the messages."""
    settings = {"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                "enable.auto.commit": False}
    settings.update(config)
    consumer = Consumer(settings)
    consumer.subscribe([topic])
    out, last = [], time.monotonic()
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None:
                if len(out) >= expect_at_least and time.monotonic() - last > idle:
                    break
                continue
            assert msg.error() is None, msg.error()
            out.append(msg)
            last = time.monotonic()
    finally:
        consumer.close()
    return out


def metric_value(broker, line_start):
    for line in get(broker, "/actuator/prometheus")[1].splitlines():
        if line.startswith(line_start + " "):
            return float(line.split()[1])
    return None


def test_retention_by_time_moves_the_log_start_and_consumers_reset(broker):
    create(broker.bootstrap, "expiring", retention_ms=2000)
    # A group commits offset 100 while the records are there.
    assert produce(broker.bootstrap, "expiring", [(None, b"old-%d" % i) for i in range(500)]) == [None] * 500
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "late"})
    consumer.commit(offsets=[TopicPartition("expiring", 0, 100)], asynchronous=False)
    consumer.close()
    wait_for(lambda: watermarks(broker.bootstrap, "expiring") == (500, 500), 20, "retention to remove the 500 records")
    # Longer retention from now on, so that the next records outlive the consumer's group join.
    altered = subprocess.run([KORVET_BIN, "topics", "alter", "expiring", "--config", "retention.ms=600000",
                              "--bootstrap-server", broker.bootstrap], capture_output=True, text=True, timeout=30)
    assert altered.returncode == 0, altered.stderr
    assert produce(broker.bootstrap, "expiring", [(None, b"new-%d" % i) for i in range(5)]) == [None] * 5
    assert watermarks(broker.bootstrap, "expiring") == (500, 505), "offsets go on after the trim"
    # The committed offset 100 is below the start: OFFSET_OUT_OF_RANGE, and auto.offset.reset
    # takes the group to the earliest record left.
    got = consume_all(broker.bootstrap, "expiring", "late", expect_at_least=5)
    assert [m.offset() for m in got] == list(range(500, 505))
    assert [m.value() for m in got] == [b"new-%d" % i for i in range(5)]
    wait_for(lambda: metric_value(broker, 'korvet_records_deleted_total{topic="expiring"}') == 500, 10, "the metric")
    wait_for(lambda: metric_value(broker, 'korvet_partition_log_start_offset{partition="0",topic="expiring"}') == 500, 10,
             "the log start metric")
    assert metric_value(broker, 'korvet_partition_high_watermark{partition="0",topic="expiring"}') == 505
    assert metric_value(broker, 'korvet_partition_retained_records{partition="0",topic="expiring"}') == 5
    # The group's lag counts the five records left, not the 400 trimmed since its commit.
    wait_for(lambda: metric_value(broker, 'korvet_consumer_lag{group="late",partition="0",topic="expiring"}') == 5, 15,
             "the consumer lag to follow the log start")
    wait_for(lambda: (metric_value(broker, "korvet_redis_used_memory_bytes") or 0) > 0, 15, "the Redis memory metric")
    assert metric_value(broker, "korvet_redis_max_memory_bytes") == 0
    assert metric_value(broker, "process_resident_memory_bytes") > 1_000_000
    assert metric_value(broker, "process_open_fds") > 0


def test_retention_by_size_keeps_about_that_much(broker):
    create(broker.bootstrap, "sized", retention_bytes=5000, retention_ms=-1)
    assert produce(broker.bootstrap, "sized", [(None, b"x" * 100) for _ in range(200)]) == [None] * 200
    wait_for(lambda: watermarks(broker.bootstrap, "sized") == (150, 200), 20, "retention to keep the newest 5000 bytes")
    got = consume_all(broker.bootstrap, "sized", "sized-reader", expect_at_least=50)
    assert [m.offset() for m in got] == list(range(150, 200))


def test_delete_records_through_the_admin_client_and_the_cli(broker):
    create(broker.bootstrap, "trimmed", partitions=2, retention_ms=-1)
    for partition in (0, 1):
        assert produce(broker.bootstrap, "trimmed", [(None, b"v%d" % i) for i in range(10)], partition=partition) == [None] * 10
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    futures = admin.delete_records([TopicPartition("trimmed", 0, 4)])
    result = futures[TopicPartition("trimmed", 0, 4)].result(30)
    assert result.low_watermark == 4
    assert watermarks(broker.bootstrap, "trimmed", 0) == (4, 10)
    too_far = admin.delete_records([TopicPartition("trimmed", 0, 11)])[TopicPartition("trimmed", 0, 11)]
    with pytest.raises(Exception, match="OFFSET_OUT_OF_RANGE"):
        too_far.result(30)
    # A consumer assigned below the start is reset to it.
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "assigned", "auto.offset.reset": "earliest"})
    consumer.assign([TopicPartition("trimmed", 0, 1)])
    msg = None
    deadline = time.monotonic() + 20
    while msg is None and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
    consumer.close()
    assert msg is not None and msg.error() is None and msg.offset() == 4
    done = subprocess.run([KORVET_BIN, "topics", "delete-records", "trimmed", "--bootstrap-server", broker.bootstrap],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "10" in done.stdout
    assert watermarks(broker.bootstrap, "trimmed", 0) == (10, 10)
    assert watermarks(broker.bootstrap, "trimmed", 1) == (10, 10)
    described = subprocess.run([KORVET_BIN, "topics", "describe", "trimmed", "--bootstrap-server", broker.bootstrap],
                               capture_output=True, text=True, timeout=30)
    assert described.returncode == 0, described.stderr
    rows = [line.split() for line in described.stdout.splitlines() if line.split()[:1] in (["0"], ["1"])]
    assert [row[2:5] for row in rows] == [["10", "10", "0"], ["10", "10", "0"]], described.stdout


def test_a_compacted_topic_rebuilds_as_a_table(broker):
    create(broker.bootstrap, "table", cleanup_policy="compact", min_cleanable_dirty_ratio="0.01", delete_retention_ms=0)
    expected = {}
    records = []
    for round_ in range(20):
        for k in range(10):
            key, value = b"k%d" % k, b"v%d-%d" % (k, round_)
            records.append((key, value))
            expected[key] = value
    records += [(b"k0", None), (b"k1", None)]  # tombstones
    del expected[b"k0"], expected[b"k1"]
    assert produce(broker.bootstrap, "table", records) == [None] * len(records)
    # 152 superseded values of k2..k9, all 40 of k0 and k1, and their two tombstones.
    wait_for(lambda: metric_value(broker, 'korvet_records_compacted_total{topic="table"}') == 194, 20, "compaction")
    got = consume_all(broker.bootstrap, "table", "rebuild", expect_at_least=8)
    table = {}
    for msg in got:
        if msg.value() is None:
            table.pop(msg.key(), None)
        else:
            table[msg.key()] = msg.value()
    assert table == expected
    assert len(got) == 8, "superseded records and the old tombstones are gone"
    offsets = [m.offset() for m in got]
    assert offsets == sorted(offsets) and offsets[0] >= 180, f"the latest records keep their offsets: {offsets}"
    # A record without a key cannot be compacted: refused, as Kafka does.
    errors = produce(broker.bootstrap, "table", [(None, b"no key")], retries=0)
    assert errors[0] is not None and errors[0].code() == KafkaError.INVALID_RECORD, errors


def test_size_and_timestamp_limits(broker):
    create(broker.bootstrap, "small", max_message_bytes=1000)
    errors = produce(broker.bootstrap, "small", [(None, b"x" * 2000)], retries=0)
    assert errors[0] is not None and errors[0].code() == KafkaError.MSG_SIZE_TOO_LARGE, errors
    assert produce(broker.bootstrap, "small", [(None, b"x" * 100)]) == [None]

    create(broker.bootstrap, "recent-only", message_timestamp_before_max_ms=60000)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "retries": 0})
    outcome = []
    producer.produce("recent-only", value=b"ancient", timestamp=1000, on_delivery=lambda err, msg: outcome.append(err))
    producer.flush(30)
    assert outcome[0] is not None and outcome[0].code() == KafkaError.INVALID_TIMESTAMP, outcome

    create(broker.bootstrap, "stamped", message_timestamp_type="LogAppendTime")
    before = int(time.time() * 1000)
    producer.produce("stamped", value=b"when", timestamp=1000)
    producer.flush(30)
    got = consume_all(broker.bootstrap, "stamped", "stamped-reader", expect_at_least=1)
    assert got[0].timestamp()[1] >= before - 1000, "the broker's clock, not the producer's timestamp"


def test_broker_defaults_apply_to_topics_without_their_own(redis):
    server = Korvet(redis_uri=redis.uri, keyspace="defaults",
                    extra_env=dict(FAST_RETENTION, KORVET_SERVER_LOG_RETENTION_MS="1500", KORVET_SERVER_MESSAGE_MAX_BYTES="5000"))
    try:
        assert produce(server.bootstrap, "short-lived", [(None, b"x")] * 20) == [None] * 20
        wait_for(lambda: watermarks(server.bootstrap, "short-lived") == (20, 20), 20, "log.retention.ms from the broker setting")
        errors = produce(server.bootstrap, "short-lived", [(None, b"x" * 6000)], retries=0)
        assert errors[0] is not None and errors[0].code() == KafkaError.MSG_SIZE_TOO_LARGE
    finally:
        server.stop()


def test_a_full_redis_is_retriable_and_recovers_without_losing_acknowledged_records(redis):
    """Redis capped with maxmemory and flooded: produce fails with a retriable error while it is
    full, every acknowledged record stays readable, and producing recovers once retention makes
    room."""
    from harness import Redis
    capped = Redis(["--maxmemory-policy", "noeviction"])
    server = Korvet(redis_uri=capped.uri, extra_env=FAST_RETENTION)
    try:
        create(server.bootstrap, "flood", retention_bytes=2_000_000, retention_ms=-1)
        used = int(capped.cli("INFO", "memory").split("used_memory:")[1].split()[0])
        capped.cli("CONFIG", "SET", "maxmemory", used + 6 * 1024 * 1024)
        producer = Producer({"bootstrap.servers": server.bootstrap, "acks": "all", "linger.ms": 5,
                             "message.timeout.ms": 60000})
        acked, failed = {}, []

        def report(err, msg):
            if err is None:
                acked[msg.offset()] = msg.value()
            else:
                failed.append(err)

        # 30 MB into a Redis with 6 MB to spare: it fills, then retention (2 MB per partition)
        # keeps freeing room, and the producer's retries get through.
        for i in range(30_000):
            producer.produce("flood", value=(b"%08d" % i) * 125, partition=0, on_delivery=report)
            producer.poll(0)
        assert producer.flush(120) == 0
        assert failed == [] and len(acked) == 30_000, "the producer's retries got every record through"
        # Retention settles on the newest 2 MB: 2000 records of 1000 bytes.
        high = len(acked)
        wait_for(lambda: watermarks(server.bootstrap, "flood") == (high - 2000, high), 20, "retention to settle")
        low = high - 2000
        kept = {m.offset(): m.value() for m in consume_all(server.bootstrap, "flood", "flood-check", expect_at_least=1)}
        assert all(kept[o] == v for o, v in acked.items() if o >= low and o in kept)
        assert sorted(o for o in acked if o >= low) == sorted(o for o in kept if o in acked), \
            "every acknowledged record at or above the log start is readable"
    finally:
        server.stop()
        capped.close()


def test_idle_producer_state_expires_and_active_producers_are_unharmed(redis):
    server = Korvet(redis_uri=redis.uri, keyspace="expiry",
                    extra_env=dict(FAST_RETENTION, KORVET_SERVER_PRODUCER_ID_EXPIRATION="2s"))
    try:
        create(server.bootstrap, "idempotent", retention_ms=-1)
        producers = lambda: [f for f in redis.cli("HKEYS", "expiry:partition:{idempotent:0}").split() if f.startswith("producer:")]
        idle = Producer({"bootstrap.servers": server.bootstrap, "enable.idempotence": True})
        idle.produce("idempotent", value=b"once", partition=0)
        assert idle.flush(30) == 0
        assert len(producers()) == 1
        # An idempotent producer that keeps producing for three expirations is never refused.
        active = Producer({"bootstrap.servers": server.bootstrap, "enable.idempotence": True, "linger.ms": 50})
        errors = []
        deadline = time.monotonic() + 6
        sent = 0
        while time.monotonic() < deadline:
            active.produce("idempotent", value=b"%d" % sent, partition=0, on_delivery=lambda err, msg: errors.append(err) if err else None)
            sent += 1
            active.poll(0.01)
        assert active.flush(30) == 0
        assert errors == []
        assert len(producers()) == 1, "the idle producer's state is gone, the active one's is kept"
        assert watermarks(server.bootstrap, "idempotent") == (0, sent + 1)
    finally:
        server.stop()
