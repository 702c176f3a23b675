"""`korvet topics ...`, `korvet groups ...`, `korvet produce` and `korvet consume` against running
brokers: readable tables, exit code 0 on success, 1 when the cluster refuses, 2 when it cannot be
reached."""
import subprocess
import time

from confluent_kafka import Consumer, Producer

from harness import KORVET_BIN, Cluster, wait_for


def korvet_cli(broker, *args, stdin=None):
    bootstrap = broker if isinstance(broker, str) else broker.bootstrap
    done = subprocess.run([KORVET_BIN, *args, "--bootstrap-server", bootstrap], capture_output=True, text=True, timeout=60, input=stdin)
    return done.returncode, done.stdout, done.stderr


def rows(table):
    return [line.split() for line in table.strip().splitlines()]


def test_topics_create_list_describe_alter_delete(korvet):
    broker = korvet
    code, out, _ = korvet_cli(broker, "topics", "create", "cli-orders", "--partitions", "3", "--config", "retention.ms=60000")
    assert (code, out) == (0, "Created topic cli-orders with 3 partitions.\n")
    code, _, err = korvet_cli(broker, "topics", "create", "cli-orders")
    assert code == 1 and "TopicAlreadyExists" in err
    code, _, err = korvet_cli(broker, "topics", "create", "bad name")
    assert code == 1 and "InvalidTopic" in err

    producer = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(5):
        producer.produce("cli-orders", value=b"%d" % i, partition=1)
    assert producer.flush(30) == 0

    code, out, _ = korvet_cli(broker, "topics", "list")
    assert code == 0 and ["cli-orders", "3"] in rows(out) and rows(out)[0] == ["TOPIC", "PARTITIONS"]
    code, out, _ = korvet_cli(broker, "topics", "describe", "cli-orders")
    assert code == 0
    assert "Partitions: 3  Configs: retention.ms=60000" in out
    assert ["1", "0", "0", "5", "5"] in rows(out)[2:], out

    code, out, err = korvet_cli(broker, "topics", "alter", "cli-orders", "--partitions", "4", "--config", "cleanup.policy=compact",
                                "--delete-config", "retention.ms")
    assert code == 0, out + err
    code, out, _ = korvet_cli(broker, "topics", "describe", "cli-orders")
    assert "Partitions: 4  Configs: cleanup.policy=compact" in out
    code, _, err = korvet_cli(broker, "topics", "alter", "cli-orders", "--partitions", "2")
    assert code == 1 and "InvalidPartitions" in err
    code, _, err = korvet_cli(broker, "topics", "alter", "cli-orders", "--config", "retention.ms=soon")
    assert code == 1 and "retention.ms" in err

    code, out, _ = korvet_cli(broker, "topics", "delete", "cli-orders")
    assert (code, out) == (0, "Deleted topic cli-orders.\n")
    code, _, err = korvet_cli(broker, "topics", "describe", "cli-orders")
    assert code == 1 and "UnknownTopicOrPartition" in err


def test_groups_describe_reset_and_delete(korvet):
    broker = korvet
    topic, group = "cli-grouped", "cli-readers"
    korvet_cli(broker, "topics", "create", topic, "--partitions", "2")
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(10):
        producer.produce(topic, value=b"%d" % i, partition=i % 2)
    assert producer.flush(30) == 0
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                         "enable.auto.commit": False})
    consumer.subscribe([topic])
    got = []
    deadline = time.monotonic() + 30
    while len(got) < 3 and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and not msg.error() and msg.partition() == 0:
            got.append(msg)
    consumer.commit(message=got[-1], asynchronous=False)  # partition 0 committed at 3 of 5

    code, out, _ = korvet_cli(broker, "groups", "describe", group)
    assert code == 0 and "State: Stable  Members: 1" in out, out
    line = next(r for r in rows(out) if r[:2] == [topic, "0"])
    assert line[2:5] == ["3", "5", "2"] and line[5].startswith("rdkafka"), line
    code, _, err = korvet_cli(broker, "groups", "reset-offsets", group, "--topic", topic, "--to-earliest", "--execute")
    assert code == 1 and "active members" in err, "offsets of a live group are not moved"
    consumer.close()

    code, out, _ = korvet_cli(broker, "groups", "list")
    assert [group, "Empty", "consumer"] in rows(out)
    code, out, _ = korvet_cli(broker, "groups", "reset-offsets", group, "--topic", topic, "--to-offset", "1")
    assert code == 0 and "Dry run" in out and [group, topic, "0", "1"] in rows(out)
    code, out, _ = korvet_cli(broker, "groups", "describe", group)
    assert next(r for r in rows(out) if r[:2] == [topic, "0"])[2] == "3", "a dry run changes nothing"
    code, out, _ = korvet_cli(broker, "groups", "reset-offsets", group, "--topic", topic, "--to-latest", "--execute")
    assert code == 0 and "Committed" in out
    code, out, _ = korvet_cli(broker, "groups", "describe", group)
    assert all(r[4] == "0" for r in rows(out)[2:]), out

    code, out, _ = korvet_cli(broker, "groups", "delete", group)
    assert (code, out) == (0, f"Deleted group {group}.\n")
    code, _, err = korvet_cli(broker, "groups", "describe", group)
    assert code == 1 and "does not exist" in err


