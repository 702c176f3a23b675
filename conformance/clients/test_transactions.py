"""Transactions with real clients: librdkafka's transactional producer (confluent-kafka, and the
rdkafka crate) commits and aborts across partitions, read_committed consumers see every committed
record and no aborted or open one while read_uncommitted consumers see everything, a new instance of
a transactional id fences the old one, a transaction left open past its timeout is aborted by the
coordinator and stops holding readers back, and a consume-transform-produce loop commits its input
offsets in its transaction (visible to the group only once it commits)."""
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from harness import Korvet, wait_for

PARTITIONS = 3


@pytest.fixture
def txn_korvet(redis):
    broker = Korvet(redis_uri=redis.uri, keyspace=f"txn{time.monotonic_ns()}", extra_env={
        "KORVET_SERVER_REBALANCE_DELAY": "200ms",
        "KORVET_SERVER_TRANSACTION_TIMEOUT_CHECK_INTERVAL": "500ms",
        "KORVET_SERVER_RETENTION_CHECK_INTERVAL": "1s",
    })
    wait_for(broker.ready, 30, "korvet readiness")
    yield broker
    broker.stop()


def create_topic(bootstrap, topic, partitions=PARTITIONS, **config):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, partitions, 1, config=config)]).values():
        future.result(20)


def transactional(bootstrap, transactional_id, **extra):
    producer = Producer(dict({"bootstrap.servers": bootstrap, "transactional.id": transactional_id}, **extra))
    producer.init_transactions(20)
    return producer


