"""Runs kafka-python's own integration tests (from its source distribution) against korvet on a
real Redis. Usage: python3 run_kafka_python.py [extra pytest args]

Tests that need features korvet does not have yet are deselected below, each with its reason."""
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "clients"))
from harness import KORVET_BIN, ROOT, Korvet, Redis, free_port, make_certs  # noqa: E402

VERSION = "3.0.12"
# The Kafka release whose API versions korvet's ApiVersions answer matches; kafka-python infers
# this from the answer, and test_kafka_version_infer checks the inference.
KAFKA_VERSION = "3.8.0"
WORK = os.path.join(ROOT, "target", "peer")
SOURCE = os.path.join(WORK, f"kafka_python-{VERSION}")

# name fragment -> why it cannot pass yet
DESELECTED = {
    "unsupported_encoding": "korvet stores each record as its own stream entry and serves fetches uncompressed, "
                            "so a consumer never needs the producer's codec and the expected error cannot occur",
    "test_idempotent_producer_max_in_flight": "flaky in kafka-python itself (about 1 run in 6 here): its group-less "
        "consumer subscribes while the bootstrap Metadata request (for no topics) is in flight; that response "
        "empties the assignment and clears the pending refresh, so the consumer waits metadata_max_age_ms (5 min) "
        "and the test's 30 s read finds nothing. The producer half passes every time.",
    "test_kafka_consumer_max_bytes_simple": "the same kafka-python race as test_idempotent_producer_max_in_flight: its "
        "group-less consumer subscribes while the bootstrap Metadata request is in flight and can wait 5 minutes for "
        "the next refresh (failed once in CI, passed in every other run)",
    "describe_configs_broker_resource": "it expects advertised.listeners to come from DEFAULT_CONFIG before Kafka 4.0; "
                                        "korvet reports STATIC_BROKER_CONFIG, as Kafka 4.0 does",
}


def prepare():
    if not os.path.isdir(SOURCE):
        os.makedirs(WORK, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-binary", ":all:", "--no-deps",
                        f"kafka-python=={VERSION}", "-d", WORK], check=True, timeout=300)
        with tarfile.open(os.path.join(WORK, f"kafka_python-{VERSION}.tar.gz")) as tar:
            tar.extractall(WORK)
    open(os.path.join(SOURCE, "test", "__init__.py"), "a").close()
    shutil.copy(os.path.join(HERE, "service.py"), os.path.join(SOURCE, "test", "service.py"))
    shutil.copy(os.path.join(HERE, "test_korvet_security.py"), os.path.join(SOURCE, "test", "integration", "test_korvet_security.py"))
    os.makedirs(os.path.join(SOURCE, "servers", KAFKA_VERSION, "kafka-bin"), exist_ok=True)


def main():
    prepare()
    redis = Redis()
    # kafka-python's SASL and SSL tests (test_korvet_security.py) use two more listeners.
    ssl_dir = tempfile.mkdtemp(prefix="korvet-peer-certs-")
    certs = make_certs(ssl_dir)
    shutil.copy(certs("ca.pem"), os.path.join(ssl_dir, "ca-cert"))
    sasl_port, ssl_port = free_port(), free_port()
    broker = Korvet(redis_uri=redis.uri, keyspace="peer", extra_env={
        "KORVET_SERVER_LISTENERS": f"SASL_PLAINTEXT://127.0.0.1:{sasl_port},SSL://127.0.0.1:{ssl_port}",
        "KORVET_TLS_CERT_FILE": certs("server.pem"),
        "KORVET_TLS_KEY_FILE": certs("server.key"),
        "KORVET_SERVER_DEFAULT_PARTITIONS": "4",
        # As in the broker config kafka-python's own fixtures use: test_group asks for 3 s sessions.
        "KORVET_SERVER_GROUP_MIN_SESSION_TIMEOUT": "1s",
        "KORVET_SERVER_REBALANCE_DELAY": "0s",
        # An authorizer, for the ACL tests, that lets everyone through where no ACL names the resource.
        "KORVET_SECURITY_AUTHORIZER": "acl",
        "KORVET_SECURITY_ALLOW_EVERYONE_IF_NO_ACL": "true",
    })
    try:
        subprocess.run([KORVET_BIN, "users", "set", "alice", "--password", "alice-secret", "--bootstrap-server", broker.bootstrap],
                       check=True, capture_output=True, timeout=60)
        env = dict(os.environ, KAFKA_URI=f"tcp://127.0.0.1:{broker.port}", KAFKA_VERSION=KAFKA_VERSION,
                   KORVET_PEER_SASL=f"127.0.0.1:{sasl_port}", KORVET_PEER_SSL=f"127.0.0.1:{ssl_port}", KORVET_PEER_SSL_DIR=ssl_dir)
        deselect = " or ".join(DESELECTED)
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--timeout", "120",
               "--timeout-method=signal", "-k", f"not ({deselect})",
               "test/integration/test_producer_integration.py", "test/integration/test_consumer_integration.py",
               "test/integration/test_admin_integration.py", "test/integration/test_korvet_security.py",
               *sys.argv[1:]]
        code = subprocess.run(cmd, cwd=SOURCE, env=env, timeout=1800).returncode
    finally:
        broker.stop()
        redis.close()
    if code != 0:
        print(f"korvet log: {broker.log_path}")
    sys.exit(code)


if __name__ == "__main__":
    main()
