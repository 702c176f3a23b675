#!/usr/bin/env python3
"""korvet on Redis Clusters of 1, 2 and 3 masters: produce (acks=1) and consume of 12 partitions
of 100-byte records with korvet-bench (librdkafka), and the CPU each master spent per record
(from the redis-server processes, sampled before and after each run). On a 2-core machine the
absolute rate cannot grow with masters (korvet, the client and every master share the cores); what
shows whether the layout scales is that the work per record on each shard stays constant, and
that the shards share the records evenly. Writes cluster-scale.md into the output directory.

    python3 bench/cluster_scale.py            # about two minutes
    python3 bench/cluster_scale.py --quick    # small counts: checks the machinery
"""
import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time

import run  # the single-Redis benchmark's helpers

PARTITIONS = 12


def free_cluster_port(taken=()):
    """A free port whose bus port (port + 10000) is free too, clear of the other nodes' ports and
    bus ports (they are chosen before any node listens)."""
    reserved = {p for port in taken for p in (port, port + 10000)}
    while True:
        port = run.free_port()
        if port <= 55535 and port not in reserved and port + 10000 not in reserved:
            try:
                import socket
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port + 10000))
                return port
            except OSError:
                continue


class ClusterProcesses:
    """A Redis Cluster of `masters` masters (no replicas) and one korvet given one node."""

    def __init__(self, masters):
        self.dir = tempfile.mkdtemp(prefix="korvet-cluster-bench-")
        self.ports = []
        for _ in range(masters):
            self.ports.append(free_cluster_port(self.ports))
        self.nodes = []
        for port in self.ports:
            node_dir = os.path.join(self.dir, str(port))
            os.makedirs(node_dir)
            self.nodes.append(subprocess.Popen(
                ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--cluster-enabled", "yes", "--cluster-config-file", os.path.join(node_dir, "nodes.conf"), "--dir", node_dir],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            run.wait_for(lambda: run.port_open(port), 20, "cluster node")
        # redis-cli --cluster create wants three masters at least: the slots are split by hand
        # and the nodes introduced to the first.
        for i, port in enumerate(self.ports):
            first, last = i * 16384 // masters, (i + 1) * 16384 // masters - 1
            self.cli(port, "CLUSTER", "ADDSLOTSRANGE", first, last)
            if i > 0:
                self.cli(port, "CLUSTER", "MEET", "127.0.0.1", self.ports[0])
        run.wait_for(self.healthy, 60, "the cluster to be healthy", step=0.1)
        self.kafka_port, self.management_port = run.free_port(), run.free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("KORVET_")}
        env.update({"KORVET_REDIS_URI": f"redis://127.0.0.1:{self.ports[0]}", "KORVET_SERVER_HOST": "127.0.0.1",
                    "KORVET_SERVER_PORT": str(self.kafka_port), "KORVET_MANAGEMENT_PORT": str(self.management_port),
                    "KORVET_LOG_LEVEL": "warn"})
        self.korvet = subprocess.Popen([os.path.join(run.RELEASE, "korvet"), "serve"], env=env, stdout=subprocess.DEVNULL,
                                       stderr=open(os.path.join(self.dir, "korvet.log"), "wb"))
        run.wait_for(lambda: run.port_open(self.kafka_port), 30, "korvet's Kafka port")

    @staticmethod
    def cli(port, *args):
        return subprocess.run(["redis-cli", "-p", str(port), *map(str, args)], capture_output=True, text=True, timeout=30,
                              check=True).stdout

    def healthy(self):
        known = f"cluster_known_nodes:{len(self.ports)}"
        return all("cluster_state:ok" in info and known in info for info in (self.cli(p, "CLUSTER", "INFO") for p in self.ports))

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.kafka_port}"

    def keys_per_node(self):
        return [int(self.cli(p, "DBSIZE")) for p in self.ports]

    def close(self):
        for proc in [self.korvet] + self.nodes:
            proc.kill()
            proc.wait(20)
        shutil.rmtree(self.dir, ignore_errors=True)


