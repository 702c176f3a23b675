"""Korvet behind Redis Sentinel: a real master, two real replicas and a real redis-sentinel. The
master is killed with kill -9 under an idempotent acks=all load with replica acks; Sentinel
promotes a replica and points the other at it, korvet follows without a restart, and no
acknowledged record is lost."""
import signal

from harness import Korvet, Redis, Sentinel, wait_for
from test_redis_cluster import Load, create_topic


def test_korvet_follows_a_sentinel_failover_and_loses_nothing_acknowledged():
    master = Redis()
    replicas = [Redis(["--replicaof", "127.0.0.1", str(master.port)]) for _ in range(2)]
    sentinel = Sentinel(master)
    broker = None
    try:
        for replica in replicas:
            wait_for(lambda: "master_link_status:up" in replica.cli("INFO", "replication"), 30, "the replicas to sync")
        broker = Korvet(redis_uri=sentinel.uri, extra_env={"KORVET_REDIS_REPLICA_ACKS": "1",
                                                           "KORVET_REDIS_REPLICA_ACK_TIMEOUT": "2s"})
        topic = "sentinel"
        create_topic(broker.bootstrap, topic)
        load = Load(broker.bootstrap, topic)
        wait_for(lambda: load.count() > 500, 60, "producing to start")
        master.proc.send_signal(signal.SIGKILL)
        master.proc.wait(timeout=10)
        wait_for(lambda: sentinel.master_port() in [r.port for r in replicas], 60, "Sentinel to promote a replica")
        promoted = next(r for r in replicas if r.port == sentinel.master_port())
        other = next(r for r in replicas if r is not promoted)
        # acks=all produces need one replica: the other one, once it follows the new master.
        wait_for(lambda: f"master_port:{promoted.port}" in other.cli("INFO", "replication") and
                 "master_link_status:up" in other.cli("INFO", "replication"), 60, "the other replica to follow the new master")
        load.goes_on(3000, "producing to go on through the new master")
        load.stop_and_check(broker.bootstrap, failover=True)
    finally:
        if broker:
            broker.stop()
        sentinel.close()
        for server in replicas + [master]:
            if server.proc.poll() is None:
                server.proc.kill()
                server.proc.wait(timeout=10)
            server.close()
