"""Apache Kafka beside korvet in the same benchmark run: one KRaft node started from the Maven
Central jars (as conformance/java/run.py starts it), and the same produce and consume cases run
against both brokers with korvet-bench (librdkafka) and with Kafka's own kafka-producer-perf-test
and kafka-consumer-perf-test. Each case alternates between the brokers round by round, so that
a noisy moment of the machine falls on both, and is judged by its median."""
import importlib.util
import os
import re
import shutil
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "conformance", "clients"))  # harness, which the Java runner uses


def java_runner():
    """conformance/java/run.py, loaded by path (bench/ has a run.py of its own)."""
    spec = importlib.util.spec_from_file_location("korvet_java_run", os.path.join(HERE, "..", "conformance", "java", "run.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def available():
    """Why the comparison cannot run here, or None when it can."""
    for tool in ("java", "mvn"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (bash .ci/run installs it)"
    return None


def java_tool(classpath, main, *args, timeout=600):
    done = subprocess.run(["java", "-Xmx512m", "-cp", classpath, main, *map(str, args)], capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{main} failed: {done.stdout[-1500:]}{done.stderr[-1500:]}")
    return done.stdout


def producer_perf(classpath, bootstrap, topic, records, size, acks):
    """kafka-producer-perf-test's summary line: records/s and latency percentiles (ms)."""
    out = java_tool(classpath, "org.apache.kafka.tools.ProducerPerformance", "--topic", topic, "--num-records", records,
                    "--record-size", size, "--throughput", -1, "--producer-props", f"bootstrap.servers={bootstrap}", f"acks={acks}")
    summary = [line for line in out.splitlines() if "records sent" in line][-1]
    rate = float(re.search(r"([\d.]+) records/sec", summary).group(1))
    p50, p99 = (float(re.search(rf"(\d+) ms {label}", summary).group(1)) for label in ("50th", "99th"))
    return {"records_per_s": rate, "p50_ms": p50, "p99_ms": p99}


def consumer_perf(classpath, bootstrap, topic, records):
    """kafka-consumer-perf-test's fetch rate (records/s, not counting the group join)."""
    out = java_tool(classpath, "org.apache.kafka.tools.ConsumerPerformance", "--bootstrap-server", bootstrap, "--topic", topic,
                    "--messages", records, "--timeout", 60000, "--group", f"perf-{os.getpid()}-{topic}")
    header, values = [line for line in out.splitlines() if line.strip()][-2:]
    row = dict(zip([h.strip() for h in header.split(",")], [v.strip() for v in values.split(",")]))
    return {"records_per_s": float(row["fetch.nMsg.sec"])}


def compare(korvet_bootstrap, pids, bench, create_korvet_topic, rss_mib, records, rounds):
    """`pids`: korvet's and its redis-server's process ids, by name, for their resident memory."""
    # Runs every case against korvet and Apache Kafka, `rounds` times each.
    java_run = java_runner()
    classpath = java_run.classpath("4.4.0")
    kafka = java_run.ApacheKafka(classpath)
    brokers = {"korvet": korvet_bootstrap, "kafka": f"127.0.0.1:{kafka.port}"}
    results = {"records": records, "rounds": rounds, "cases": {}}
    try:
        def topic(broker, name):
            if broker == "korvet":
                create_korvet_topic(name)
            else:
                java_tool(classpath, "org.apache.kafka.tools.TopicCommand", "--bootstrap-server", brokers["kafka"], "--create",
                          "--topic", name, "--partitions", 1, "--replication-factor", 1)
            return name

        def record(case, broker, outcome):
            results["cases"].setdefault(case, {}).setdefault(broker, []).append(outcome)

        for round_ in range(rounds):
            for broker, bootstrap in brokers.items():
                for acks in ("1", "all"):
                    name = topic(broker, f"vs-kafka-bench-{acks}-{round_}")
                    outcome = bench("produce", "--bootstrap", bootstrap, "--topic", name, "--records", records, "--size", 100, "--acks", acks)
                    record(f"korvet-bench produce, acks={acks}", broker, outcome)
                    if acks == "1":
                        consumed = bench("consume", "--bootstrap", bootstrap, "--topic", name, "--records", records)
                        record("korvet-bench consume from offset 0", broker, consumed)
                for acks in ("1", "all"):
                    name = topic(broker, f"vs-kafka-perf-{acks}-{round_}")
                    record(f"kafka-producer-perf-test, acks={acks}", broker, producer_perf(classpath, bootstrap, name, records, 100, acks))
                    if acks == "1":
                        record("kafka-consumer-perf-test", broker, consumer_perf(classpath, bootstrap, name, records))
        results["rss_mib"] = {name: rss_mib(pid) for name, pid in pids.items()}
        results["rss_mib"]["kafka"] = rss_mib(kafka.proc.pid)
    finally:
        kafka.close()
    return results


def report(r):
    """The Markdown table: each case's median on both brokers and korvet's ratio to Kafka."""
    lines = ["", f"Against Apache Kafka 4.4.0 (one KRaft node from the Maven jars, default settings, on the same machine in the same run): "
             f"100 B records, 1 partition, {r['records']:,} records per run, median of {r['rounds']} runs alternating between the brokers.", "",
             "| case | korvet records/s | Kafka records/s | korvet / Kafka | korvet p99 ms | Kafka p99 ms |", "|---|---|---|---|---|---|"]
    for case, by_broker in r["cases"].items():
        medians = {broker: statistics.median(run["records_per_s"] for run in runs) for broker, runs in by_broker.items()}
        p99 = {broker: (f"{statistics.median(run['p99_ms'] for run in runs):.1f}" if "p99_ms" in runs[0] else "–")
               for broker, runs in by_broker.items()}
        lines.append(f"| {case} | {medians['korvet']:,.0f} | {medians['kafka']:,.0f} | {medians['korvet'] / medians['kafka']:.2f} | "
                     f"{p99['korvet']} | {p99['kafka']} |")
    rss = r["rss_mib"]
    if "redis" in rss:
        memory = (f"korvet {rss['korvet']:.0f} MiB, its redis-server {rss['redis']:.0f} MiB (holding every record of the whole "
                  f"benchmark), the Kafka JVM {rss['kafka']:.0f} MiB (its records are on disk and in the page cache)")
    else:  # runs from before the two were reported apart
        memory = (f"korvet and its redis-server {rss['korvet']:.0f} MiB together (Redis holding every record of the whole benchmark), "
                  f"the Kafka JVM {rss['kafka']:.0f} MiB")
    lines += ["", f"Resident memory after these runs: {memory}.", ""]
    return "\n".join(lines)
