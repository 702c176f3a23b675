"""The same producer and consumer written against every client the suite uses. A dataset is a
list of dicts {partition, key, value, headers: [(name, value)]} with str or None fields; consumers
return the same shape plus `offset`."""
import asyncio
import json
import os
import subprocess
import tempfile
import time

from harness import RDKAFKA_CLIENT

MAX_BYTES = 4_000_000
NODE_DIR = os.path.join(os.path.dirname(__file__), "node")


def _b(s):
    return None if s is None else s.encode()


def _s(b):
    return None if b is None else bytes(b).decode()


# ---------------------------------------------------------------- confluent-kafka (librdkafka)

def confluent_produce(bootstrap, topic, codec, records):
    from confluent_kafka import Producer
    producer = Producer({"bootstrap.servers": bootstrap, "compression.type": codec, "enable.idempotence": True,
                         "message.max.bytes": MAX_BYTES, "linger.ms": 5})
    errors = []
    for r in records:
        producer.produce(topic, key=_b(r["key"]), value=_b(r["value"]), partition=r["partition"],
                         headers=[(k, _b(v)) for k, v in r["headers"]],
                         on_delivery=lambda err, msg: errors.append(err) if err else None)
    assert producer.flush(60) == 0, "confluent-kafka: records left unsent"
    assert not errors, errors


def confluent_consume(bootstrap, topic, partitions, count):
    from confluent_kafka import Consumer, TopicPartition
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "conformance", "enable.auto.commit": False,
                         "fetch.message.max.bytes": MAX_BYTES})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out = []
    deadline = time.monotonic() + 60
    while len(out) < count and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        assert msg.error() is None, msg.error()
        out.append({"partition": msg.partition(), "offset": msg.offset(), "key": _s(msg.key()),
                    "value": _s(msg.value()), "headers": [(k, _s(v)) for k, v in (msg.headers() or [])]})
    consumer.close()
    return out


# ---------------------------------------------------------------- kafka-python

def kafka_python_produce(bootstrap, topic, codec, records):
    from kafka import KafkaProducer
    producer = KafkaProducer(bootstrap_servers=bootstrap, compression_type=None if codec == "none" else codec,
                             max_request_size=MAX_BYTES, linger_ms=5)
    futures = [producer.send(topic, key=_b(r["key"]), value=_b(r["value"]), partition=r["partition"],
                             headers=[(k, _b(v)) for k, v in r["headers"]]) for r in records]
    producer.flush(60)
    for f in futures:
        f.get(timeout=60)
    producer.close(timeout=10)


def kafka_python_consume(bootstrap, topic, partitions, count):
    from kafka import KafkaConsumer, TopicPartition
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False,
                             max_partition_fetch_bytes=MAX_BYTES, fetch_max_bytes=MAX_BYTES)
    consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
    out = []
    deadline = time.monotonic() + 60
    while len(out) < count and time.monotonic() < deadline:
        for tp, msgs in consumer.poll(timeout_ms=500).items():
            for m in msgs:
                out.append({"partition": m.partition, "offset": m.offset, "key": _s(m.key), "value": _s(m.value),
                            "headers": [(k, _s(v)) for k, v in m.headers]})
    consumer.close()
    return out


# ---------------------------------------------------------------- aiokafka

def aiokafka_produce(bootstrap, topic, codec, records):
    from aiokafka import AIOKafkaProducer

    async def run():
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, compression_type=None if codec == "none" else codec,
                                    max_request_size=MAX_BYTES, linger_ms=5, enable_idempotence=True)
        await producer.start()
        try:
            futures = [await producer.send(topic, key=_b(r["key"]), value=_b(r["value"]), partition=r["partition"],
                                           headers=[(k, _b(v)) for k, v in r["headers"]]) for r in records]
            await asyncio.wait_for(asyncio.gather(*futures), 60)
        finally:
            await producer.stop()
    asyncio.run(run())


