#!/usr/bin/env python3
"""korvet's benchmark: starts its own redis-server and a release build of korvet, measures the
physical limit of the storage layout (pipelined XADD of the same payload into the same Redis, with
redis-benchmark), then a produce matrix (100 B and 1 KiB records; 1 and 8 partitions; acks=1 and
acks=all; no compression and lz4) and consumption from offset 0 with korvet-bench (librdkafka), the
same reads straight from Redis (XRANGE with redis-benchmark), steady 50k records/s runs at acks=all
for produce latency, start-up time, resident memory and CPU per million records of korvet and of
Redis. The measurements behind the targets are repeated three times (each produce run paired with
a baseline run just before it) and judged by their median. Writes results.md (a Markdown table
with the targets) and results.png into the output directory.

Unless given --no-kafka (or run without Java and Maven), it also starts Apache Kafka 4.4.0 from the
Maven Central jars and runs the same produce and consume cases against both brokers, with
korvet-bench and with Kafka's own kafka-producer-perf-test and kafka-consumer-perf-test
(bench/kafka_compare.py).

    python3 bench/run.py                 # the full run, a few minutes
    python3 bench/run.py --quick         # small counts: checks the machinery, not the numbers
    python3 bench/run.py --quick --kafka # the same, with the Apache Kafka comparison
"""
import argparse
import json
import os
import statistics
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import kafka_compare

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
RELEASE = os.environ.get("KORVET_BENCH_BINARIES", os.path.join(ROOT, "target", "release"))
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition, timeout, what, step=0.001):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(step)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


class Sampler:
    """CPU used and peak RSS of processes while a block runs."""

    def __init__(self, pids):
        self.pids = pids

    def __enter__(self):
        self.cpu_before = {p: cpu_seconds(p) for p in self.pids}
        self.peak = {p: rss_mib(p) for p in self.pids}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while not self.stop.wait(0.1):
            for p in self.pids:
                self.peak[p] = max(self.peak[p], rss_mib(p))

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self.cpu = {p: cpu_seconds(p) - self.cpu_before[p] for p in self.pids}


