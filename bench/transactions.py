#!/usr/bin/env python3
"""What transactions cost: the same produce loop (confluent-kafka, librdkafka; acks=all,
linger.ms=5, 100-byte records) with an idempotent producer and with a transactional one that
commits every 100 records (each commit writes a marker into the partition and saves the
transaction's state twice), against one korvet (release build) on one Redis, alternating, three
rounds, medians compared; then a read_committed consumer reads the transactional topic. Writes
transactions.md into the output directory.

    python3 bench/transactions.py            # about a minute
    python3 bench/transactions.py --quick    # small counts: checks the machinery
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # the single-Redis benchmark's helpers

ROOT = run.ROOT
PER_TRANSACTION = 100


def produce(bootstrap, topic, records, transactional):
    config = {"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all", "enable.idempotence": True}
    if transactional:
        config["transactional.id"] = f"bench-{topic}"
    producer = Producer(config)
    if transactional:
        producer.init_transactions(30)
    payload = b"x" * 100
    started = time.monotonic()
    for start in range(0, records, PER_TRANSACTION):
        if transactional:
            producer.begin_transaction()
        for _ in range(min(PER_TRANSACTION, records - start)):
            while True:
                try:
                    producer.produce(topic, value=payload, partition=0)
                    break
                except BufferError:
                    producer.poll(0.001)
        if transactional:
            producer.commit_transaction(30)
        else:
            producer.poll(0)
    assert producer.flush(60) == 0
    return records / (time.monotonic() - started)


def consume_committed(bootstrap, topic, records):
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{topic}", "isolation.level": "read_committed",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    got, started = 0, time.monotonic()
    while got < records and time.monotonic() - started < 120:
        got += sum(1 for m in consumer.consume(10_000, 0.5) if not m.error())
    elapsed = time.monotonic() - started
    consumer.close()
    assert got == records, f"read {got} of {records}"
    return records / elapsed


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench"))
    parser.add_argument("--no-build", action="store_true")
    args = parser.parse_args()
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "korvet"], cwd=ROOT, check=True)
    records = 10_000 if args.quick else 100_000
    rounds = 1 if args.quick else 3
    procs = run.Processes({})
    rates = {"idempotent": [], "transactional": [], "read_committed": []}
    try:
        for round_ in range(rounds):
            for name in ("idempotent", "transactional"):
                topic = f"txn-bench-{name}-{round_}"
                run.create_topic(procs, topic, 1)
                rates[name].append(produce(procs.bootstrap, topic, records, name == "transactional"))
                if name == "transactional":
                    rates["read_committed"].append(consume_committed(procs.bootstrap, topic, records))
    finally:
        procs.close()
    median = {name: statistics.median(values) for name, values in rates.items()}
    lines = [
        "# korvet: an idempotent producer against a transactional one",
        "",
        f"One korvet and one Redis, confluent-kafka (librdkafka) from Python, 100-byte records, 1 partition, acks=all, "
        f"{records:,} records per run, {PER_TRANSACTION} records per transaction, median of {rounds} rounds run alternately, "
        f"{os.cpu_count()} cores shared by korvet, Redis and the client (the Python loop is the client's ceiling).",
        "",
        "| producer | records/s |",
        "|---|---|",
        f"| idempotent | {median['idempotent']:,.0f} |",
        f"| transactional, commit every {PER_TRANSACTION} | {median['transactional']:,.0f} |",
        "",
        f"The transactional producer runs at {median['transactional'] / median['idempotent']:.0%} of the idempotent one's rate; "
        f"a read_committed consumer read the transactional topic at {median['read_committed']:,.0f} records/s.",
        "",
    ]
    text = "\n".join(lines)
    if not args.quick:
        with open(os.path.join(args.out, "transactions.md"), "w") as f:
            f.write(text)
    print(text)


if __name__ == "__main__":
    main()
