#!/usr/bin/env python3
"""The record and batch layouts side by side, in one run on one machine, with their own
redis-server and a release build of korvet (bench/run.py's helpers):

- produce (korvet-bench on librdkafka: 100 B records, 1 partition, acks=1, no compression) on a
  record-layout and on a batch-layout topic, each round paired with pipelined XADD of the same
  payload into the same Redis (the record layout's physical limit);
- consume both topics from offset 0;
- produce latency at a steady 50,000 records/s with acks=all (linger.ms 0 and 1) on both;
- Redis memory per record (`used_memory` before and after) for JSON-like and random payloads:
  the record layout, and the batch layout as the producer sent its batches (uncompressed, lz4)
  and compressed at rest by the topic (compression.type lz4 and zstd, producer uncompressed);
- unless --no-kafka (or without Java and Maven): the batch layout beside Apache Kafka 4.4.0 with
  korvet-bench and Kafka's own perf tools (bench/kafka_compare.py; bench/run.py does the same
  for the record layout).

Each throughput is the median of the rounds (three by default). Writes layouts.md and
layouts.json into the output directory.

    python3 bench/layouts.py            # a few minutes
    python3 bench/layouts.py --quick    # small counts: checks the machinery, not the numbers
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import urllib.request

import kafka_compare
import run  # the single-Redis benchmark's helpers

SIZE = 100
MEMORY_CASES = [
    # (name, topic configs, producer compression)
    ("record layout", {}, "none"),
    ("batch layout, producer uncompressed", {"korvet.layout": "batch"}, "none"),
    ("batch layout, producer lz4", {"korvet.layout": "batch"}, "lz4"),
    ("batch layout, compression.type=lz4 at rest", {"korvet.layout": "batch", "compression.type": "lz4"}, "none"),
    ("batch layout, compression.type=zstd at rest", {"korvet.layout": "batch", "compression.type": "zstd"}, "none"),
]


def create_topic(procs, topic, configs):
    config_args = [arg for key, value in configs.items() for arg in ("--config", f"{key}={value}")]
    subprocess.run([os.path.join(run.RELEASE, "korvet"), "topics", "create", topic, "--partitions", "1", *config_args,
                    "--bootstrap-server", procs.bootstrap], check=True, capture_output=True, timeout=60)


def throughput(procs, records, rounds):
    rows = []
    for round_ in range(rounds):
        row = {"xadd": run.xadd_baseline(procs, SIZE, max(records, 10_000))}
        for layout in ("record", "batch"):
            topic = f"layouts-{layout}-{round_}"
            create_topic(procs, topic, {"korvet.layout": layout})
            with run.Sampler([procs.korvet.pid, procs.redis.pid]) as sampled:
                produced = run.bench("produce", "--bootstrap", procs.bootstrap, "--topic", topic, "--records", records, "--size", SIZE,
                                     "--acks", "1", "--compression", "none")
            consumed = run.bench("consume", "--bootstrap", procs.bootstrap, "--topic", topic, "--records", records)
            # CPU seconds per million records produced: Redis's single thread is what runs out.
            per_million = lambda pid: sampled.cpu[pid] * 1e6 / records
            row[layout] = {"produce": produced["records_per_s"], "produce_p99_ms": produced["p99_ms"],
                           "consume": consumed["records_per_s"], "redis_cpu_s_per_m": per_million(procs.redis.pid),
                           "korvet_cpu_s_per_m": per_million(procs.korvet.pid)}
        rows.append(row)
        print(f"round {round_ + 1}: {json.dumps(row)}", file=sys.stderr)
    return rows


STEADY_RATE = 50_000


def histograms(procs):
    """korvet's Produce request and Append storage command latency histograms, cumulative
    `{upper bound in ms: count}`, from its Prometheus endpoint."""
    url = f"http://127.0.0.1:{procs.management_port}/actuator/prometheus"
    with urllib.request.urlopen(url, timeout=10) as r:
        text = r.read().decode()
    found = {"produce": {}, "append": {}}
    for line in text.splitlines():
        for name, selector in (("produce", 'api="Produce"'), ("append", 'command="Append"')):
            if "_bucket{" in line and selector in line:
                bound = line.split('le="')[1].split('"')[0]
                found[name][float("inf") if bound == "+Inf" else float(bound) * 1000] = float(line.rsplit(" ", 1)[1])
    return found


def p99_bound(before, after):
    """The upper bound (ms) of the bucket holding the 99th percentile of what was observed
    between two scrapes."""
    counts = {bound: after[bound] - before.get(bound, 0) for bound in after}
    total = counts[float("inf")]
    return next(bound for bound in sorted(counts) if counts[bound] >= 0.99 * total) if total else None


def steady(procs, seconds, rounds):
    """p99 produce latency (send to acknowledgement) at a steady rate, acks=all, with the p99
    bucket of korvet's own Produce and Append histograms over the same run: how much of the
    client's latency is spent in korvet and in Redis."""
    rows = []
    for round_ in range(rounds):
        for layout in ("record", "batch"):
            for linger in (0, 1):
                topic = f"steady-{layout}-{linger}-{round_}"
                create_topic(procs, topic, {"korvet.layout": layout})
                before = histograms(procs)
                outcome = run.bench("produce", "--bootstrap", procs.bootstrap, "--topic", topic, "--records", STEADY_RATE * seconds,
                                    "--size", SIZE, "--acks", "all", "--rate", STEADY_RATE, "--linger-ms", linger)
                after = histograms(procs)
                rows.append({"layout": layout, "linger_ms": linger, "p50_ms": outcome["p50_ms"], "p99_ms": outcome["p99_ms"],
                             "broker_produce_p99_le_ms": p99_bound(before["produce"], after["produce"]),
                             "append_p99_le_ms": p99_bound(before["append"], after["append"])})
    return rows