def test_groups_list_asks_every_broker(redis):
    cluster = Cluster(redis, f"cli-cluster{time.monotonic_ns()}", 3)
    try:
        broker = cluster.brokers[0]
        wait_for(lambda: korvet_cli(broker, "topics", "list")[0] == 0, 20, "the cluster")
        producer = Producer({"bootstrap.servers": cluster.bootstrap})
        producer.produce("listed", value=b"x")
        assert producer.flush(30) == 0
        groups = [f"team-{i}" for i in range(6)]
        for group in groups:  # standalone commits: any broker takes them
            code, _, err = korvet_cli(broker, "groups", "reset-offsets", group, "--topic", "listed", "--to-latest", "--execute")
            assert code == 0, err
        code, out, _ = korvet_cli(broker, "groups", "list")
        assert sorted(r[0] for r in rows(out)[1:] if r[0].startswith("team-")) == groups
    finally:
        cluster.close()


def test_kafka_tools_flags(korvet):
    """The flags users know from kafka-topics and kafka-consumer-groups."""
    broker = korvet
    code, out, err = korvet_cli(broker, "topics", "create", "cli-flags", "--partitions", "3", "--replication-factor", "1")
    assert (code, out) == (0, "Created topic cli-flags with 3 partitions.\n"), err
    code, out, _ = korvet_cli(broker, "topics", "create", "cli-flags", "--if-not-exists")
    assert (code, out) == (0, "Topic cli-flags exists already.\n")
    code, _, err = korvet_cli(broker, "topics", "create", "cli-flags-rf", "--replication-factor", "3")
    assert code == 1 and "InvalidReplicationFactor" in err and "only 1 broker(s)" in err, err
    code, out, _ = korvet_cli(broker, "topics", "describe")
    assert code == 0 and "Topic: cli-flags " in out, "describe without a topic describes every topic"
    code, out, _ = korvet_cli(broker, "topics", "delete", "cli-never-made", "--if-exists")
    assert (code, out) == (0, "Topic cli-never-made does not exist.\n")

    producer = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(30):
        producer.produce("cli-flags", value=b"%d" % i, partition=i % 3, timestamp=1_000_000 + i * 1000)
    assert producer.flush(30) == 0
    group = "cli-flag-readers"
    code, out, err = korvet_cli(broker, "groups", "reset-offsets", group, "--topic", "cli-flags:0,2", "--to-offset", "4", "--execute")
    assert code == 0, err
    assert sorted(r[2:] for r in rows(out)[1:] if r[0] == group) == [["0", "4"], ["2", "4"]], out
    code, out, _ = korvet_cli(broker, "groups", "reset-offsets", group, "--all-topics", "--shift-by", "-3", "--execute")
    assert code == 0 and sorted(r[2:] for r in rows(out)[1:] if r[0] == group) == [["0", "1"], ["2", "1"]], out
    code, out, _ = korvet_cli(broker, "groups", "reset-offsets", group, "--all-topics", "--shift-by", "100")
    assert code == 0 and sorted(r[2:] for r in rows(out)[1:] if r[0] == group) == [["0", "10"], ["2", "10"]], "clamped to the end"
    code, _, err = korvet_cli(broker, "groups", "reset-offsets", group, "--topic", "cli-flags", "--shift-by", "1")
    assert code == 1 and "no committed offset" in err and "cli-flags:1" in err, err
    # Partition 1 holds records at 1001 s, 1004 s, ...: the first at or after 1010 s is its fourth (offset 3).
    code, out, err = korvet_cli(broker, "groups", "reset-offsets", group, "--topic", "cli-flags:1", "--to-datetime", "1970-01-01T00:16:50.000",
                                "--execute")
    assert code == 0 and [group, "cli-flags", "1", "3"] in rows(out), out + err
    code, out, _ = korvet_cli(broker, "groups", "reset-offsets", group, "--topic", "cli-flags:1", "--to-datetime", "2100-01-01T00:00:00Z")
    assert [group, "cli-flags", "1", "10"] in rows(out), "no record that late: the end"
    code, _, err = korvet_cli(broker, "groups", "reset-offsets", group, "--topic", "cli-flags:7", "--to-earliest")
    assert code == 1 and "no partition 7" in err
    code, _, err = korvet_cli(broker, "groups", "reset-offsets", group, "--topic", "cli-flags", "--to-datetime", "yesterday")
    assert code == 2 and "--to-datetime" in err