def aiokafka_consume(bootstrap, topic, partitions, count):
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def run():
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                    enable_auto_commit=False, max_partition_fetch_bytes=MAX_BYTES,
                                    fetch_max_bytes=MAX_BYTES)
        await consumer.start()
        out = []
        try:
            consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
            deadline = time.monotonic() + 60
            while len(out) < count and time.monotonic() < deadline:
                for tp, msgs in (await consumer.getmany(timeout_ms=500)).items():
                    for m in msgs:
                        out.append({"partition": m.partition, "offset": m.offset, "key": _s(m.key),
                                    "value": _s(m.value), "headers": [(k, _s(v)) for k, v in m.headers]})
        finally:
            await consumer.stop()
        return out
    return asyncio.run(run())


# ---------------------------------------------------------------- kcat (Debian: librdkafka 2.0.2)

def kcat_produce(bootstrap, topic, codec, records):
    # One invocation per record: kcat applies -K, -H and -Z to a whole run.
    for r in records:
        args = ["kcat", "-P", "-b", bootstrap, "-t", topic, "-p", str(r["partition"]), "-z", codec,
                "-X", f"message.max.bytes={MAX_BYTES}"]
        line = r["value"] or ""
        if r["key"] is not None:
            args += ["-K", "\t"]
            line = r["key"] + "\t" + line
        if r["value"] is None:
            args += ["-Z"]
        for k, v in r["headers"]:
            args += ["-H", k if v is None else f"{k}={v}"]
        subprocess.run(args, input=(line + "\n").encode(), check=True, timeout=60)


def kcat_consume(bootstrap, topic, partitions, count):
    result = subprocess.run(
        ["kcat", "-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-J", "-c", str(count),
         "-X", f"fetch.message.max.bytes={MAX_BYTES}"],
        capture_output=True, check=True, timeout=120)
    out = []
    for line in result.stdout.decode().splitlines():
        m = json.loads(line)
        flat = m.get("headers") or []
        headers = [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]
        out.append({"partition": m["partition"], "offset": m["offset"], "key": m["key"], "value": m["payload"],
                    "headers": headers})
    return out


# ---------------------------------------------------------------- kafkajs (npm)

def _node(*args):
    result = subprocess.run(["node", os.path.join(NODE_DIR, "kafkajs-client.js"), *args], capture_output=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr.decode()
    return json.loads(result.stdout.decode() or "null")


def _with_dataset_file(records, run):
    """Writes the dataset to a temporary JSON file for an external client program."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(records, f)
    try:
        return run(f.name)
    finally:
        os.unlink(f.name)


def kafkajs_produce(bootstrap, topic, codec, records):
    _with_dataset_file(records, lambda path: _node("produce", bootstrap, topic, codec, path))


def kafkajs_consume(bootstrap, topic, partitions, count):
    return _node("consume", bootstrap, topic, str(partitions), str(count))


def kafkajs_transactions(bootstrap, topic, transactional_id):
    """kafkajs commits five records and aborts three; returns what its read_committed consumer read."""
    return _node("transactions", bootstrap, topic, transactional_id)


# ---------------------------------------------------------------- Rust rdkafka crate

def _rdkafka(*args):
    result = subprocess.run([RDKAFKA_CLIENT, *args], capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr.decode()
    return json.loads(result.stdout.decode())


def rdkafka_produce(bootstrap, topic, codec, records):
    _with_dataset_file(records, lambda path: _rdkafka("produce", bootstrap, topic, codec, path))


def rdkafka_transact(bootstrap, topic, partitions, transactional_id):
    """Three transactions of the rdkafka crate's producer (commit, abort, commit): the values
    each held, by name."""
    return _rdkafka("transact", bootstrap, topic, str(partitions), transactional_id)


def rdkafka_consume(bootstrap, topic, partitions, count):
    out = _rdkafka("consume", bootstrap, topic, str(partitions), str(count))
    for r in out:
        r["headers"] = [tuple(h) for h in r["headers"]]
    return out


PRODUCERS = {
    "confluent": confluent_produce,
    "kafka-python": kafka_python_produce,
    "aiokafka": aiokafka_produce,
    "kcat": kcat_produce,
    "kafkajs": kafkajs_produce,
    "rdkafka": rdkafka_produce,
}
CONSUMERS = {
    "confluent": confluent_consume,
    "kafka-python": kafka_python_consume,
    "aiokafka": aiokafka_consume,
    "kcat": kcat_consume,
    "kafkajs": kafkajs_consume,
    "rdkafka": rdkafka_consume,
}
