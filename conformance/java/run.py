#!/usr/bin/env python3
"""Runs korvet's Java conformance suite (JUnit, in this folder) against a broker it starts.

    python3 conformance/java/run.py                       # korvet on a fresh redis-server
    python3 conformance/java/run.py --broker kafka        # Apache Kafka (one KRaft node), the reference
    python3 conformance/java/run.py --kafka-version 3.9.1 --tests ProducerConsumerTest

Kafka's jars come from Maven Central through Maven (nothing is committed); the same Maven
classpath runs Kafka's command-line tools and, for --broker kafka, the broker itself. Every
wait is bounded; the exit status is Maven's."""
import argparse
import base64
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "clients"))
import harness  # noqa: E402


def maven(*args, timeout):
    return subprocess.run(["mvn", "-q", "-B", "-f", os.path.join(HERE, "pom.xml"), *args], timeout=timeout)


# The newest release whose connect-file (the FileStream connectors) Maven Central serves; the pom
# pins connect.file.version to it, and Connect workers run from a classpath of that release.
CONNECT_RELEASE = "4.3.1"


def connect_release(kafka_version):
    """The Kafka release the Connect workers run: the tested one when its connect-file exists."""
    return kafka_version if kafka_version.startswith("3.") else CONNECT_RELEASE


def version_flags(kafka_version):
    """Maven flags for a Kafka release: its version, and the kafka-3 profile for the 3.x line."""
    flags = [f"-Dkafka.version={kafka_version}"]
    if kafka_version.startswith("3."):
        flags.append("-Pkafka-3")
    if connect_release(kafka_version) == kafka_version:
        flags.append("-Dconnect.file.version=" + kafka_version)
    return flags


def classpath(kafka_version):
    """The test classpath Maven resolves: Kafka's client, tools, broker, Connect and Streams."""
    out = os.path.join(tempfile.mkdtemp(prefix="korvet-java-"), "classpath")
    done = maven("dependency:build-classpath", *version_flags(kafka_version), f"-Dmdep.outputFile={out}",
                 "-Dmdep.includeScope=test", timeout=1200)
    if done.returncode != 0:
        sys.exit("maven could not resolve the suite's dependencies")
    with open(out) as f:
        return f.read().strip()


class ApacheKafka:
    """One Apache Kafka node in KRaft mode (broker and controller), on free loopback ports: a
    PLAINTEXT listener, and a SASL_SSL one configured as secure_broker configures korvet's (the
    user alice for SCRAM-SHA-256, SCRAM-SHA-512 and PLAIN; sessions of 2 s)."""

    def __init__(self, cp):
        self.dir = tempfile.mkdtemp(prefix="korvet-apache-kafka-")
        self.port = harness.free_port()
        self.sasl_ssl_port = harness.free_port()
        controller = harness.free_port()
        os.makedirs(os.path.join(self.dir, "certs"))
        certs = harness.make_certs(os.path.join(self.dir, "certs"))
        self.ca_file = certs("ca.pem")
        keystore = os.path.join(self.dir, "keystore.pem")
        with open(keystore, "w") as f:
            f.write(open(certs("server.key")).read() + open(certs("server.pem")).read())
        config = os.path.join(self.dir, "server.properties")
        scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        with open(config, "w") as f:
            f.write("\n".join([
                "process.roles=broker,controller", "node.id=1",
                f"controller.quorum.voters=1@127.0.0.1:{controller}",
                f"listeners=PLAINTEXT://127.0.0.1:{self.port},SASL_SSL://127.0.0.1:{self.sasl_ssl_port},CONTROLLER://127.0.0.1:{controller}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port},SASL_SSL://127.0.0.1:{self.sasl_ssl_port}",
                "controller.listener.names=CONTROLLER", "inter.broker.listener.name=PLAINTEXT",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT",
                "sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512,PLAIN",
                f"listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config={scram}",
                f"listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={scram}",
                'listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_alice="alice-secret";',
                "connections.max.reauth.ms=2000",
                "ssl.keystore.type=PEM", f"ssl.keystore.location={keystore}",
                f"log.dirs={os.path.join(self.dir, 'data')}",
                "offsets.topic.replication.factor=1", "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1", "group.initial.rebalance.delay.ms=0",
                "share.coordinator.state.topic.replication.factor=1", "share.coordinator.state.topic.min.isr=1",
                "num.partitions=1", "",
            ]))
        cluster_id = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
        java = ["java", "-Xmx768m", "-cp", cp]
        users = [arg for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512")
                 for arg in ("--add-scram", f"{mechanism}=[name=alice,password=alice-secret]")]
        subprocess.run(java + ["kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", config, *users],
                       check=True, capture_output=True, timeout=120)
        self.log = open(os.path.join(self.dir, "server.log"), "ab")
        self.proc = subprocess.Popen(java + ["kafka.Kafka", config], stdout=self.log, stderr=subprocess.STDOUT)
        harness.wait_for(lambda: self.proc.poll() is not None or harness.port_open(self.port), 120, "Apache Kafka")
        assert self.proc.poll() is None, f"Apache Kafka exited early; see {self.log.name}"

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def secure_broker(redis):
    """A korvet broker (keyspace java-secure) with a SASL_SSL listener whose sessions last 2 s
    (connections.max.reauth.ms), a test CA from openssl, and the user alice (password
    alice-secret), for SecurityTest."""
    certs = harness.make_certs(tempfile.mkdtemp(prefix="korvet-java-certs-"))
    port = harness.free_port()
    broker = harness.Korvet(redis.uri, keyspace="java-secure", extra_env={
        "KORVET_SERVER_LISTENERS": f"SASL_SSL://127.0.0.1:{port}",
        "KORVET_TLS_CERT_FILE": certs("server.pem"),
        "KORVET_TLS_KEY_FILE": certs("server.key"),
        "KORVET_SASL_MAX_REAUTH": "2s",
        "KORVET_SERVER_REBALANCE_DELAY": "0s",
    })
    harness.wait_for(broker.ready, 30, "the SASL_SSL broker's readiness")
    subprocess.run([harness.KORVET_BIN, "users", "set", "alice", "--password", "alice-secret",
                    "--bootstrap-server", broker.bootstrap], check=True, capture_output=True, timeout=60)
    broker.sasl_ssl_port, broker.ca_file = port, certs("ca.pem")
    return broker