def read_all(bootstrap, topic, isolation, want, timeout=20, partitions=PARTITIONS):
    """Values read from every partition of `topic` from the start, waiting until `want` arrived
    (or `timeout`), then a moment more so that extra records would show."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{time.monotonic_ns()}",
                         "isolation.level": isolation, "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got = []
    deadline = time.monotonic() + timeout
    settle = None
    while time.monotonic() < (settle or deadline):
        msg = consumer.poll(0.2)
        if msg is not None and not msg.error():
            got.append(msg.value())
        if settle is None and len(got) >= want:
            settle = time.monotonic() + 1.0
    consumer.close()
    return sorted(got)


def test_read_committed_sees_committed_transactions_only(txn_korvet):
    bootstrap, topic = txn_korvet.bootstrap, "txn-visibility"
    create_topic(bootstrap, topic)
    producer = transactional(bootstrap, "visibility")
    producer.begin_transaction()
    for i in range(30):
        producer.produce(topic, value=b"committed-%02d" % i, partition=i % PARTITIONS)
    producer.commit_transaction(20)
    producer.begin_transaction()
    for i in range(12):
        producer.produce(topic, value=b"aborted-%02d" % i, partition=i % PARTITIONS)
    producer.flush(20)  # written, then aborted (unflushed records would just be dropped)
    producer.abort_transaction(20)
    producer.begin_transaction()
    for i in range(6):
        producer.produce(topic, value=b"later-%02d" % i, partition=i % PARTITIONS)
    producer.commit_transaction(20)
    committed = sorted([b"committed-%02d" % i for i in range(30)] + [b"later-%02d" % i for i in range(6)])
    aborted = sorted(b"aborted-%02d" % i for i in range(12))
    assert read_all(bootstrap, topic, "read_committed", 36) == committed
    assert read_all(bootstrap, topic, "read_uncommitted", 48) == sorted(committed + aborted)


def test_an_open_transaction_holds_read_committed_readers_back(txn_korvet):
    bootstrap, topic = txn_korvet.bootstrap, "txn-open"
    create_topic(bootstrap, topic, 1)
    plain = Producer({"bootstrap.servers": bootstrap})
    plain.produce(topic, value=b"before", partition=0)
    plain.flush(10)
    producer = transactional(bootstrap, "holder")
    producer.begin_transaction()
    producer.produce(topic, value=b"pending", partition=0)
    producer.flush(10)
    plain.produce(topic, value=b"after", partition=0)
    plain.flush(10)
    # The open transaction's first record is the last stable offset: nothing from it on is read.
    assert read_all(bootstrap, topic, "read_committed", 1, timeout=5, partitions=1) == [b"before"]
    producer.commit_transaction(20)
    assert read_all(bootstrap, topic, "read_committed", 3, partitions=1) == [b"after", b"before", b"pending"]


def test_a_new_instance_fences_the_old_and_aborts_its_transaction(txn_korvet):
    bootstrap, topic = txn_korvet.bootstrap, "txn-zombie"
    create_topic(bootstrap, topic)
    zombie = transactional(bootstrap, "fenced-id")
    zombie.begin_transaction()
    for i in range(5):
        zombie.produce(topic, value=b"zombie-%d" % i, partition=i % PARTITIONS)
    zombie.flush(10)
    successor = transactional(bootstrap, "fenced-id")
    with pytest.raises(KafkaException) as raised:
        zombie.commit_transaction(20)
    assert raised.value.args[0].code() == KafkaError._FENCED, raised.value
    successor.begin_transaction()
    successor.produce(topic, value=b"successor", partition=0)
    successor.commit_transaction(20)
    assert read_all(bootstrap, topic, "read_committed", 1) == [b"successor"], "the zombie's records were aborted"


def test_a_transaction_open_past_its_timeout_is_aborted(txn_korvet):
    bootstrap, topic = txn_korvet.bootstrap, "txn-timeout"
    create_topic(bootstrap, topic, 1)
    stalled = transactional(bootstrap, "stalled", **{"transaction.timeout.ms": 2000})
    stalled.begin_transaction()
    stalled.produce(topic, value=b"never-committed", partition=0)
    stalled.flush(10)
    other = transactional(bootstrap, "other")
    other.begin_transaction()
    other.produce(topic, value=b"committed", partition=0)
    other.commit_transaction(20)
    started = time.monotonic()
    # The committed record sits behind the stalled transaction until the coordinator aborts it
    # (2 s timeout, checked every 500 ms).
    assert read_all(bootstrap, topic, "read_committed", 1, timeout=15, partitions=1) == [b"committed"]
    assert time.monotonic() - started < 10


def test_consume_transform_produce_commits_its_offsets_in_the_transaction(txn_korvet):
    bootstrap = txn_korvet.bootstrap
    create_topic(bootstrap, "txn-in", 1)
    create_topic(bootstrap, "txn-out", 1)
    source = Producer({"bootstrap.servers": bootstrap})
    for i in range(20):
        source.produce("txn-in", value=b"%d" % i, partition=0)
    source.flush(10)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "copier", "auto.offset.reset": "earliest",
                         "enable.auto.commit": False, "isolation.level": "read_committed"})
    consumer.subscribe(["txn-in"])
    producer = transactional(bootstrap, "copier")
    copied = 0
    deadline = time.monotonic() + 30
    while copied < 20 and time.monotonic() < deadline:
        msgs = consumer.consume(10, 1.0)
        msgs = [m for m in msgs if not m.error()]
        if not msgs:
            continue
        producer.begin_transaction()
        for msg in msgs:
            producer.produce("txn-out", value=b"copy-" + msg.value(), partition=0)
        producer.send_offsets_to_transaction(consumer.position(consumer.assignment()), consumer.consumer_group_metadata(), 20)
        if copied == 0:
            # The first batch is aborted: neither its output nor its offsets count.
            producer.abort_transaction(20)
            consumer.seek(TopicPartition("txn-in", 0, 0))
            aborted_commit = consumer.committed([TopicPartition("txn-in", 0)], 10)[0].offset
            assert aborted_commit < 0, "an aborted transaction's offsets are not the group's"
            copied = -1
            continue
        producer.commit_transaction(20)
        copied = max(copied, 0) + len(msgs)
    consumer.close()
    assert copied == 20
    assert read_all(bootstrap, "txn-out", "read_committed", 20, partitions=1) == sorted(b"copy-%d" % i for i in range(20))
    check = Consumer({"bootstrap.servers": bootstrap, "group.id": "copier"})
    assert check.committed([TopicPartition("txn-in", 0)], 10)[0].offset == 20
    check.close()


COPIER = r"""
import sys, time
from confluent_kafka import Consumer, Producer, TopicPartition
bootstrap, slow = sys.argv[1], sys.argv[2] == "slow"
# The killed copier's membership lasts its session: keep that short.
consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "eos-copier", "auto.offset.reset": "earliest",
                     "enable.auto.commit": False, "isolation.level": "read_committed", "session.timeout.ms": 6000})
