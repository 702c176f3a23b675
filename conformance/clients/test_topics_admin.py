"""Topic administration through client admin APIs: CreateTopics (incl. validate-only and Kafka's
error codes), DeleteTopics, DescribeConfigs, Metadata auto-creation."""
import pytest
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic as CNewTopic
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import InvalidPartitionsError, InvalidTopicError, TopicAlreadyExistsError


def test_create_validate_delete(korvet):
    admin = KafkaAdminClient(bootstrap_servers=korvet.bootstrap)
    admin.create_topics([NewTopic("checked-only", 2, 1)], validate_only=True)
    assert "checked-only" not in admin.list_topics(), "validate-only must not create"
    admin.create_topics([NewTopic("made", 4, 1, topic_configs={"retention.ms": "1000"})])
    assert "made" in admin.list_topics()
    with pytest.raises(TopicAlreadyExistsError):
        admin.create_topics([NewTopic("made", 4, 1)])
    with pytest.raises(TopicAlreadyExistsError):
        admin.create_topics([NewTopic("made", 4, 1)], validate_only=True)
    with pytest.raises(InvalidTopicError):
        admin.create_topics([NewTopic("bad/name", 1, 1)])
    with pytest.raises(InvalidPartitionsError):
        admin.create_topics([NewTopic("zero-partitions", 0, 1)])
    described = admin.describe_topics(["made"])
    assert len(described[0]["partitions"]) == 4
    admin.delete_topics(["made"])
    assert "made" not in admin.list_topics()
    admin.close()


def test_describe_configs_topic_and_broker(korvet):
    admin = AdminClient({"bootstrap.servers": korvet.bootstrap})
    for f in admin.create_topics([CNewTopic("configured", 1, 1, config={"cleanup.policy": "delete", "retention.ms": "5000"})]).values():
        f.result(30)
    topic = ConfigResource(ConfigResource.Type.TOPIC, "configured")
    configs = admin.describe_configs([topic])[topic].result(30)
    assert configs["retention.ms"].value == "5000" and not configs["retention.ms"].is_default
    assert configs["max.message.bytes"].value == "1048588" and configs["max.message.bytes"].is_default
    broker = ConfigResource(ConfigResource.Type.BROKER, "0")
    configs = admin.describe_configs([broker])[broker].result(30)
    assert configs["num.partitions"].value == "1"
    # Unknown config keys are refused.
    bad = admin.create_topics([CNewTopic("bad-config", 1, 1, config={"no.such.config": "1"})])["bad-config"]
    with pytest.raises(Exception, match="(?i)config"):
        bad.result(30)


def test_metadata_auto_creates_topics(korvet):
    producer = KafkaProducer(bootstrap_servers=korvet.bootstrap)
    assert producer.partitions_for("auto-made") == {0}, "created with the default partition count"
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=korvet.bootstrap)
    assert "auto-made" in consumer.topics()
    consumer.close()
