"""korvet on a TLS-only Redis (`rediss://`) that requires a password, an ACL user and client
certificates: every connection korvet makes (commands, reads, notifications) goes through TLS,
trusting the CA of KORVET_REDIS_CA_FILE."""
import shutil
import subprocess
import tempfile
import time

import pytest
from confluent_kafka import Consumer, Producer

from harness import Korvet, Redis, make_certs, port_open, wait_for

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


def test_korvet_keeps_its_data_in_a_tls_only_redis_with_an_acl_user_and_client_certificates(tls_redis):
    c = tls_redis.certs
    broker = Korvet(redis_uri=f"rediss://korvet:kpass@127.0.0.1:{tls_redis.port}", keyspace="tls", extra_env={
        "KORVET_REDIS_CA_FILE": c("ca.pem"),
        "KORVET_REDIS_CLIENT_CERT_FILE": c("client.pem"),
        "KORVET_REDIS_CLIENT_KEY_FILE": c("client.key"),
        "KORVET_SERVER_REBALANCE_DELAY": "200ms",
        "KORVET_SERVER_DEFAULT_PARTITIONS": "2",
    })
    try:
        wait_for(broker.ready, 20, "readiness over TLS")
        producer = Producer({"bootstrap.servers": broker.bootstrap})
        for i in range(200):
            producer.produce("over-tls", key=b"k%d" % (i % 7), value=b"v%d" % i, partition=i % 2)
        assert producer.flush(30) == 0
        consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "tls-readers", "auto.offset.reset": "earliest"})
        consumer.subscribe(["over-tls"])
        got = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(got) < 200:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                got.append(msg.value())
        consumer.close()
        assert sorted(got) == sorted(b"v%d" % i for i in range(200))
        lengths = [int(tls_redis.cli("XLEN", f"tls:stream:{{over-tls:{p}}}")) for p in (0, 1)]
        assert lengths == [100, 100]
        assert "kpass" not in broker.logs() and "rediss://***@127.0.0.1" in broker.logs()
    finally:
        broker.stop()
