"""Several brokers on one Redis behave as one Kafka cluster: every broker lists every live broker
and gives the same leaders and coordinators, any broker serves any partition, a long poll on
one broker is woken by a produce through another, and when a broker is killed the clients fail
over, the group rebalances and every acknowledged record is consumed."""
import itertools
import subprocess
import threading
import time

import pytest
from confluent_kafka import ConsumerGroupState, Producer
from confluent_kafka.admin import AdminClient, NewTopic

import kafka_wire
from harness import Cluster, Korvet, wait_for
from test_consumer_groups import Member

NOT_COORDINATOR = 16
_clusters = itertools.count()


@pytest.fixture
def cluster(redis):
    brokers = Cluster(redis, f"cluster{next(_clusters)}-{time.monotonic_ns()}", 3)
    wait_for(lambda: all(len(metadata(b.bootstrap).brokers) == 3 for b in brokers.brokers.values()), 20,
             "every broker to see the other two")
    yield brokers
    brokers.close()


def metadata(bootstrap, topic=None):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    return admin.list_topics(topic, timeout=10)


def create_topic(bootstrap, topic, partitions):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(20)


def leaders(bootstrap, topic):
    described = metadata(bootstrap, topic).topics[topic]
    return {p: described.partitions[p].leader for p in described.partitions}


def test_every_broker_describes_the_same_cluster(cluster):
    create_topic(cluster.bootstrap, "spread", 6)
    views = [metadata(b.bootstrap, "spread") for b in cluster.brokers.values()]
    for view in views:
        assert {i: f"{m.host}:{m.port}" for i, m in view.brokers.items()} == \
            {i: b.bootstrap for i, b in cluster.brokers.items()}
        assert view.controller_id == views[0].controller_id
        assert view.cluster_id == views[0].cluster_id
    led = [leaders(b.bootstrap, "spread") for b in cluster.brokers.values()]
    assert led[0] == led[1] == led[2], "every broker names the same leaders"
    assert sorted(list(led[0].values()).count(i) for i in range(3)) == [2, 2, 2], "leadership is spread evenly"
    coordinators = {kafka_wire.find_coordinator(b.bootstrap, "one-group") for b in cluster.brokers.values()}
    assert len(coordinators) == 1, f"every broker names the same coordinator: {coordinators}"
    (error, coordinator, _), = coordinators
    assert error == 0
    for broker_id, broker in cluster.brokers.items():
        if broker_id != coordinator:
            assert kafka_wire.heartbeat(broker.bootstrap, "one-group") == NOT_COORDINATOR


def test_any_broker_serves_any_partition(cluster):
    create_topic(cluster.bootstrap, "anywhere", 3)
    producer = Producer({"bootstrap.servers": cluster.brokers[0].bootstrap, "acks": "all"})
    for i in range(30):
        producer.produce("anywhere", value=b"%d" % i, partition=i % 3)
    assert producer.flush(30) == 0
    for broker in cluster.brokers.values():
        for partition in range(3):
            error, high_watermark, size = kafka_wire.fetch(broker.bootstrap, "anywhere", partition, 0, 0, 10)
            assert (error, high_watermark) == (0, 10), f"broker {broker.bootstrap} partition {partition}"
            assert size > 0


def test_a_long_poll_on_one_broker_wakes_on_a_produce_through_another(cluster):
    create_topic(cluster.bootstrap, "wake", 1)
    leader = leaders(cluster.bootstrap, "wake")[0]
    other = next(b for i, b in cluster.brokers.items() if i != leader)
    result = {}

    def long_poll():
        started = time.monotonic()
        result["fetch"] = kafka_wire.fetch(other.bootstrap, "wake", 0, 0, 20_000, 30)
        result["seconds"] = time.monotonic() - started

    poller = threading.Thread(target=long_poll)
    poller.start()
    time.sleep(0.5)  # give the fetch time to park; the produce below is what must wake it
    producer = Producer({"bootstrap.servers": cluster.brokers[leader].bootstrap})
    producer.produce("wake", value=b"wake up", partition=0)
    assert producer.flush(10) == 0
    poller.join(30)
    error, high_watermark, size = result["fetch"]
    assert (error, high_watermark) == (0, 1) and size > 0
    # The fetch asked to wait up to 20 s: only a cross-broker wake-up answers it this early.
    assert result["seconds"] < 10, f"woken after {result['seconds']:.1f}s"