consumer.subscribe(["eos-in"])
producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": "eos-copier"})
producer.init_transactions(30)
idle_since = time.monotonic()
while time.monotonic() - idle_since < 15:
    msgs = [m for m in consumer.consume(50, 0.5) if not m.error()]
    if not msgs:
        continue
    idle_since = time.monotonic()
    producer.begin_transaction()
    for msg in msgs:
        producer.produce("eos-out", value=msg.value(), partition=msg.partition())
    producer.flush(30)
    if slow:
        print("in-transaction", flush=True)
        time.sleep(30)  # killed here, mid-transaction
    producer.send_offsets_to_transaction(consumer.position(consumer.assignment()), consumer.consumer_group_metadata(), 30)
    producer.commit_transaction(30)
consumer.close()
"""


def test_a_copier_killed_mid_transaction_and_restarted_copies_every_record_once(txn_korvet, tmp_path):
    """kill -9 of a consume-transform-produce copier with a transaction open (its output written,
    not committed): the restarted copier fences it, its transaction is aborted, and the output
    holds every input record exactly once for read_committed readers."""
    import subprocess
    import sys
    bootstrap = txn_korvet.bootstrap
    create_topic(bootstrap, "eos-in")
    create_topic(bootstrap, "eos-out")
    source = Producer({"bootstrap.servers": bootstrap})
    for i in range(300):
        source.produce("eos-in", value=b"%03d" % i, partition=i % PARTITIONS)
    source.flush(20)
    script = tmp_path / "copier.py"
    script.write_text(COPIER)
    first = subprocess.Popen([sys.executable, str(script), bootstrap, "slow"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert first.stdout.readline().strip() == "in-transaction"
    finally:
        first.kill()
        first.wait(timeout=10)
    second = subprocess.run([sys.executable, str(script), bootstrap, "fast"], capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    assert read_all(bootstrap, "eos-out", "read_committed", 300) == sorted(b"%03d" % i for i in range(300))


def test_the_coordinating_broker_killed_mid_transaction(redis):
    """kill -9 of the broker coordinating a transactional id while its transaction is open: the
    producer finds the next coordinator, which carries the transaction on from its record in
    Redis, and the commit makes every record visible once."""
    import signal
    from harness import Cluster
    import kafka_wire
    cluster = Cluster(redis, f"txnha{time.monotonic_ns()}", 3)
    try:
        for broker in cluster.brokers.values():
            wait_for(broker.ready, 30, "cluster broker readiness")
        bootstrap = cluster.bootstrap
        create_topic(bootstrap, "txn-ha")
        producer = transactional(bootstrap, "ha-id")
        producer.begin_transaction()
        for i in range(30):
            producer.produce("txn-ha", value=b"%02d" % i, partition=i % PARTITIONS)
        producer.flush(20)
        any_broker = next(iter(cluster.brokers.values())).bootstrap
        error, coordinator, _ = kafka_wire.find_coordinator(any_broker, "ha-id", key_type=1)
        assert error == 0
        cluster.brokers[coordinator].stop(signal.SIGKILL)
        for i in range(30, 40):
            producer.produce("txn-ha", value=b"%02d" % i, partition=i % PARTITIONS)
        producer.commit_transaction(60)
        assert read_all(bootstrap, "txn-ha", "read_committed", 40) == sorted(b"%02d" % i for i in range(40))
    finally:
        cluster.close()


def test_kafkajs_and_kafka_python_transactions(txn_korvet):
    from kafka import KafkaConsumer, KafkaProducer
    from kafka import TopicPartition as KafkaPythonPartition
    import clients
    bootstrap = txn_korvet.bootstrap
    create_topic(bootstrap, "txn-kafkajs", 1)
    assert clients.kafkajs_transactions(bootstrap, "txn-kafkajs", "kafkajs-txn") == [f"committed-{i}" for i in range(5)]
    create_topic(bootstrap, "txn-kafka-python", 1)
    producer = KafkaProducer(bootstrap_servers=bootstrap, transactional_id="kafka-python-txn")
    producer.init_transactions()
    producer.begin_transaction()
    producer.send("txn-kafka-python", b"committed", partition=0)
    producer.commit_transaction()
    producer.begin_transaction()
    producer.send("txn-kafka-python", b"aborted", partition=0).get(10)
    producer.abort_transaction()
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed", auto_offset_reset="earliest", consumer_timeout_ms=3000)
    consumer.assign([KafkaPythonPartition("txn-kafka-python", 0)])
    assert [m.value for m in consumer] == [b"committed"]
    consumer.close()


def test_the_rdkafka_crates_transactional_producer(txn_korvet):
    """The Rust rdkafka crate's transactional producer commits, aborts and commits again; its own
    consumer (read_committed, librdkafka's default) and confluent-kafka's see exactly the
    committed records, read_uncommitted readers everything."""
    import clients
    bootstrap, topic = txn_korvet.bootstrap, "txn-rdkafka-crate"
    create_topic(bootstrap, topic)
    held = clients.rdkafka_transact(bootstrap, topic, PARTITIONS, "rdkafka-crate-txn")
    committed = sorted(v.encode() for v in held["committed"] + held["later"])
    everything = sorted(committed + [v.encode() for v in held["aborted"]])
    assert len(committed) == 25 and len(everything) == 35
    assert sorted(r["value"].encode() for r in clients.rdkafka_consume(bootstrap, topic, PARTITIONS, 25)) == committed
    assert read_all(bootstrap, topic, "read_committed", 25) == committed
    assert read_all(bootstrap, topic, "read_uncommitted", 35) == everything


def test_compaction_removes_aborted_records_and_compacts_committed_ones(txn_korvet):
    """On a compacted topic, the log cleaner removes an aborted transaction's records and lets a
    committed transaction's records supersede older ones of their keys; every reader then finds
    exactly the latest committed value of each key."""
    from test_bounded_topics import metric_value
    bootstrap, topic = txn_korvet.bootstrap, "txn-compacted"
    create_topic(bootstrap, topic, 1, **{"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.01", "delete.retention.ms": "0"})
    producer = transactional(bootstrap, "compacting")
    for records, commit in [([(b"k1", b"v1"), (b"k2", b"v1")], True), ([(b"k1", b"aborted"), (b"k3", b"aborted")], False),
                            ([(b"k1", b"v2")], True)]:
        producer.begin_transaction()
        for key, value in records:
            producer.produce(topic, key=key, value=value, partition=0)
        producer.flush(20)
        (producer.commit_transaction if commit else producer.abort_transaction)(20)
    # k1=v1 superseded by the committed k1=v2, and both aborted records.
    wait_for(lambda: metric_value(txn_korvet, f'korvet_records_compacted_total{{topic="{topic}"}}') == 3, 30, "compaction")
    for isolation in ("read_uncommitted", "read_committed"):
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"table-{isolation}", "isolation.level": isolation,
                             "enable.auto.commit": False})
        consumer.assign([TopicPartition(topic, 0, 0)])
        got, deadline = [], time.monotonic() + 10
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is not None and not msg.error():
                got.append((msg.key(), msg.value()))
            if len(got) == 2:
                deadline = min(deadline, time.monotonic() + 1.0)  # a moment more, so extra records would show
        consumer.close()
        assert sorted(got) == [(b"k1", b"v2"), (b"k2", b"v1")], (isolation, got)
