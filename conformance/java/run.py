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


def version_flags(kafka_version):
    """Maven flags for a Kafka release: its version, and the kafka-3 profile for the 3.x line."""
    flags = [f"-Dkafka.version={kafka_version}"]
    if kafka_version.startswith("3."):
        flags += ["-Pkafka-3", "-Dconnect.file.version=" + kafka_version]
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
    """One Apache Kafka node in KRaft mode (broker and controller), on free loopback ports."""

    def __init__(self, cp):
        self.dir = tempfile.mkdtemp(prefix="korvet-apache-kafka-")
        self.port = harness.free_port()
        controller = harness.free_port()
        config = os.path.join(self.dir, "server.properties")
        with open(config, "w") as f:
            f.write("\n".join([
                "process.roles=broker,controller", "node.id=1",
                f"controller.quorum.voters=1@127.0.0.1:{controller}",
                f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{controller}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
                "controller.listener.names=CONTROLLER", "inter.broker.listener.name=PLAINTEXT",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                f"log.dirs={os.path.join(self.dir, 'data')}",
                "offsets.topic.replication.factor=1", "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1", "group.initial.rebalance.delay.ms=0",
                "share.coordinator.state.topic.replication.factor=1", "share.coordinator.state.topic.min.isr=1",
                "num.partitions=1", "",
            ]))
        cluster_id = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
        java = ["java", "-Xmx768m", "-cp", cp]
        subprocess.run(java + ["kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", config],
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
    env["KORVET_BROKER_KIND"] = args.broker
    started = []
    try:
        if args.broker == "kafka":
            kafka = ApacheKafka(cp)
            started.append(kafka)
            env["KORVET_BOOTSTRAP"] = f"127.0.0.1:{kafka.port}"
        else:
            redis = harness.Redis()
            started.append(redis)
            broker = harness.Korvet(redis.uri)
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
            print(f"korvet's log: {started[-1].log_path}")
        return code
    finally:
        for part in reversed(started):
            part.close() if hasattr(part, "close") else part.stop()


if __name__ == "__main__":
    sys.exit(main())
