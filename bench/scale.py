#!/usr/bin/env python3
"""Many connections and many partitions: the resident memory korvet spends per idle client
connection (5,000 connections, each past an ApiVersions exchange, held open while a producer
runs beside them), and produce with small requests spread over 1,000 partitions against the
same records to one partition (korvet-bench, librdkafka, random partition per record), three
rounds, medians. Writes scale.md into the output directory.

    python3 bench/scale.py            # about a minute
    python3 bench/scale.py --quick    # fewer connections and records: checks the machinery
"""
import argparse
import os
import socket
import statistics
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # the single-Redis benchmark's helpers

# ApiVersions v0 from client "scale": size, api key 18, version 0, correlation id 1, client id.
API_VERSIONS = struct.pack(">ihhih", 15, 18, 0, 1, 5) + b"scale"


def open_idle_connections(bootstrap, count):
    """`count` connections that have each had an ApiVersions answer, then stay quiet."""
    host, port = bootstrap.split(":")
    sockets = []
    for _ in range(count):
        s = socket.create_connection((host, int(port)), timeout=10)
        s.sendall(API_VERSIONS)
        sockets.append(s)
    for s in sockets:
        size = struct.unpack(">i", s.recv(4, socket.MSG_WAITALL))[0]
        received = 0
        while received < size:
            received += len(s.recv(size - received))
    return sockets


def settled_rss(pid):
    """The resident memory once it stops moving (allocators return memory lazily)."""
    last = run.rss_mib(pid)
    for _ in range(20):
        time.sleep(0.25)
        now = run.rss_mib(pid)
        if abs(now - last) < 0.05:
            return now
        last = now
    return last


def metric(procs, name):
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{procs.management_port}/actuator/prometheus", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=os.path.join(run.ROOT, "bench"))
    parser.add_argument("--no-build", action="store_true")
    args = parser.parse_args()
    connections = 500 if args.quick else 5_000
    records = 20_000 if args.quick else 400_000
    rounds = 1 if args.quick else 3
    if not args.no_build:
        import subprocess
        subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "korvet", "--bin", "korvet-bench"], cwd=run.ROOT, check=True)
    procs = run.Processes()
    result = {"connections": connections, "records": records}
    try:
        pid = procs.korvet.pid
        result["rss_before_mib"] = settled_rss(pid)
        sockets = open_idle_connections(procs.bootstrap, connections)
        # The gauge is refreshed with the metrics snapshot, not at once.
        run.wait_for(lambda: metric(procs, "korvet_active_connections") == connections, 30, "the connections gauge", step=0.2)
        result["active_connections"] = metric(procs, "korvet_active_connections")
        result["rss_with_connections_mib"] = settled_rss(pid)
        result["kib_per_connection"] = (result["rss_with_connections_mib"] - result["rss_before_mib"]) * 1024 / connections
        # The broker still serves while they are open.
        run.create_topic(procs, "beside-idle", 1)
        beside = run.bench("produce", "--bootstrap", procs.bootstrap, "--topic", "beside-idle", "--records", records // 4,
                           "--size", 100, "--acks", "1")
        result["produce_beside_idle"] = beside
        for s in sockets:
            s.close()
        result["rss_after_close_mib"] = settled_rss(pid)
        # Small requests: every record to a random partition, so a request carries a record or
        # two for each of many partitions.
        os.environ["KORVET_CLIENT_CONFIG"] = "sticky.partitioning.linger.ms=0"
        result["partitions"] = {1: [], 1000: []}
        for round_ in range(rounds):
            for partitions in (1, 1000):
                topic = f"scale-{partitions}-{round_}"
                run.create_topic(procs, topic, partitions)
                with run.Sampler([pid]) as sampled:
                    outcome = run.bench("produce", "--bootstrap", procs.bootstrap, "--topic", topic, "--records", records,
                                        "--size", 100, "--acks", "1")
                outcome["korvet_cpu_s"] = sampled.cpu[pid]
                outcome["korvet_peak_rss_mib"] = sampled.peak[pid]
                result["partitions"][partitions].append(outcome)
        result["rss_with_partitions_mib"] = settled_rss(pid)
    finally:
        procs.close()
    markdown = report(result)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "scale.md"), "w") as f:
        f.write(markdown)
    print(markdown)


def report(r):
    median = lambda runs, key: statistics.median(run_[key] for run_ in runs)
    lines = [
        "## Many connections and partitions (`python3 bench/scale.py`)",
        "",
        f"{r['connections']:,} idle connections (each past an ApiVersions answer): korvet's resident memory went from "
        f"{r['rss_before_mib']:.1f} MiB to {r['rss_with_connections_mib']:.1f} MiB, **{r['kib_per_connection']:.1f} KiB per "
        f"connection** ({r['kib_per_connection'] * 1000 / 1024:.1f} MiB per thousand); `korvet_active_connections` read "
        f"{r['active_connections']:.0f}; after they closed, {r['rss_after_close_mib']:.1f} MiB. A producer beside them: "
        f"{r['produce_beside_idle']['records_per_s']:,.0f} records/s, p99 {r['produce_beside_idle']['p99_ms']:.1f} ms.",
        "",
        f"Produce of {r['records']:,} records of 100 B, acks=1, each to a random partition (small requests), medians of "
        f"{len(r['partitions'][1])}:",
        "",
        "| partitions | records/s | p50 ms | p99 ms | korvet CPU s | korvet peak RSS MiB |",
        "|---|---|---|---|---|---|",
    ]
    for partitions, runs in r["partitions"].items():
        lines.append(f"| {partitions} | {median(runs, 'records_per_s'):,.0f} | {median(runs, 'p50_ms'):.1f} | {median(runs, 'p99_ms'):.1f} | "
                     f"{median(runs, 'korvet_cpu_s'):.1f} | {median(runs, 'korvet_peak_rss_mib'):.1f} |")
    ratio = median(r["partitions"][1000], "records_per_s") / median(r["partitions"][1], "records_per_s")
    lines += ["", f"1,000 partitions reach {ratio:.0%} of the one-partition rate; korvet's resident memory after both: "
              f"{r['rss_with_partitions_mib']:.1f} MiB.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