def test_a_duplicate_broker_id_is_refused(cluster):
    duplicate = None
    try:
        duplicate = Korvet(redis_uri=cluster.redis.uri, keyspace=cluster.keyspace,
                           extra_env=dict(Cluster.SETTINGS, KORVET_SERVER_BROKER_ID="1"))
    except AssertionError as exited_early:
        assert "already used by a live broker" in str(exited_early)
        return
    try:
        wait_for(lambda: duplicate.proc.poll() is not None, 20, "the duplicate broker to give up")
        assert duplicate.proc.returncode == 1
        assert "already used by a live broker at " + cluster.brokers[1].bootstrap in duplicate.logs()
        assert len(metadata(cluster.brokers[0].bootstrap).brokers) == 3
    finally:
        duplicate.stop()


def test_killing_the_coordinator_and_leader_loses_nothing(cluster):
    topic, group = "failover", "survivors"
    create_topic(cluster.bootstrap, topic, 6)
    _, coordinator, _ = kafka_wire.find_coordinator(cluster.brokers[0].bootstrap, group)
    acked, failed = set(), []
    stop_producing = threading.Event()

    def on_delivery(err, msg):
        if err is None:
            acked.add(int(msg.value()))
        else:
            failed.append(err)

    def produce():
        producer = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all", "linger.ms": 5})
        for i in itertools.count():
            if stop_producing.is_set():
                break
            producer.produce(topic, value=b"%d" % i, partition=i % 6, on_delivery=on_delivery)
            producer.poll(0.01)
        assert producer.flush(60) == 0

    producing = threading.Thread(target=produce, daemon=True)
    producing.start()
    members = [Member(cluster.bootstrap, topic, group, "range") for _ in range(3)]
    for member in members:
        member.start()
    try:
        def split_and_consuming():
            owned = [m.assignment for m in members]
            return sum(len(a) for a in owned) == 6 and set().union(*owned) == set(range(6)) and \
                all(m.seen for m in members)
        wait_for(split_and_consuming, 60, "the group to split the partitions and consume")
        # The coordinator also leads two of the six partitions.
        assert coordinator in leaders(cluster.bootstrap, topic).values()
        cluster.brokers[coordinator].stop(sig=9)
        survivors = [b for i, b in cluster.brokers.items() if i != coordinator]
        wait_for(lambda: all(len(metadata(b.bootstrap).brokers) == 2 for b in survivors), 30,
                 "the killed broker to expire from the registry")
        assert coordinator not in leaders(survivors[0].bootstrap, topic).values(), "its partitions have new leaders"
        _, new_coordinator, _ = kafka_wire.find_coordinator(survivors[0].bootstrap, group)
        assert new_coordinator != coordinator
        acked_before = len(acked)
        wait_for(lambda: len(acked) > acked_before + 50, 60, "producing to resume after failover")
        stop_producing.set()
        producing.join(90)
        assert not failed, f"deliveries failed: {failed[:3]}"

        def everything_consumed():
            seen = set()
            for m in members:
                with m.lock:
                    seen.update(m.seen)
            return acked <= seen
        wait_for(everything_consumed, 90, f"all {len(acked)} acknowledged records to be consumed")
        # Callbacks of different members run at different moments of a rebalance: wait for the
        # views to settle into one disjoint split.
        wait_for(split_and_consuming, 30, "the members to split the six partitions disjointly again")

        def rejoined_on_the_new_coordinator():
            admin = AdminClient({"bootstrap.servers": survivors[0].bootstrap})
            described = admin.describe_consumer_groups([group])[group].result(10)
            return described.coordinator.id == new_coordinator and len(described.members) == 3 and \
                described.state == ConsumerGroupState.STABLE
        wait_for(rejoined_on_the_new_coordinator, 30, "the three members to be a stable group on the new coordinator")
    finally:
        stop_producing.set()
        for member in members:
            member.stop()


def test_a_fourth_broker_takes_a_share_and_scaling_down_gives_it_back(cluster):
    create_topic(cluster.bootstrap, "scaling", 8)
    assert set(leaders(cluster.bootstrap, "scaling").values()) == {0, 1, 2}
    fourth = cluster.add(3)
    wait_for(lambda: len(metadata(cluster.brokers[0].bootstrap).brokers) == 4, 20, "the fourth broker to be seen")
    led = leaders(cluster.brokers[0].bootstrap, "scaling")
    assert sorted(list(led.values()).count(i) for i in range(4)) == [2, 2, 2, 2]
    assert led == leaders(fourth.bootstrap, "scaling")
    fourth.stop()
    # A clean stop leaves the registry before the process exits, rather than waiting for the TTL.
    gone = cluster.redis.cli("EXISTS", f"{cluster.keyspace}:broker:3")
    assert gone == "0", "the stopped broker's registry entry is deleted, not left to expire"
    wait_for(lambda: len(metadata(cluster.brokers[0].bootstrap).brokers) == 3, 20, "the fourth broker to leave")
    assert set(leaders(cluster.brokers[0].bootstrap, "scaling").values()) == {0, 1, 2}


