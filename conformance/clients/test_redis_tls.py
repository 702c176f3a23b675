"""korvet on a TLS-only Redis (`rediss://`) that requires a password, an ACL user and client
certificates, on a TLS-only Redis Cluster and behind a TLS-only Sentinel: every connection korvet
makes (commands, reads, notifications, cluster discovery, Sentinel queries) goes through TLS,
trusting the CA of KORVET_REDIS_CA_FILE."""
import os
import shutil
import subprocess
import tempfile
import time

import pytest
from confluent_kafka import Consumer, Producer

from harness import Korvet, Redis, RedisCluster, free_port, make_certs, port_open, wait_for

pytestmark = pytest.mark.standalone_redis


class TlsRedis(Redis):
    """A redis-server that listens only for TLS, asks for client certificates and knows the user
    `korvet` (password `kpass`) beside the default user (password `rpass`)."""

    def __init__(self, certs):
        self.certs = certs
        super().__init__()

    def start(self):
        c = self.certs
        self.proc = subprocess.Popen(
            ["redis-server", "--port", "0", "--tls-port", str(self.port), "--bind", "127.0.0.1",
             "--tls-cert-file", c("server.pem"), "--tls-key-file", c("server.key"), "--tls-ca-cert-file", c("ca.pem"),
             "--tls-auth-clients", "yes", "--requirepass", "rpass", "--user", "korvet", "on", ">kpass", "~*", "&*", "+@all",
             "--save", "", "--appendonly", "yes", "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: port_open(self.port), 20, f"redis-server on TLS port {self.port}")

    def cli(self, *args):
        c = self.certs
        done = subprocess.run(["redis-cli", "--tls", "--cacert", c("ca.pem"), "--cert", c("client.pem"), "--key", c("client.key"),
                               "-p", str(self.port), "--user", "korvet", "--pass", "kpass", "--no-auth-warning"] + [str(a) for a in args],
                              capture_output=True, text=True, timeout=20, check=True)
        return done.stdout.strip()


@pytest.fixture(scope="module")
def tls_redis():
    folder = tempfile.mkdtemp(prefix="korvet-redis-certs-")
    server = TlsRedis(make_certs(folder))
    yield server
    server.close()
    shutil.rmtree(folder, ignore_errors=True)


def tls_broker(uri, certs, keyspace):
    """A broker on a TLS Redis, trusting the test CA and presenting the client certificate."""
    return Korvet(redis_uri=uri, keyspace=keyspace, extra_env={
        "KORVET_REDIS_CA_FILE": certs("ca.pem"),
        "KORVET_REDIS_CLIENT_CERT_FILE": certs("client.pem"),
        "KORVET_REDIS_CLIENT_KEY_FILE": certs("client.key"),
        "KORVET_SERVER_REBALANCE_DELAY": "200ms",
        "KORVET_SERVER_DEFAULT_PARTITIONS": "2",
    })


def round_trip(broker, topic, count=200):
    """Produces `count` records to two partitions and reads them back through a group."""
    wait_for(broker.ready, 30, "readiness over TLS")
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(count):
        producer.produce(topic, key=b"k%d" % (i % 7), value=b"v%d" % i, partition=i % 2)
    assert producer.flush(30) == 0
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"{topic}-readers", "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    got = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(got) < count:
        msg = consumer.poll(0.5)
        if msg is not None and not msg.error():
            got.append(msg.value())
    consumer.close()
    assert sorted(got) == sorted(b"v%d" % i for i in range(count))


def test_korvet_keeps_its_data_in_a_tls_only_redis_with_an_acl_user_and_client_certificates(tls_redis):
    broker = tls_broker(f"rediss://korvet:kpass@127.0.0.1:{tls_redis.port}", tls_redis.certs, "tls")
    try:
        round_trip(broker, "over-tls")
        lengths = [int(tls_redis.cli("XLEN", f"tls:stream:{{over-tls:{p}}}")) for p in (0, 1)]
        assert lengths == [100, 100]
        assert "kpass" not in broker.logs() and "rediss://***@127.0.0.1" in broker.logs()
    finally:
        broker.stop()


def test_korvet_on_a_tls_only_redis_cluster_with_a_password_and_client_certificates(tls_redis):
    cluster = RedisCluster(certs=tls_redis.certs, password="cpass")
    broker = tls_broker(cluster.uri, tls_redis.certs, "tlscluster")
    try:
        round_trip(broker, "over-tls-cluster")
        # Both partitions' streams hold their records, wherever the cluster put them.
        lengths = [int(cluster.cli("XLEN", f"tlscluster:stream:{{over-tls-cluster:{p}}}")) for p in (0, 1)]
        assert lengths == [100, 100]
        assert "cpass" not in broker.logs()
    finally:
        broker.stop()
        cluster.close()


def test_korvet_behind_a_tls_only_sentinel(tls_redis):
    """rediss+sentinel://: the Sentinel is asked over TLS (with the client certificate) and the
    master it names is reached over TLS as the ACL user."""
    c = tls_redis.certs
    folder = tempfile.mkdtemp(prefix="korvet-tls-sentinel-")
    port = free_port()
    config = os.path.join(folder, "sentinel.conf")
    with open(config, "w") as f:
        f.write(f"port 0\ntls-port {port}\nbind 127.0.0.1\ndir {folder}\n"
                f"tls-cert-file {c('server.pem')}\ntls-key-file {c('server.key')}\ntls-ca-cert-file {c('ca.pem')}\n"
                f"tls-replication yes\nsentinel monitor tlsmaster 127.0.0.1 {tls_redis.port} 1\n"
                f"sentinel auth-pass tlsmaster rpass\n")
    sentinel = subprocess.Popen(["redis-server", config, "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    broker = None
    try:
        wait_for(lambda: port_open(port), 20, "the TLS Sentinel")
        broker = tls_broker(f"rediss+sentinel://korvet:kpass@127.0.0.1:{port}/tlsmaster", c, "tlssentinel")
        round_trip(broker, "over-tls-sentinel")
        lengths = [int(tls_redis.cli("XLEN", f"tlssentinel:stream:{{over-tls-sentinel:{p}}}")) for p in (0, 1)]
        assert lengths == [100, 100]
        assert "kpass" not in broker.logs()
    finally:
        if broker:
            broker.stop()
        sentinel.kill()
        sentinel.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)
