"""Consumer groups with real clients: members of one group get disjoint assignments covering every
partition; when a member leaves, the others take its partitions over; records produced before and
during the rebalance are all consumed, and commits resume where they left off."""
import threading
import time

import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from kafka import KafkaAdminClient, KafkaConsumer
from kafka.admin import NewTopic

from harness import Korvet, wait_for

PARTITIONS = 6


@pytest.fixture
def group_korvet(redis):
    broker = Korvet(redis_uri=redis.uri, keyspace=f"groups{time.monotonic_ns()}",
                    extra_env={"KORVET_SERVER_REBALANCE_DELAY": "300ms"})
    yield broker
    broker.stop()


def create_topic(bootstrap, topic):
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    admin.close()


def produce(bootstrap, topic, start, count):
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i in range(start, start + count):
        producer.produce(topic, key=b"%d" % i, value=b"%d" % i, partition=i % PARTITIONS)
    assert producer.flush(30) == 0


class Member(threading.Thread):
    """A confluent-kafka consumer in its own thread that commits after processing."""

    def __init__(self, bootstrap, topic, group, assignor):
        super().__init__(daemon=True)
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
            "enable.auto.commit": False, "session.timeout.ms": 6000, "heartbeat.interval.ms": 500,
            "partition.assignment.strategy": assignor,
        })
        self.assignment = set()
        self.seen = []
        self.commit_errors = []
        self.stop_flag = threading.Event()
        self.lock = threading.Lock()
        cooperative = assignor == "cooperative-sticky"

        def on_assign(consumer, partitions):
            with self.lock:
                if cooperative:
                    self.assignment |= {p.partition for p in partitions}
                else:
                    self.assignment = {p.partition for p in partitions}

        def on_revoke(consumer, partitions):
            with self.lock:
                if cooperative:
                    self.assignment -= {p.partition for p in partitions}
                else:
                    self.assignment = set()

        self.consumer.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)

    def run(self):
        while not self.stop_flag.is_set():
            msg = self.consumer.poll(0.2)
            if msg is None or msg.error():
                continue
            with self.lock:
                self.seen.append(int(msg.value()))
            try:
                self.consumer.commit(message=msg, asynchronous=False)
            except KafkaException as err:
                # A commit can fail while the group rebalances (e.g. its coordinator moved);
                # the record is then consumed again after the rebalance, as Kafka promises.
                self.commit_errors.append(err)
        self.consumer.close()

    def stop(self):
        self.stop_flag.set()
        self.join(30)


class KafkaPythonMember(threading.Thread):
    """A kafka-python group member in its own thread, committing after processing."""

    def __init__(self, bootstrap, topic, group):
        super().__init__(daemon=True)
        from kafka import KafkaConsumer as KC
        from kafka.consumer.subscription_state import ConsumerRebalanceListener
        self.assignment, self.seen, self.lock = set(), [], threading.Lock()
        self.stop_flag = threading.Event()
        member = self

        class Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked):
                with member.lock:
                    member.assignment = set()

            def on_partitions_assigned(self, assigned):
                with member.lock:
                    member.assignment = {tp.partition for tp in assigned}

        self.consumer = KC(bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest",
                           enable_auto_commit=False, session_timeout_ms=6000, heartbeat_interval_ms=500)
        self.consumer.subscribe([topic], listener=Listener())

    def run(self):
        while not self.stop_flag.is_set():
            for msgs in self.consumer.poll(timeout_ms=200).values():
                with self.lock:
                    self.seen.extend(int(m.value) for m in msgs)
                self.consumer.commit()
        self.consumer.close()

    def stop(self):
        self.stop_flag.set()
        self.join(30)


class AiokafkaMember(threading.Thread):
    """An aiokafka group member on its own event loop in its own thread."""

    def __init__(self, bootstrap, topic, group):
        super().__init__(daemon=True)
        self.args = (bootstrap, topic, group)
        self.assignment, self.seen, self.lock = set(), [], threading.Lock()
        self.stop_flag = threading.Event()
        self.start()

    def run(self):
        import asyncio
        from aiokafka import AIOKafkaConsumer

        async def main():
            bootstrap, topic, group = self.args
            consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest",
                                        enable_auto_commit=False, session_timeout_ms=6000, heartbeat_interval_ms=500)
            await consumer.start()
            try:
                while not self.stop_flag.is_set():
                    batch = await consumer.getmany(timeout_ms=200)
                    with self.lock:
                        self.assignment = {tp.partition for tp in consumer.assignment()}
                        for msgs in batch.values():
                            self.seen.extend(int(m.value) for m in msgs)
                    if batch:
                        await consumer.commit()
            finally:
                await consumer.stop()
        asyncio.run(main())

    def stop(self):
        self.stop_flag.set()
        self.join(30)