def test_keyspaces_on_one_redis_are_separate_clusters(cluster):
    create_topic(cluster.bootstrap, "only-here", 1)
    other = Korvet(redis_uri=cluster.redis.uri, keyspace=cluster.keyspace + "-other",
                   extra_env={"KORVET_SERVER_AUTO_CREATE_TOPICS": "false", **Cluster.SETTINGS})
    try:
        view = metadata(other.bootstrap)
        assert list(view.brokers) == [0]
        assert "only-here" not in view.topics
    finally:
        other.stop()


def test_topic_changes_through_two_brokers_are_both_kept(cluster):
    """Broker 2 has the topic cached with one partition when broker 1 adds two; a config change
    through broker 2 right after must not revert them (topic updates are compare-and-set). The
    korvet CLI talks to exactly the broker it is given."""
    from harness import KORVET_BIN
    first, second = cluster.brokers[0].bootstrap, cluster.brokers[1].bootstrap

    def korvet(bootstrap, *args):
        done = subprocess.run([KORVET_BIN, "topics", *args, "--bootstrap-server", bootstrap],
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        return done.stdout

    korvet(first, "create", "changed-twice", "--partitions", "1")
    assert "Partitions: 1" in korvet(second, "describe", "changed-twice"), "broker 2 caches one partition"
    korvet(first, "alter", "changed-twice", "--partitions", "3")
    korvet(second, "alter", "changed-twice", "--config", "retention.ms=123456")
    described = korvet(first, "describe", "changed-twice")
    assert "Partitions: 3" in described, f"the partitions were reverted:\n{described}"
    assert "retention.ms=123456" in described


def test_a_killed_broker_is_left_behind_in_seconds_with_default_registry_settings(redis):
    """The guide's registry settings (10 s heartbeat, 30 s TTL): kill -9 of one of three brokers
    under an acks=all load. The others find its port closed and take it for gone within about
    two seconds, long before its entry expires; no acknowledgement waits 5 s or more."""
    brokers = Cluster(redis, f"fast-{time.monotonic_ns()}", 3, settings={"KORVET_SERVER_REBALANCE_DELAY": "300ms"})
    try:
        wait_for(lambda: all(len(metadata(b.bootstrap).brokers) == 3 for b in brokers.brokers.values()), 30,
                 "every broker to see the other two")
        topic = "fast-failover"
        create_topic(brokers.bootstrap, topic, 6)
        sent, delays, failed = {}, [], []
        stopping = threading.Event()

        def report(err, msg):
            if err is None:
                delays.append(time.monotonic() - sent[int(msg.value())])
            else:
                failed.append(err)

        def produce():
            producer = Producer({"bootstrap.servers": brokers.bootstrap, "acks": "all", "linger.ms": 5})
            for i in itertools.count():
                if stopping.is_set():
                    break
                sent[i] = time.monotonic()
                producer.produce(topic, value=b"%d" % i, partition=i % 6, on_delivery=report)
                producer.poll(0.005)
            assert producer.flush(60) == 0

        producing = threading.Thread(target=produce, daemon=True)
        producing.start()
        wait_for(lambda: len(delays) > 300, 30, "producing to start")
        victim = 1
        assert victim in leaders(brokers.brokers[0].bootstrap, topic).values()
        brokers.brokers[victim].stop(sig=9)
        killed = time.monotonic()
        survivors = [b for i, b in brokers.brokers.items() if i != victim]
        remaining = sorted(i for i in brokers.brokers if i != victim)

        def left_out(broker):
            # Asked on the wire so that this very broker answers: a client library sends its
            # Metadata requests to whichever broker it likes.
            listed, leading = kafka_wire.metadata(broker.bootstrap, topic)
            return listed == remaining and victim not in leading.values()

        wait_for(lambda: all(left_out(b) for b in survivors), 10,
                 "the survivors to leave the killed broker out and lead its partitions")
        noticed = time.monotonic() - killed
        assert noticed < 3, f"the killed broker was left out after {noticed:.1f} s"
        before = len(delays)
        wait_for(lambda: len(delays) > before + 1000, 30, "producing to go on")
        stopping.set()
        producing.join(90)
        assert not failed, failed[:3]
        print(f"left out after {noticed:.2f} s; longest acknowledgement {max(delays):.2f} s of {len(delays)}")
        assert max(delays) < 5, f"the longest acknowledgement took {max(delays):.1f} s"
    finally:
        brokers.close()
