#!/usr/bin/env python3
"""The record and batch layouts side by side, in one run on one machine, with their own
redis-server and a release build of korvet (bench/run.py's helpers):

- produce (korvet-bench on librdkafka: 100 B records, 1 partition, acks=1, no compression) on a
  record-layout and on a batch-layout topic, each round paired with pipelined XADD of the same
  payload into the same Redis (the record layout's physical limit);
- consume both topics from offset 0;
- Redis memory per record (`used_memory` before and after) for JSON-like and random payloads:
  the record layout, and the batch layout as the producer sent its batches (uncompressed, lz4)
  and compressed at rest by the topic (compression.type lz4 and zstd, producer uncompressed).

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
            produced = run.bench("produce", "--bootstrap", procs.bootstrap, "--topic", topic, "--records", records, "--size", SIZE,
                                 "--acks", "1", "--compression", "none")
            consumed = run.bench("consume", "--bootstrap", procs.bootstrap, "--topic", topic, "--records", records)
            row[layout] = {"produce": produced["records_per_s"], "produce_p99_ms": produced["p99_ms"],
                           "consume": consumed["records_per_s"]}
        rows.append(row)
        print(f"round {round_ + 1}: {json.dumps(row)}", file=sys.stderr)
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
             "| layout | produce records/s | vs XADD | produce p99 ms | consume records/s |", "|---|---|---|---|---|"]
    for layout in ("record", "batch"):
        produce = median(t, layout, "produce")
        lines.append(f"| {layout} | {produce:,.0f} | {produce / xadd:.0%} | {median(t, layout, 'produce_p99_ms'):.1f} | "
                     f"{median(t, layout, 'consume'):,.0f} |")
    lines += ["", f"Pipelined XADD: {xadd:,.0f} entries/s.", "",
              "Per round (records/s): " + "; ".join(
                  f"XADD {r['xadd']:,.0f}, record {r['record']['produce']:,.0f} / {r['record']['consume']:,.0f}, "
                  f"batch {r['batch']['produce']:,.0f} / {r['batch']['consume']:,.0f}" for r in t), ""]
    record_ratio = median(t, "record", "produce") / xadd
    batch_consume_ratio = median(t, "batch", "consume") / median(t, "record", "consume")
    lines += ["| target | measured | verdict |", "|---|---|---|",
              f"| record layout produce ≥ 70% of pipelined XADD | {record_ratio:.0%} | {verdict(record_ratio, 0.70)} |",
              f"| batch layout consume ≥ 1.5× record layout consume | {batch_consume_ratio:.2f}× | {verdict(batch_consume_ratio, 1.5)} |",
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
    return f"missed by {target - value:.0%}" if target < 1.01 else f"missed ({value:.2f} of {target})"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small counts, to check the machinery")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    parser.add_argument("--no-build", action="store_true")
    args = parser.parse_args()
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "korvet", "--bin", "korvet-bench"], cwd=run.ROOT, check=True)
    records = 20_000 if args.quick else 1_000_000
    rounds = args.rounds or (1 if args.quick else 3)
    procs = run.Processes()
    try:
        results = {"machine": f"{os.cpu_count()} cores", "quick": args.quick, "memory_records": records // 4}
        results["throughput"] = throughput(procs, records, rounds)
        results["memory"] = memory(procs, records // 4)
    finally:
        procs.close()
    with open(os.path.join(args.out, "layouts.json"), "w") as f:
        json.dump(results, f, indent=1)
    markdown = report(results)
    with open(os.path.join(args.out, "layouts.md"), "w") as f:
        f.write(markdown)
    print(markdown)


if __name__ == "__main__":
    main()