def test_produce_and_consume(korvet):
    broker = korvet
    korvet_cli(broker, "topics", "create", "cli-lines", "--partitions", "4")
    code, out, err = korvet_cli(broker, "produce", "cli-lines", "--key-separator", ":", "--header", "source=cli",
                                stdin="".join(f"user-{i % 5}:event {i}\n" for i in range(40)))
    assert (code, out) == (0, "Produced 40 records to cli-lines.\n"), err

    code, out, err = korvet_cli(broker, "consume", "cli-lines", "--from-beginning", "--max-messages", "40", "--print-key",
                                "--print-headers", "--print-offset")
    assert code == 0 and "Processed a total of 40 messages" in err, err
    lines = [line.split("\t") for line in out.splitlines()]
    assert sorted(line[3] for line in lines) == sorted(f"event {i}" for i in range(40))
    assert all(line[1] == "source:cli" for line in lines)
    partition_of_key = {}
    for position, _, key, _ in lines:
        partition_of_key.setdefault(key, set()).add(position.split(":")[0])
    assert all(len(p) == 1 for p in partition_of_key.values()), "each key on one partition"

    # A Java or librdkafka producer (murmur2) puts each key on the partition korvet produce chose.
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "cli-lines-check", "auto.offset.reset": "earliest"})
    consumer.subscribe(["cli-lines"])
    producer = Producer({"bootstrap.servers": broker.bootstrap, "partitioner": "murmur2_random"})
    for key in partition_of_key:
        producer.produce("cli-lines", key=key.encode(), value=b"check")
    assert producer.flush(30) == 0
    checked = {}
    deadline = time.monotonic() + 30
    while len(checked) < len(partition_of_key) and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and not msg.error() and msg.value() == b"check":
            checked[msg.key().decode()] = str(msg.partition())
    consumer.close()
    assert checked == {key: partitions.pop() for key, partitions in partition_of_key.items()}

    code, out, err = korvet_cli(broker, "consume", "cli-lines", "--partition", "0", "--offset", "2", "--timeout", "1s")
    assert code == 0 and "Processed a total of" in err and len(out.splitlines()) >= 1, err
    code, out, err = korvet_cli(broker, "consume", "cli-lines", "--timeout", "1s")
    assert (code, out) == (0, ""), "from the end, nothing"
    code, _, err = korvet_cli(broker, "produce", "cli-lines", "--partition", "9", stdin="x\n")
    assert code == 1 and "no partition 9" in err
    code, _, err = korvet_cli(broker, "consume", "cli-missing", "--timeout", "1s")
    assert code == 1 and "UnknownTopicOrPartition" in err


def test_unreachable_cluster_exits_2():
    code, _, err = korvet_cli("127.0.0.1:1", "topics", "list")
    assert code == 2 and "cannot connect to 127.0.0.1:1" in err