class KafkajsMember(threading.Thread):
    """A kafkajs group member in a node process, reporting over its stdout."""

    def __init__(self, bootstrap, topic, group):
        super().__init__(daemon=True)
        import os
        import subprocess
        script = os.path.join(os.path.dirname(__file__), "node", "kafkajs-client.js")
        self.proc = subprocess.Popen(["node", script, "member", bootstrap, topic, group], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        self.assignment, self.seen, self.lock = set(), [], threading.Lock()
        self.start()

    def run(self):
        import json
        for line in self.proc.stdout:
            event = json.loads(line)
            with self.lock:
                if "assigned" in event:
                    self.assignment = set(event["assigned"])
                else:
                    self.seen.append(int(event["value"]))

    def stop(self):
        import signal
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except Exception:
            self.proc.kill()
        self.join(30)


MEMBER_KINDS = {"kafka-python": KafkaPythonMember, "aiokafka": AiokafkaMember, "kafkajs": KafkajsMember}


@pytest.mark.parametrize("client", list(MEMBER_KINDS))
def test_other_clients_share_and_take_over(group_korvet, client):
    topic, group = f"grouped-{client}", f"workers-{client}"
    create_topic(group_korvet.bootstrap, topic)
    produce(group_korvet.bootstrap, topic, 0, 120)
    members = [MEMBER_KINDS[client](group_korvet.bootstrap, topic, group) for _ in range(3)]
    if client == "kafka-python":
        for m in members:
            m.start()
    try:
        wait_for(lambda: covers_disjointly(members), 90, f"three {client} members to split six partitions")
        members[0].stop()
        produce(group_korvet.bootstrap, topic, 120, 60)
        wait_for(lambda: covers_disjointly(members[1:]), 90, f"the remaining {client} members to take over")
        wait_for(lambda: set().union(*[set(m.seen) for m in members]) >= set(range(180)), 60, "every record to be consumed")
    finally:
        for m in members[1:]:
            m.stop()


def assignments(members):
    result = []
    for m in members:
        with m.lock:
            result.append(set(m.assignment))
    return result


def covers_disjointly(members):
    sets = assignments(members)
    union = set().union(*sets)
    return union == set(range(PARTITIONS)) and sum(len(s) for s in sets) == PARTITIONS and all(sets)


@pytest.mark.parametrize("assignor", ["range", "cooperative-sticky"])
def test_group_shares_partitions_and_takes_over(group_korvet, assignor):
    topic, group = f"grouped-{assignor}", f"workers-{assignor}"
    create_topic(group_korvet.bootstrap, topic)
    produce(group_korvet.bootstrap, topic, 0, 300)
    members = [Member(group_korvet.bootstrap, topic, group, assignor) for _ in range(3)]
    for m in members:
        m.start()
    wait_for(lambda: covers_disjointly(members), 60, "three members to split six partitions")
    # One member leaves while records keep coming: the other two take over its partitions.
    produce(group_korvet.bootstrap, topic, 300, 150)
    members[0].stop()
    produce(group_korvet.bootstrap, topic, 450, 150)
    wait_for(lambda: covers_disjointly(members[1:]), 60, "the remaining members to take over")
    produce(group_korvet.bootstrap, topic, 600, 100)
    everything = set(range(700))
    wait_for(lambda: set().union(*[set(m.seen) for m in members]) >= everything, 60, "every record to be consumed")
    for m in members[1:]:
        m.stop()
    # Commits were made after processing: a new member resumes at the end, skipping nothing.
    late = KafkaConsumer(bootstrap_servers=group_korvet.bootstrap, group_id=group, enable_auto_commit=False)
    from kafka import TopicPartition
    committed = {p: late.committed(TopicPartition(topic, p)) for p in range(PARTITIONS)}
    late.close()
    assert sum(committed.values()) == 700, committed


def test_kafka_python_and_aiokafka_group_consumers(group_korvet):
    import asyncio
    from aiokafka import AIOKafkaConsumer
    topic = "mixed-clients"
    create_topic(group_korvet.bootstrap, topic)
    produce(group_korvet.bootstrap, topic, 0, 120)
    k = KafkaConsumer(topic, bootstrap_servers=group_korvet.bootstrap, group_id="mixed", auto_offset_reset="earliest",
                      enable_auto_commit=False, session_timeout_ms=6000, heartbeat_interval_ms=500)
    seen = set()
    deadline = time.monotonic() + 60
    while len(seen) < 120 and time.monotonic() < deadline:
        for msgs in k.poll(timeout_ms=500).values():
            seen.update(int(m.value) for m in msgs)
    assert len(seen) == 120, "kafka-python group consumer read everything"
    k.commit()
    k.close()

    async def aio():
        c = AIOKafkaConsumer(topic, bootstrap_servers=group_korvet.bootstrap, group_id="mixed-aio",
                             auto_offset_reset="earliest", enable_auto_commit=False, session_timeout_ms=6000,
                             heartbeat_interval_ms=500)
        await c.start()
        got = set()
        try:
            end = time.monotonic() + 60
            while len(got) < 120 and time.monotonic() < end:
                for msgs in (await c.getmany(timeout_ms=500)).values():
                    got.update(int(m.value) for m in msgs)
            await c.commit()
        finally:
            await c.stop()
        return got
    assert len(asyncio.run(aio())) == 120, "aiokafka group consumer read everything"
    # kafka-python's commit is there for a restarted member of the same group.
    again = KafkaConsumer(topic, bootstrap_servers=group_korvet.bootstrap, group_id="mixed", auto_offset_reset="earliest",
                          enable_auto_commit=False, session_timeout_ms=6000, consumer_timeout_ms=3000)
    assert list(again) == [], "resumes after the committed offsets"
    again.close()


def test_group_admin_views_and_restart(group_korvet):
    from kafka import TopicPartition as KTP
    topic = "admin-viewed"
    create_topic(group_korvet.bootstrap, topic)
    produce(group_korvet.bootstrap, topic, 0, 60)
    member = Member(group_korvet.bootstrap, topic, "viewed", "range")
    member.start()
    wait_for(lambda: assignments([member])[0] == set(range(PARTITIONS)), 60, "the member to own every partition")
    wait_for(lambda: len(member.seen) == 60, 60, "the member to consume everything")
    admin = KafkaAdminClient(bootstrap_servers=group_korvet.bootstrap)
    listed = {g["group_id"]: g for g in admin.list_groups()}
    assert (listed["viewed"]["protocol_type"], listed["viewed"]["group_state"]) == ("consumer", "Stable")
    described = admin.describe_groups(["viewed"])["viewed"]
    assert (described["group_state"], described["protocol_data"]) == ("Stable", "range")
    assert len(described["members"]) == 1
    assert described["members"][0]["member_assignment"], "the assignment is shown, decoded"
    member.stop()
    # The member left: the group is Empty, its commits stay.
    assert admin.describe_groups(["viewed"])["viewed"]["group_state"] == "Empty"
    offsets = admin.list_group_offsets("viewed")["viewed"]
    assert sum(o.offset for o in offsets.values()) == 60

    # Commits survive a broker restart, and a new member resumes from them.
    group_korvet.restart()
    produce(group_korvet.bootstrap, topic, 60, 12)
    resumed = Member(group_korvet.bootstrap, topic, "viewed", "range")
    resumed.start()
    wait_for(lambda: len(resumed.seen) >= 12, 60, "the resumed member to read the new records")
    resumed.stop()
    assert sorted(resumed.seen) == list(range(60, 72)), "nothing re-read, nothing skipped"

    admin = KafkaAdminClient(bootstrap_servers=group_korvet.bootstrap)
    admin.delete_group_offsets("viewed", [KTP(topic, 0)])
    offsets = admin.list_group_offsets("viewed")["viewed"]
    assert KTP(topic, 0) not in offsets and KTP(topic, 1) in offsets
    admin.delete_groups(["viewed"])
    assert "viewed" not in [g["group_id"] for g in admin.list_groups()]
    admin.close()


KILLABLE_MEMBER = """
import sys
from confluent_kafka import Consumer
c = Consumer({"bootstrap.servers": sys.argv[1], "group.id": sys.argv[3], "auto.offset.reset": "earliest",
              "enable.auto.commit": False, "session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
c.subscribe([sys.argv[2]], on_assign=lambda c, ps: print("assigned", len(ps), flush=True))
while True:
    c.poll(0.2)
"""


def test_a_killed_member_is_expired_and_its_partitions_move(group_korvet):
    import signal
    import subprocess
    import sys
    topic, group = "killed-member", "survivors"
    create_topic(group_korvet.bootstrap, topic)
    members = [Member(group_korvet.bootstrap, topic, group, "range") for _ in range(2)]
    victim = subprocess.Popen([sys.executable, "-c", KILLABLE_MEMBER, group_korvet.bootstrap, topic, group],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        for m in members:
            m.start()

        def three_way_split():
            sets = assignments(members)
            return all(sets) and sum(len(s) for s in sets) < PARTITIONS and not (sets[0] & sets[1])
        wait_for(three_way_split, 60, "the victim to hold some partitions")
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        # No LeaveGroup: only the session timeout (6 s) can free the victim's partitions.
        wait_for(lambda: covers_disjointly(members), 60, "the survivors to take the victim's partitions")
    finally:
        if victim.poll() is None:
            victim.kill()
        for m in members:
            m.stop()
