"""Replica acknowledgements: with KORVET_REDIS_REPLICA_ACKS an acks=all produce is acknowledged
only once that many Redis replicas have it (WAIT), and answers NOT_ENOUGH_REPLICAS_AFTER_APPEND
(retriable) when they do not confirm in time; acks=1 never waits. Offset commits wait the same
way. A real primary and a real replica (redis-server --replicaof)."""
import time

from confluent_kafka import KafkaError

import kafka_wire
from harness import Korvet, Redis, wait_for
from test_redis_faults import deliver


COORDINATOR_LOAD_IN_PROGRESS = 14


def linked(replica):
    return "master_link_status:up" in replica.cli("INFO", "replication")


def test_acks_all_waits_for_a_replica_and_says_when_none_confirms():
    primary = Redis()
    replica = Redis(["--replicaof", "127.0.0.1", str(primary.port)])
    broker = None
    try:
        wait_for(lambda: linked(replica), 30, "the replica to sync")
        broker = Korvet(redis_uri=primary.uri, extra_env={"KORVET_REDIS_REPLICA_ACKS": "1",
                                                          "KORVET_REDIS_REPLICA_ACK_TIMEOUT": "1s"})
        values = [b"replicated-%d" % i for i in range(200)]
        assert deliver(broker.bootstrap, "replicated", values) == [None] * 200
        # Acknowledged means the replica has it, at once.
        assert replica.cli("XLEN", "korvet:stream:{replicated:0}") == "200"
        assert kafka_wire.offset_commit(broker.bootstrap, "replicated-group", "replicated", 0, 150) == 0
        assert replica.cli("HLEN", "korvet:offsets:{replicated-group}") == "1", "a commit is answered once the replica has it"

        replica.stop()
        wait_for(lambda: "connected_slaves:0" in primary.cli("INFO", "replication"), 30, "the primary to lose its replica")
        started = time.monotonic()
        refused = deliver(broker.bootstrap, "replicated", [b"unconfirmed"], retries=0)
        assert refused[0] is not None and refused[0].code() == KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND, refused
        assert time.monotonic() - started < 5, "answered after the replica timeout, not the client's"
        assert deliver(broker.bootstrap, "replicated", [b"acks=1 does not wait"], acks=1) == [None]
        started = time.monotonic()
        assert kafka_wire.offset_commit(broker.bootstrap, "replicated-group", "replicated", 0, 180) == COORDINATOR_LOAD_IN_PROGRESS
        assert time.monotonic() - started < 5

        replica.start()
        wait_for(lambda: linked(replica), 30, "the replica to come back")
        assert deliver(broker.bootstrap, "replicated", [b"confirmed again"]) == [None]
        assert replica.cli("XLEN", "korvet:stream:{replicated:0}") == "203", "the unconfirmed record was written all the same"
    finally:
        if broker:
            broker.stop()
        replica.close()
        primary.close()