def memory(procs, records):
    rows = []
    for payload in ("json", "random"):
        for index, (name, configs, compression) in enumerate(MEMORY_CASES):
            topic = f"memory-{payload}-{index}"
            create_topic(procs, topic, configs)
            before = run.redis_used_memory(procs)
            run.bench("produce", "--bootstrap", procs.bootstrap, "--topic", topic, "--records", records, "--size", SIZE,
                      "--acks", "1", "--compression", compression, "--payload", payload)
            rows.append({"payload": payload, "case": name, "bytes_per_record": (run.redis_used_memory(procs) - before) / records})
            # Each case measures its own growth: the topic goes before the next one.
            subprocess.run([os.path.join(run.RELEASE, "korvet"), "topics", "delete", topic, "--bootstrap-server", procs.bootstrap],
                           check=True, capture_output=True, timeout=60)
    return rows


def median(rows, *path):
    values = []
    for row in rows:
        value = row
        for key in path:
            value = value[key]
        values.append(value)
    return statistics.median(values)


def report(results):
    t = results["throughput"]
    xadd = median(t, "xadd")
    lines = [f"# korvet's storage layouts side by side ({results['machine']}, median of {len(t)} rounds)", "",
             f"korvet-bench (librdkafka), {SIZE} B records, 1 partition, acks=1, no compression; each round pairs both layouts "
             f"with pipelined XADD of the same payload into the same Redis (redis-benchmark, 50 clients, pipeline 64).", "",
             "| layout | produce records/s | vs XADD (median of the rounds' ratios) | Redis CPU s / M records produced | korvet CPU s / M records produced | consume records/s |",
             "|---|---|---|---|---|---|"]
    # Each produce run against the XADD run just before it: the machine's speed drifts.
    vs_xadd = {layout: statistics.median(row[layout]["produce"] / row["xadd"] for row in t) for layout in ("record", "batch")}
    for layout in ("record", "batch"):
        produce = median(t, layout, "produce")
        lines.append(f"| {layout} | {produce:,.0f} | {vs_xadd[layout]:.0%} | {median(t, layout, 'redis_cpu_s_per_m'):.2f} | "
                     f"{median(t, layout, 'korvet_cpu_s_per_m'):.2f} | {median(t, layout, 'consume'):,.0f} |")
    lines += ["", f"Pipelined XADD: {xadd:,.0f} entries/s.", "",
              "Per round (records/s): " + "; ".join(
                  f"XADD {r['xadd']:,.0f}, record {r['record']['produce']:,.0f} / {r['record']['consume']:,.0f}, "
                  f"batch {r['batch']['produce']:,.0f} / {r['batch']['consume']:,.0f}" for r in t), ""]
    record_ratio = vs_xadd["record"]
    batch_consume_ratio = median(t, "batch", "consume") / median(t, "record", "consume")
    lines += ["| target | measured | verdict |", "|---|---|---|",
              f"| record layout produce ≥ 70% of pipelined XADD | {record_ratio:.0%} | {verdict(record_ratio, 0.70)} |",
              f"| batch layout consume ≥ 1.5× record layout consume | {batch_consume_ratio:.3f}× | {verdict(batch_consume_ratio, 1.5)} |",
              "", f"## Produce latency at a steady {STEADY_RATE:,} records/s, acks=all", "",
              "korvet-bench's latency is from send to acknowledgement in librdkafka; korvet's is its Produce "
              "request from arrival to response, and Redis's the append script's round trip (`korvet_request_duration_seconds`, "
              "`korvet_storage_command_duration_seconds`): the upper bound of the bucket holding their 99th percentile.", "",
              "| layout | linger.ms | p50 ms (median) | p99 ms (median) | p99 per round | korvet Produce p99 ≤ ms | Redis append p99 ≤ ms |",
              "|---|---|---|---|---|---|---|"]
    for layout in ("record", "batch"):
        for linger in (0, 1):
            runs = [r for r in results["steady"] if (r["layout"], r["linger_ms"]) == (layout, linger)]
            per_round = ", ".join(f"{r['p99_ms']:.2f}" for r in runs)
            broker = ", ".join(f"{r['broker_produce_p99_le_ms']:g}" for r in runs)
            append = ", ".join(f"{r['append_p99_le_ms']:g}" for r in runs)
            lines.append(f"| {layout} | {linger} | {statistics.median(r['p50_ms'] for r in runs):.2f} | "
                         f"{statistics.median(r['p99_ms'] for r in runs):.2f} | {per_round} | {broker} | {append} |")
    best = min(statistics.median(r["p99_ms"] for r in results["steady"] if r["layout"] == "record" and r["linger_ms"] == linger) for linger in (0, 1))
    lines += ["", "| target | measured | verdict |", "|---|---|---|",
              f"| record layout p99 below 2 ms at a steady 50k records/s, acks=all | {best:.2f} ms | {'met' if best < 2 else 'missed'} |",
              "", "## Redis memory per record", "",
              f"`used_memory` growth per record while producing {results['memory_records']:,} records of {SIZE} B "
              "(korvet-bench `--payload json`: JSON-like events; `--payload random`: incompressible bytes).", "",
              "| case | JSON-like B/record | random B/record |", "|---|---|---|"]
    by_case = {}
    for row in results["memory"]:
        by_case.setdefault(row["case"], {})[row["payload"]] = row["bytes_per_record"]
    for name, _, _ in MEMORY_CASES:
        lines.append(f"| {name} | {by_case[name]['json']:.0f} | {by_case[name]['random']:.0f} |")
    return "\n".join(lines) + "\n"


