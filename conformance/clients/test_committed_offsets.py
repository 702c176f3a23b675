"""Committed offsets of consumers that assign partitions themselves (no group membership): stored
in Redis, readable through any client and after a broker restart, metadata strings included."""
from confluent_kafka import Consumer, TopicPartition
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KTopicPartition
from kafka.admin import NewTopic
from kafka.structs import OffsetAndMetadata


def produce(bootstrap, topic, n):
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, 2, 1)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    for i in range(n):
        producer.send(topic, value=b"%d" % i, partition=i % 2)
    producer.flush(30)
    producer.close()


def test_commit_survives_restart_and_is_seen_by_other_clients(fresh_korvet):
    produce(fresh_korvet.bootstrap, "committed", 10)
    consumer = Consumer({"bootstrap.servers": fresh_korvet.bootstrap, "group.id": "assigners", "enable.auto.commit": False})
    consumer.assign([TopicPartition("committed", 0, 0), TopicPartition("committed", 1, 0)])
    consumer.commit(offsets=[TopicPartition("committed", 0, 3, metadata="checkpoint-a"), TopicPartition("committed", 1, 4)],
                    asynchronous=False)
    consumer.close()

    fresh_korvet.restart()

    # confluent-kafka reads them back...
    consumer = Consumer({"bootstrap.servers": fresh_korvet.bootstrap, "group.id": "assigners"})
    committed = consumer.committed([TopicPartition("committed", 0), TopicPartition("committed", 1)], timeout=30)
    assert [(c.partition, c.offset) for c in committed] == [(0, 3), (1, 4)]
    assert committed[0].metadata == "checkpoint-a"
    consumer.close()
    # ...and so does kafka-python, which also resumes from them.
    k = KafkaConsumer(bootstrap_servers=fresh_korvet.bootstrap, group_id="assigners", enable_auto_commit=False)
    tp = KTopicPartition("committed", 0)
    k.assign([tp])
    assert k.committed(tp) == 3
    assert k.position(tp) == 3, "an assigned consumer starts at its committed offset"
    k.commit({tp: OffsetAndMetadata(5, "from-kafka-python", -1)})
    assert k.committed(tp) == 5
    k.close()
    admin = KafkaAdminClient(bootstrap_servers=fresh_korvet.bootstrap)
    offsets = admin.list_group_offsets("assigners")["assigners"]
    assert offsets[KTopicPartition("committed", 0)][:2] == (5, "from-kafka-python")
    assert offsets[KTopicPartition("committed", 1)].offset == 4
    admin.close()