def measure(masters, records, rounds):
    procs = ClusterProcesses(masters)
    try:
        pids = [n.pid for n in procs.nodes]
        outcome = {"masters": masters, "produce": [], "consume": [], "produce_us_per_record": [], "consume_us_per_record": []}
        for round_ in range(rounds):
            topic = f"scale-{round_}"
            run.create_topic(procs, topic, PARTITIONS)
            with run.Sampler(pids + [procs.korvet.pid]) as sampled:
                produced = run.bench("produce", "--bootstrap", procs.bootstrap, "--topic", topic, "--records", records,
                                     "--size", 100, "--acks", "1")
            outcome["produce"].append(produced["records_per_s"])
            outcome["produce_us_per_record"].append([sampled.cpu[p] * 1e6 / records for p in pids])
            with run.Sampler(pids) as sampled:
                consumed = run.bench("consume", "--bootstrap", procs.bootstrap, "--topic", topic, "--records", records)
            outcome["consume"].append(consumed["records_per_s"])
            outcome["consume_us_per_record"].append([sampled.cpu[p] * 1e6 / records for p in pids])
        outcome["keys_per_node"] = procs.keys_per_node()
        return outcome
    finally:
        procs.close()


def report(results):
    lines = [
        "# korvet on Redis Cluster: 1, 2 and 3 masters",
        "",
        f"12 partitions, 100-byte records, acks=1, korvet-bench (librdkafka), {results['records']:,} records per run, "
        f"median of {results['rounds']} runs, {os.cpu_count()} cores shared by korvet, the client and every master.",
        "",
        "| masters | produce records/s | consume records/s | Redis CPU per record, produce (µs, summed over masters) | per master | "
        "Redis CPU per record, consume (µs, summed) | keys per master |",
        "|---|---|---|---|---|---|---|",
    ]
    summed = {}
    for r in results["runs"]:
        produce_cpu = [statistics.median(run_[i] for run_ in r["produce_us_per_record"]) for i in range(r["masters"])]
        consume_cpu = [statistics.median(run_[i] for run_ in r["consume_us_per_record"]) for i in range(r["masters"])]
        summed[r["masters"]] = sum(produce_cpu)
        lines.append(
            f"| {r['masters']} | {statistics.median(r['produce']):,.0f} | {statistics.median(r['consume']):,.0f} | "
            f"{sum(produce_cpu):.2f} | {' / '.join(f'{c:.2f}' for c in produce_cpu)} | {sum(consume_cpu):.2f} | "
            f"{' / '.join(str(k) for k in r['keys_per_node'])} |")
    ceiling = 1e6 / summed[1] if summed.get(1) else 0
    lines += [
        "",
        "The summed Redis CPU per record is the work the layout costs; it stays about the same however many masters",
        "share it, and each master does its share of the partitions (no per-record work crosses shards: a",
        "partition's keys live in one slot). With a core per master and korvet on cores of its own, the produce",
        f"ceiling set by Redis therefore grows with the masters: about {ceiling:,.0f} records/s per master",
        f"(1 / {summed.get(1, 0):.2f} µs), so about {2 * ceiling:,.0f} on two and {3 * ceiling:,.0f} on three.",
        "",
    ]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    parser.add_argument("--no-build", action="store_true")
    args = parser.parse_args()
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "korvet", "--bin", "korvet-bench"], cwd=run.ROOT, check=True)
    records = 20_000 if args.quick else 300_000
    rounds = 1 if args.quick else 3
    results = {"records": records, "rounds": rounds, "runs": [measure(m, records, rounds) for m in (1, 2, 3)]}
    markdown = report(results)
    with open(os.path.join(args.out, "cluster-scale.md"), "w") as f:
        f.write(markdown)
    print(markdown)


if __name__ == "__main__":
    main()
