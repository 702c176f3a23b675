"""Every client produces the same dataset (keyed records with headers, null keys, null and empty
values, a 1 MiB record) in every codec it supports to a 3-partition topic of each layout; a
different client reads it back and must see every record byte for byte, at dense offsets from
0. On a batch-layout topic the reader gets the producer's batches as they were stored."""
import random
import string

import pytest
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from clients import CONSUMERS, PRODUCERS

PARTITIONS = 3
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
# kafkajs ships only the gzip codec; the others need third-party native packages.
KAFKAJS_CODECS = ["none", "gzip"]
# Who reads what each client wrote: always a different client. (kafkajs consumes through a
# consumer group, since it has no other way to consume.)
READER = {
    "confluent": "kafka-python",
    "kafka-python": "aiokafka",
    "aiokafka": "rdkafka",
    "rdkafka": "kafkajs",
    "kafkajs": "kcat",
    "kcat": "confluent",
}


def dataset(seed, big=True):
    rnd = random.Random(seed)
    text = lambda n: "".join(rnd.choice(string.ascii_letters + string.digits) for _ in range(n))
    records = []
    for p in range(PARTITIONS):
        for i in range(4):
            records.append({"partition": p, "key": f"key-{p}-{i}", "value": text(rnd.randint(1, 200)),
                            "headers": [("trace", text(8)), ("seq", str(i))]})
        records.append({"partition": p, "key": None, "value": text(30), "headers": []})
        records.append({"partition": p, "key": f"tomb-{p}", "value": None, "headers": [("why", None)]})
        records.append({"partition": p, "key": f"empty-{p}", "value": "", "headers": []})
    if big:
        # Just under a megabyte: the largest record a client sends under the broker's default
        # message.max.bytes (1048588 bytes per batch), as with Kafka.
        records.append({"partition": 0, "key": "big", "value": text(64) * 15_600, "headers": [("size", "998400")]})
    return records


# Clients whose API cannot express a header with a null value.
NO_NULL_HEADER_VALUES = {"kafka-python", "kafkajs"}


def sendable(producer, records):
    if producer not in NO_NULL_HEADER_VALUES:
        return records
    return [dict(r, headers=[h for h in r["headers"] if h[1] is not None]) for r in records]


LAYOUTS = ["record", "batch"]
CASES = [(p, c, layout) for layout in LAYOUTS for p in PRODUCERS for c in (KAFKAJS_CODECS if p == "kafkajs" else CODECS)]


@pytest.mark.parametrize("producer,codec,layout", CASES, ids=[f"{p}-{c}-{layout}" for p, c, layout in CASES])
def test_produce_then_read_with_another_client(korvet, producer, codec, layout):
    topic = f"roundtrip-{producer}-{codec}-{layout}"
    admin = KafkaAdminClient(bootstrap_servers=korvet.bootstrap)
    admin.create_topics([NewTopic(topic, PARTITIONS, 1, topic_configs={"korvet.layout": layout})])
    admin.close()
    records = sendable(producer, dataset(len(topic)))
    PRODUCERS[producer](korvet.bootstrap, topic, codec, records)
    reader = READER[producer]
    if layout == "batch" and reader == "kafkajs" and codec not in KAFKAJS_CODECS:
        # The batch layout serves batches compressed as the producer sent them, as Kafka does,
        # and kafkajs reads only gzip among the codecs.
        reader = "kcat"
    got = CONSUMERS[reader](korvet.bootstrap, topic, PARTITIONS, len(records))
    assert len(got) == len(records), f"{reader} read {len(got)} of {len(records)} records"
    expected = records
    for p in range(PARTITIONS):
        want = [r for r in expected if r["partition"] == p]
        have = [r for r in got if r["partition"] == p]
        assert [r["offset"] for r in have] == list(range(len(want))), f"partition {p}: offsets are dense from 0"
        for w, h in zip(want, have):
            assert (h["key"], h["value"], [tuple(x) for x in h["headers"]]) == (w["key"], w["value"], w["headers"]), \
                f"partition {p} offset {h['offset']}"