def verdict(value, target):
    if value >= target:
        return "met"
    return f"missed by {target - value:.0%}" if target < 1.01 else f"missed ({value:.3f} of {target})"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small counts, to check the machinery")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    parser.add_argument("--no-build", action="store_true")
    parser.add_argument("--no-kafka", action="store_true", help="leave out the comparison with Apache Kafka")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)  # before minutes of measuring, not after
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "korvet", "--bin", "korvet-bench"], cwd=run.ROOT, check=True)
    records = 20_000 if args.quick else 1_000_000
    rounds = args.rounds or (1 if args.quick else 3)
    procs = run.Processes()
    try:
        results = {"machine": f"{os.cpu_count()} cores", "quick": args.quick, "memory_records": records // 4}
        # Latency first, on a Redis that holds next to nothing yet: later, with millions of
        # records in it, the same runs measured p99s two to four times higher.
        results["steady"] = steady(procs, 2 if args.quick else 8, rounds)
        results["throughput"] = throughput(procs, records, rounds)
        results["memory"] = memory(procs, records // 4)
        if not args.no_kafka and not kafka_compare.available():
            pids = {"korvet": procs.korvet.pid, "redis": procs.redis.pid}
            batch_topic = lambda name: create_topic(procs, name, {"korvet.layout": "batch"})
            results["kafka"] = kafka_compare.compare(procs.bootstrap, pids, run.bench, batch_topic, run.rss_mib, records // 2, rounds)
    finally:
        procs.close()
    with open(os.path.join(args.out, "layouts.json"), "w") as f:
        json.dump(results, f, indent=1)
    markdown = report(results)
    if "kafka" in results:
        markdown += "\n## The batch layout beside Apache Kafka\n" + kafka_compare.report(results["kafka"])
    with open(os.path.join(args.out, "layouts.md"), "w") as f:
        f.write(markdown)
    print(markdown)


if __name__ == "__main__":
    main()