class Processes:
    def __init__(self, extra_env=None):
        self.dir = tempfile.mkdtemp(prefix="korvet-bench-")
        self.redis_port = free_port()
        self.redis = subprocess.Popen(
            ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.dir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: port_open(self.redis_port), 20, "redis-server")
        self.kafka_port, self.management_port = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("KORVET_")}
        env.update({"KORVET_REDIS_URI": f"redis://127.0.0.1:{self.redis_port}", "KORVET_SERVER_HOST": "127.0.0.1",
                    "KORVET_SERVER_PORT": str(self.kafka_port), "KORVET_MANAGEMENT_PORT": str(self.management_port),
                    "KORVET_LOG_LEVEL": "warn"})
        env.update(extra_env or {})
        started = time.monotonic()
        self.korvet = subprocess.Popen([os.path.join(RELEASE, "korvet"), "serve"], env=env,
                                       stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.dir, "korvet.log"), "wb"))
        wait_for(lambda: port_open(self.kafka_port), 30, "korvet's Kafka port")
        self.start_to_listening_ms = (time.monotonic() - started) * 1000
        wait_for(self.ready, 30, "korvet readiness")
        self.start_to_ready_ms = (time.monotonic() - started) * 1000

    def ready(self):
        try:
            url = f"http://127.0.0.1:{self.management_port}/actuator/health/readiness"
            with urllib.request.urlopen(url, timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.kafka_port}"

    def close(self):
        for proc in (self.korvet, self.redis):
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def bench(*args):
    done = subprocess.run([os.path.join(RELEASE, "korvet-bench"), *map(str, args)], capture_output=True, text=True, timeout=900)
    sys.stderr.write(done.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"korvet-bench {' '.join(map(str, args))} failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def create_topic(procs, topic, partitions, **configs):
    config_args = [arg for key, value in configs.items() for arg in ("--config", f"{key.replace('_', '.')}={value}")]
    subprocess.run([os.path.join(RELEASE, "korvet"), "topics", "create", topic, "--partitions", str(partitions), *config_args,
                    "--bootstrap-server", procs.bootstrap], check=True, capture_output=True, timeout=60)


def redis_cli(procs, *args):
    options = [a for a in args if a == "--json"]
    args = [a for a in args if a != "--json"]
    return subprocess.run(["redis-cli", "-p", str(procs.redis_port), *options, *map(str, args)], capture_output=True, text=True,
                          timeout=60, check=True).stdout


def redis_used_memory(procs):
    return int(redis_cli(procs, "INFO", "memory").split("used_memory:")[1].split()[0])


def large_trim(procs, topic, records):
    """DeleteRecords of a whole partition of `records` entries, with Redis's SLOWLOG at 1 ms: how
    long korvet's longest single command held Redis."""
    redis_cli(procs, "CONFIG", "SET", "slowlog-log-slower-than", 1000)
    redis_cli(procs, "CONFIG", "SET", "slowlog-max-len", 10000)
    redis_cli(procs, "SLOWLOG", "RESET")
    started = time.monotonic()
    subprocess.run([os.path.join(RELEASE, "korvet"), "topics", "delete-records", topic, "--bootstrap-server", procs.bootstrap],
                   check=True, capture_output=True, timeout=600)
    seconds = time.monotonic() - started
    entries = json.loads(redis_cli(procs, "--json", "SLOWLOG", "GET", 10000))
    # Each entry: id, unix time, duration (µs), command and arguments, client, name.
    durations = [entry[2] for entry in entries if entry[3][:1] != ["CONFIG"]]
    redis_cli(procs, "CONFIG", "SET", "slowlog-log-slower-than", 10000)
    return {"records": records, "seconds": seconds, "over_1ms": len(durations),
            "slowest_ms": max(durations, default=0) / 1000, "over_10ms": sum(1 for d in durations if d >= 10_000)}


def xadd_baseline(procs, size, records):
    """Pipelined XADD of a record's payload with korvet's field layout, straight into Redis."""
    payload = "x" * size
    done = subprocess.run(
        ["redis-benchmark", "-p", str(procs.redis_port), "-n", str(records), "-c", "50", "-P", "64", "--csv",
         "XADD", f"bench:baseline:{size}", "*", "timestamp", "1732460000000", "value", payload],
        capture_output=True, text=True, timeout=600, check=True)
    rows = [line for line in done.stdout.splitlines() if line.startswith('"XADD')]
    rate = float(rows[-1].split(",")[1].strip('"'))
    subprocess.run(["redis-cli", "-p", str(procs.redis_port), "DEL", f"bench:baseline:{size}"], capture_output=True)
    return rate


def xrange_baseline(procs, topic, entries):
    """Pipelined XRANGE of 1000 entries at a time from the stream korvet wrote for `topic`
    (partition 0), straight from Redis: what the storage layout lets any reader reach."""
    per_call = 1000
    calls = max(entries // per_call, 20)
    done = subprocess.run(
        ["redis-benchmark", "-p", str(procs.redis_port), "-n", str(calls), "-c", "2", "-P", "4", "--csv",
         "XRANGE", f"korvet:stream:{{{topic}:0}}", "0-1", f"{per_call - 1}-1"],
        capture_output=True, text=True, timeout=600, check=True)
    rows = [line for line in done.stdout.splitlines() if line.startswith('"XRANGE')]
    return float(rows[-1].split(",")[1].strip('"')) * per_call


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small counts, to check the machinery")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench"), help="where results.md and results.png go")
    parser.add_argument("--no-build", action="store_true")
    parser.add_argument("--no-kafka", action="store_true", help="leave out the comparison with Apache Kafka")
    parser.add_argument("--kafka", action="store_true", help="compare with Apache Kafka in a --quick run too")
    args = parser.parse_args()
    # Found out before minutes of measuring, not after: the chart needs matplotlib.
    try:
        import matplotlib  # noqa: F401
        chart_missing = None
    except ImportError:
        chart_missing = "matplotlib is not installed (pip install matplotlib): results.md and results.json are written, results.png is not"
        print(f"note: {chart_missing}", file=sys.stderr)
    with_kafka = not args.no_kafka and (args.kafka or not args.quick)
    if with_kafka and kafka_compare.available():
        print(f"note: no comparison with Apache Kafka: {kafka_compare.available()}", file=sys.stderr)
        with_kafka = False
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "korvet", "--bin", "korvet-bench"], cwd=ROOT, check=True)
    scale = 0.02 if args.quick else 1.0
    count = {100: int(400_000 * scale), 1024: int(150_000 * scale)}
    procs = Processes()
    results = {"produce": [], "machine": f"{os.cpu_count()} cores", "quick": args.quick}
    try:
        time.sleep(0 if args.quick else 2)  # let start-up settle before reading idle memory
        results["idle_rss_mib"] = rss_mib(procs.korvet.pid)
        results["start_to_listening_ms"] = procs.start_to_listening_ms
        results["start_to_ready_ms"] = procs.start_to_ready_ms
        results["baseline"] = {size: xadd_baseline(procs, size, max(count[size], 10_000)) for size in (100, 1024)}
        run = 0
        for size in (100, 1024):
            for partitions in (1, 8):
                for acks in ("1", "all"):
                    for compression in ("none", "lz4"):
                        run += 1
                        topic = f"bench-{run}-{size}-{partitions}-{acks}-{compression}"
                        create_topic(procs, topic, partitions)
                        with Sampler([procs.korvet.pid, procs.redis.pid]) as sampled:
                            outcome = bench("produce", "--bootstrap", procs.bootstrap, "--topic", topic, "--records", count[size],
                                            "--size", size, "--acks", acks, "--compression", compression)
                        outcome.update(size=size, partitions=partitions, acks=acks, compression=compression, topic=topic,
                                       korvet_cpu_s=sampled.cpu[procs.korvet.pid], redis_cpu_s=sampled.cpu[procs.redis.pid],
                                       korvet_peak_rss_mib=sampled.peak[procs.korvet.pid])
                        results["produce"].append(outcome)
        # Consumption is measured on a longer log than one produce run leaves, so that the rate
        # describes reading, not the first fetches of a consumer finding its feet.
        first = {"topic": "bench-consume", "records": int(1_500_000 * scale), "partitions": 1}
        create_topic(procs, first["topic"], 1)
        memory_before = redis_used_memory(procs)
        bench("produce", "--bootstrap", procs.bootstrap, "--topic", first["topic"], "--records", first["records"], "--size", 100,
              "--acks", "1")
        results["redis_bytes_per_record"] = (redis_used_memory(procs) - memory_before) / first["records"]
        eight = next(r for r in results["produce"] if (r["size"], r["partitions"], r["acks"], r["compression"]) == (100, 8, "1", "none"))
        results["xrange_baseline"] = xrange_baseline(procs, first["topic"], first["records"])
        results["consume"] = []
        for source in (first, eight):
            with Sampler([procs.korvet.pid, procs.redis.pid]) as sampled:
                outcome = bench("consume", "--bootstrap", procs.bootstrap, "--topic", source["topic"], "--records", source["records"])
            outcome.update(partitions=source["partitions"], size=100, korvet_cpu_s=sampled.cpu[procs.korvet.pid],
                           redis_cpu_s=sampled.cpu[procs.redis.pid])
            results["consume"].append(outcome)
        # The targets are checked on repeated runs, each produce run paired with a baseline run
        # just before it: on a shared 2-core machine one run can be off by a third either way.
        rounds = 1 if args.quick else 3
        results["produce_target"] = []
        for round_ in range(rounds):
            baseline = xadd_baseline(procs, 100, max(count[100], 10_000))
            topic = f"bench-target-{round_}"
            create_topic(procs, topic, 1)
            outcome = bench("produce", "--bootstrap", procs.bootstrap, "--topic", topic, "--records", count[100], "--size", 100,
                            "--acks", "1", "--compression", "none")
            results["produce_target"].append({"baseline": baseline, "records_per_s": outcome["records_per_s"],
                                              "ratio": outcome["records_per_s"] / baseline})
        results["consume_target"] = [results["consume"][0]["records_per_s"]]
        for _ in range(rounds - 1):
            outcome = bench("consume", "--bootstrap", procs.bootstrap, "--topic", first["topic"], "--records", first["records"])
            results["consume_target"].append(outcome["records_per_s"])
        steady_rate = 50_000
        results["steady"] = {1: [], 0: []}
        for round_ in range(rounds):
            for linger in (1, 0):
                topic = f"bench-steady-{linger}-{round_}"
                create_topic(procs, topic, 1)
                with Sampler([procs.korvet.pid]) as sampled:
                    outcome = bench("produce", "--bootstrap", procs.bootstrap, "--topic", topic, "--records",
                                    int(steady_rate * 8 * scale), "--size", 100, "--acks", "all", "--rate", steady_rate,
                                    "--linger-ms", linger)
                outcome.update(rate=steady_rate, linger_ms=linger, korvet_peak_rss_mib=sampled.peak[procs.korvet.pid])
                results["steady"][linger].append(outcome)
        # A trim of a whole partition of a million records or more, watched with SLOWLOG.
        results["large_trim"] = large_trim(procs, first["topic"], first["records"])
        if with_kafka:
            results["kafka"] = kafka_compare.compare(procs.bootstrap, {"korvet": procs.korvet.pid, "redis": procs.redis.pid}, bench,
                                                     lambda name: create_topic(procs, name, 1), rss_mib, count[100], rounds)
    finally:
        procs.close()
    # Produce with retention trimming 8 partitions as it goes (retention.bytes of 1 MiB per
    # partition) against the same produce without, in pairs, on a broker and Redis of their own
    # that check retention every second (the other runs keep the default of 5 minutes).
    retaining = Processes({"KORVET_SERVER_RETENTION_CHECK_INTERVAL": "1s"})
    try:
        results["retention"] = []
        for round_ in range(rounds):
            pair = {}
            for name, configs in (("without", {}), ("with", {"retention_bytes": 1 << 20})):
                topic = f"bench-retention-{name}-{round_}"
                create_topic(retaining, topic, 8, **configs)
                outcome = bench("produce", "--bootstrap", retaining.bootstrap, "--topic", topic, "--records", count[100],
                                "--size", 100, "--acks", "1")
                pair[name] = outcome["records_per_s"]
            results["retention"].append(pair)
    finally:
        retaining.close()
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    markdown = report(results)
    if "kafka" in results:
        markdown += kafka_compare.report(results["kafka"])
    if chart_missing:
        markdown += f"\nNo chart: {chart_missing}.\n"
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(markdown)
    if not chart_missing:
        chart(results, os.path.join(args.out, "results.png"))
    print(markdown)