def summary():
    """One line per test class from surefire's reports, and the names of the tests that failed."""
    import xml.etree.ElementTree as ET
    lines = []
    for report in sorted(glob.glob(os.path.join(HERE, "target", "surefire-reports", "TEST-*.xml"))):
        suite = ET.parse(report).getroot()
        lines.append(f"  {suite.get('name').rsplit('.', 1)[-1]}: {suite.get('tests')} tests, {suite.get('failures')} failed, "
                     f"{suite.get('errors')} errors, {suite.get('skipped')} skipped, {float(suite.get('time')):.0f} s")
        for case in suite.iter("testcase"):
            if case.find("failure") is not None or case.find("error") is not None:
                lines.append(f"    FAILED {case.get('name')}")
    return "\n".join(lines) or "  no test reports (see Maven's output above)"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--broker", choices=["korvet", "kafka"], default="korvet")
    parser.add_argument("--kafka-version", default=None, help="the Kafka release of client and tools (the pom's by default)")
    parser.add_argument("--tests", default=None, help="surefire's -Dtest selection, such as 'AdminTest,ToolsTest'")
    args = parser.parse_args()
    version = args.kafka_version or "4.4.0"
    cp = classpath(version)
    env = dict(os.environ)
    env["KORVET_JAVA_CLASSPATH"] = cp
    connect = connect_release(version)
    env["KORVET_CONNECT_CLASSPATH"] = cp if connect == version else classpath(connect)
    env["KORVET_BROKER_KIND"] = args.broker
    started = []
    try:
        if args.broker == "kafka":
            kafka = ApacheKafka(cp)
            started.append(kafka)
            env["KORVET_BOOTSTRAP"] = f"127.0.0.1:{kafka.port}"
            env["KORVET_SASL_SSL_BOOTSTRAP"] = f"127.0.0.1:{kafka.sasl_ssl_port}"
            env["KORVET_SASL_SSL_CA_FILE"] = kafka.ca_file
        else:
            redis = harness.Redis()
            started.append(redis)
            # Configured as the Apache Kafka node is: an empty group's first rebalance does not wait.
            broker = harness.Korvet(redis.uri, extra_env={"KORVET_SERVER_REBALANCE_DELAY": "0s"})
            started.append(broker)
            harness.wait_for(broker.ready, 30, "korvet readiness")
            env["KORVET_BOOTSTRAP"] = f"127.0.0.1:{broker.port}"
            env["KORVET_REDIS_URI"] = redis.uri
            env["KORVET_BIN"] = harness.KORVET_BIN
            # A second cluster of three brokers (its own keyspace) for the tests that kill one.
            cluster = harness.Cluster(redis, "java-cluster", 3)
            started.append(cluster)
            for broker in cluster.brokers.values():
                harness.wait_for(broker.ready, 30, "cluster broker readiness")
            env["KORVET_CLUSTER_BOOTSTRAP"] = cluster.bootstrap
            env["KORVET_CLUSTER_PIDS"] = ",".join(str(b.proc.pid) for b in cluster.brokers.values())
            secure = secure_broker(redis)
            started.append(secure)
            env["KORVET_SASL_SSL_BOOTSTRAP"] = f"127.0.0.1:{secure.sasl_ssl_port}"
            env["KORVET_SASL_SSL_CA_FILE"] = secure.ca_file
        mvn = ["mvn", "-q", "-B", "-f", os.path.join(HERE, "pom.xml"), "test", *version_flags(version),
               "-Dsurefire.failIfNoSpecifiedTests=false"]
        if args.tests:
            mvn.append(f"-Dtest={args.tests}")
        shutil.rmtree(os.path.join(HERE, "target", "surefire-reports"), ignore_errors=True)
        started_at = time.monotonic()
        code = subprocess.run(mvn, env=env, timeout=2400).returncode
        print(summary())
        print(f"java suite against {args.broker} (Kafka {version} client): exit {code} in {time.monotonic() - started_at:.0f} s")
        if code != 0 and args.broker == "korvet":
            print(f"korvet's log: {started[1].log_path}")
        return code
    finally:
        for part in reversed(started):
            part.close() if hasattr(part, "close") else part.stop()


if __name__ == "__main__":
    sys.exit(main())