def verdict(value, target, higher_is_better=True):
    met = value >= target if higher_is_better else value <= target
    if met:
        return "met"
    miss = (target - value) / target if higher_is_better else (value - target) / target
    return f"**missed by {miss:.0%}**"


def report(r):
    base = r["baseline"]
    lines = [f"Measured on {r['machine']}{' (quick run: counts too small for real numbers)' if r['quick'] else ''}; "
             "korvet (release) and redis-server on the same machine, side by side in one run.", "",
             "| size | partitions | acks | compression | records/s | MB/s | p50 ms | p99 ms | p99.9 ms | vs XADD baseline | korvet CPU s / M records | Redis CPU s / M records |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in r["produce"]:
        per_million = 1e6 / max(p["records"], 1)
        lines.append(f"| {p['size']} B | {p['partitions']} | {p['acks']} | {p['compression']} | {p['records_per_s']:,.0f} | "
                     f"{p['mb_per_s']:.1f} | {p['p50_ms']:.2f} | {p['p99_ms']:.2f} | {p['p999_ms']:.2f} | "
                     f"{p['records_per_s'] / base[p['size']]:.0%} | {p['korvet_cpu_s'] * per_million:.1f} | {p['redis_cpu_s'] * per_million:.1f} |")
    lines += ["", f"Baseline: redis-benchmark, 50 clients, pipeline 64, `XADD key * timestamp <ms> value <payload>`: "
              f"{base[100]:,.0f} XADD/s at 100 B, {base[1024]:,.0f} XADD/s at 1 KiB.", "",
              "| consume from offset 0 | records/s | MB/s | vs XRANGE baseline | korvet CPU s / M records | Redis CPU s / M records |",
              "|---|---|---|---|---|---|"]
    xrange = r["xrange_baseline"]
    for c in r["consume"]:
        per_million = 1e6 / max(c["records"], 1)
        lines.append(f"| 100 B, {c['partitions']} partition(s), {c['records']:,} records | {c['records_per_s']:,.0f} | {c['mb_per_s']:.1f} | "
                     f"{c['records_per_s'] / xrange:.0%} | {c['korvet_cpu_s'] * per_million:.1f} | {c['redis_cpu_s'] * per_million:.1f} |")
    lines += ["", f"XRANGE baseline: redis-benchmark, 2 clients, pipeline 4, `XRANGE` of 1000 entries of the stream consumed in the first row: "
              f"Redis alone serves {xrange:,.0f} entries/s, the ceiling for any reader of this layout on this machine."]
    ratios = [t["ratio"] for t in r["produce_target"]]
    ratio = statistics.median(ratios)
    consumes = r["consume_target"]
    consume = statistics.median(consumes)
    produce_runs = ", ".join(f"{t['records_per_s']:,.0f} vs {t['baseline']:,.0f}/s" for t in r["produce_target"])
    consume_runs = ", ".join(f"{c:,.0f}" for c in consumes)

    def median_run(runs):
        """The run with the median p99, and every run's p99."""
        ordered = sorted(runs, key=lambda run: run["p99_ms"])
        return ordered[len(ordered) // 2], ", ".join(f"{run['p99_ms']:.2f}" for run in runs)

    (steady, steady_p99s), (eager, eager_p99s) = median_run(r["steady"][1]), median_run(r["steady"][0])
    retention = statistics.median(pair["with"] / pair["without"] for pair in r["retention"])
    retention_runs = ", ".join(f"{pair['with']:,.0f} vs {pair['without']:,.0f}/s" for pair in r["retention"])
    trim = r["large_trim"]
    first_records = r["consume"][0]["records"]
    rounds = len(r["steady"][1])
    xrange = r["xrange_baseline"]
    lines += ["", "| target | measured | verdict |", "|---|---|---|",
              f"| produce 100 B, 1 partition, acks=1, none ≥ 40% of pipelined XADD | median {ratio:.0%} of {len(ratios)} runs each paired with a baseline run ({produce_runs}) | {verdict(ratio, 0.40)} |",
              f"| consume from offset 0 ≥ 1,000,000 records/s | median {consume:,.0f} records/s of {len(consumes)} runs ({consume_runs}); {consume / xrange:.0%} of Redis's own XRANGE rate, {xrange:,.0f} entries/s | {verdict(consume, 1e6)} |",
              f"| p99 produce latency at acks=all, steady {steady['rate']:,} records/s (linger.ms=1) < 5 ms | median {steady['p99_ms']:.2f} ms of {rounds} runs ({steady_p99s} ms); that run: p50 {steady['p50_ms']:.2f}, p99.9 {steady['p999_ms']:.2f}, {steady['records_per_s']:,.0f} records/s achieved | {verdict(steady['p99_ms'], 5, False)} |",
              f"| the same with linger.ms=0 (a request per few records) | median {eager['p99_ms']:.2f} ms ({eager_p99s} ms); that run: p50 {eager['p50_ms']:.2f}, p99.9 {eager['p999_ms']:.2f} | {verdict(eager['p99_ms'], 5, False)} |",
              f"| idle resident memory < 20 MiB | {r['idle_rss_mib']:.1f} MiB | {verdict(r['idle_rss_mib'], 20, False)} |",
              f"| serving within 100 ms of start | listening after {r['start_to_listening_ms']:.0f} ms, ready after {r['start_to_ready_ms']:.0f} ms | {verdict(r['start_to_listening_ms'], 100, False)} |",
              f"| produce with retention active on 8 partitions within 10% of produce without | median {retention:.0%} of {len(r['retention'])} pairs ({retention_runs}) | {verdict(retention, 0.90)} |",
              f"| no korvet command holds Redis for 10 ms during a trim of {trim['records']:,} records | DeleteRecords of the whole partition took {trim['seconds']:.1f} s; slowest command {trim['slowest_ms']:.2f} ms, {trim['over_1ms']} over 1 ms, {trim['over_10ms']} over 10 ms | {verdict(trim['over_10ms'], 0, False)} |",
              "", f"Redis memory per 100 B record (no key), measured over the {first_records:,} records of the consume topic: {r['redis_bytes_per_record']:.0f} bytes.",
              "", f"Resident memory under load: peak {max(p['korvet_peak_rss_mib'] for p in r['produce']):.1f} MiB during the produce matrix, "
              f"{max(run['korvet_peak_rss_mib'] for run in r['steady'][1] + r['steady'][0]):.1f} MiB during the steady runs.", ""]
    return "\n".join(lines)


def chart(r, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    labels = [f"{p['size']}B p{p['partitions']}\nacks={p['acks']} {p['compression']}" for p in r["produce"]]
    rates = [p["records_per_s"] for p in r["produce"]]
    colors = ["#4C72B0" if p["size"] == 100 else "#DD8452" for p in r["produce"]]
    fig, ax = plt.subplots(figsize=(14, 5.5))
    ax.bar(range(len(rates)), rates, color=colors)
    for size, style in ((100, "--"), (1024, ":")):
        ax.axhline(r["baseline"][size], linestyle=style, color="black", linewidth=1,
                   label=f"pipelined XADD, {size} B ({r['baseline'][size]:,.0f}/s)")
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, fontsize=7)
    ax.set_ylabel("records/s acknowledged")
    ax.set_title("korvet produce throughput (librdkafka) vs the raw XADD rate of the same Redis")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
