package io.korvet.conformance;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.GroupListing;
import org.apache.kafka.clients.admin.ListOffsetsResult;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.RecordsToDelete;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.GroupState;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.InvalidPartitionsException;
import org.apache.kafka.common.errors.InvalidReplicationFactorException;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** The Admin client's methods that map to an API korvet serves, asserted as Apache Kafka answers them. */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class AdminTest {
    private static final long WAIT = 30;

    private static Throwable cause(Throwable error) {
        return error instanceof ExecutionException ? error.getCause() : error;
    }

    /** Produces `count` records with timestamps a second apart, ending a minute ago. */
    private static void produce(String topic, int partition, int count) throws Exception {
        long base = System.currentTimeMillis() - 60_000 - count * 1000L;
        try (KafkaProducer<String, String> producer = Broker.producer(Map.of())) {
            for (int i = 0; i < count; i++) {
                producer.send(new ProducerRecord<>(topic, partition, base + i * 1000L, "k" + i, "v" + i));
            }
            producer.flush();
        }
    }

    @Test
    void describeClusterNamesTheBrokerAndAController() throws Exception {
        try (Admin admin = Broker.admin()) {
            DescribeClusterResult cluster = admin.describeCluster();
            Collection<Node> nodes = cluster.nodes().get(WAIT, TimeUnit.SECONDS);
            assertFalse(nodes.isEmpty());
            assertNotNull(cluster.clusterId().get(WAIT, TimeUnit.SECONDS));
            Node controller = cluster.controller().get(WAIT, TimeUnit.SECONDS);
            assertTrue(nodes.stream().anyMatch(n -> n.id() == controller.id()), "the controller is one of the brokers");
        }
    }

    @Test
    void topicsAreCreatedListedDescribedGrownAndDeleted() throws Exception {
        try (Admin admin = Broker.admin()) {
            String name = Broker.createTopic("admin-topic", 3, Map.of("retention.ms", "3600000"));
            assertTrue(admin.listTopics().names().get(WAIT, TimeUnit.SECONDS).contains(name));
            TopicDescription description = admin.describeTopics(List.of(name)).allTopicNames().get(WAIT, TimeUnit.SECONDS).get(name);
            assertEquals(3, description.partitions().size());
            assertNotNull(description.topicId());
            assertFalse(description.isInternal());

            Throwable exists = assertThrows(ExecutionException.class,
                () -> admin.createTopics(List.of(new NewTopic(name, 1, (short) 1))).all().get(WAIT, TimeUnit.SECONDS));
            assertInstanceOf(TopicExistsException.class, cause(exists));
            Throwable replicas = assertThrows(ExecutionException.class,
                () -> admin.createTopics(List.of(new NewTopic(Broker.uniqueName("rf"), 1, (short) 5))).all().get(WAIT, TimeUnit.SECONDS));
            assertInstanceOf(InvalidReplicationFactorException.class, cause(replicas));

            admin.createPartitions(Map.of(name, NewPartitions.increaseTo(5))).all().get(WAIT, TimeUnit.SECONDS);
            Broker.waitFor(Duration.ofSeconds(30), "five partitions", () -> {
                try {
                    return admin.describeTopics(List.of(name)).allTopicNames().get(10, TimeUnit.SECONDS).get(name).partitions().size() == 5;
                } catch (Exception e) {
                    return false;
                }
            });
            Throwable shrink = assertThrows(ExecutionException.class,
                () -> admin.createPartitions(Map.of(name, NewPartitions.increaseTo(2))).all().get(WAIT, TimeUnit.SECONDS));
            assertInstanceOf(InvalidPartitionsException.class, cause(shrink));

            admin.deleteTopics(List.of(name)).all().get(WAIT, TimeUnit.SECONDS);
            Broker.waitFor(Duration.ofSeconds(30), "the topic to be gone", () -> {
                try {
                    return !admin.listTopics().names().get(10, TimeUnit.SECONDS).contains(name);
                } catch (Exception e) {
                    return false;
                }
            });
            Throwable unknown = assertThrows(ExecutionException.class,
                () -> admin.describeTopics(List.of(name)).allTopicNames().get(WAIT, TimeUnit.SECONDS));
            assertInstanceOf(UnknownTopicOrPartitionException.class, cause(unknown));
        }
    }

    @Test
    void topicConfigsAreDescribedAndAlteredIncrementally() throws Exception {
        try (Admin admin = Broker.admin()) {
            String name = Broker.createTopic("configs", 1, Map.of("cleanup.policy", "compact"));
            ConfigResource resource = new ConfigResource(ConfigResource.Type.TOPIC, name);
            Config config = admin.describeConfigs(List.of(resource)).all().get(WAIT, TimeUnit.SECONDS).get(resource);
            ConfigEntry policy = config.get("cleanup.policy");
            assertEquals("compact", policy.value());
            assertEquals(ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG, policy.source());
            assertNotNull(config.get("retention.ms"), "defaults are listed too");
            assertEquals(ConfigEntry.ConfigSource.DEFAULT_CONFIG, config.get("max.message.bytes").source());

            admin.incrementalAlterConfigs(Map.of(resource, List.of(
                new AlterConfigOp(new ConfigEntry("retention.ms", "7200000"), AlterConfigOp.OpType.SET),
                new AlterConfigOp(new ConfigEntry("cleanup.policy", ""), AlterConfigOp.OpType.DELETE)))).all().get(WAIT, TimeUnit.SECONDS);
            Broker.waitFor(Duration.ofSeconds(30), "the altered configs", () -> {
                try {
                    Config altered = admin.describeConfigs(List.of(resource)).all().get(10, TimeUnit.SECONDS).get(resource);
                    return altered.get("retention.ms").value().equals("7200000") && altered.get("cleanup.policy").value().equals("delete");
                } catch (Exception e) {
                    return false;
                }
            });
        }
    }

    @Test
    void brokerConfigsAreDescribed() throws Exception {
        try (Admin admin = Broker.admin()) {
            Node node = admin.describeCluster().nodes().get(WAIT, TimeUnit.SECONDS).iterator().next();
            ConfigResource broker = new ConfigResource(ConfigResource.Type.BROKER, Integer.toString(node.id()));
            Config config = admin.describeConfigs(List.of(broker)).all().get(WAIT, TimeUnit.SECONDS).get(broker);
            assertFalse(config.entries().isEmpty());
        }
    }

    @Test
    void offsetsAreListedAndRecordsDeleted() throws Exception {
        try (Admin admin = Broker.admin()) {
            String name = Broker.createTopic("offsets", 1);
            TopicPartition partition = new TopicPartition(name, 0);
            produce(name, 0, 10);
            ListOffsetsResult latest = admin.listOffsets(Map.of(partition, OffsetSpec.latest()));
            assertEquals(10, latest.partitionResult(partition).get(WAIT, TimeUnit.SECONDS).offset());
            assertEquals(9, admin.listOffsets(Map.of(partition, OffsetSpec.maxTimestamp())).partitionResult(partition)
                .get(WAIT, TimeUnit.SECONDS).offset());

            // Ties go to the first record with the greatest timestamp, as in Kafka since KIP-734.
            String ties = Broker.createTopic("ties", 1);
            TopicPartition tied = new TopicPartition(ties, 0);
            try (KafkaProducer<String, String> producer = Broker.producer(Map.of())) {
                for (long timestamp : new long[] {1_000_000L, 3_000_000L, 3_000_000L, 2_000_000L}) {
                    producer.send(new ProducerRecord<>(ties, 0, timestamp, "k", "v"));
                }
                producer.flush();
            }
            assertEquals(1, admin.listOffsets(Map.of(tied, OffsetSpec.maxTimestamp())).partitionResult(tied)
                .get(WAIT, TimeUnit.SECONDS).offset());

            long lowWatermark = admin.deleteRecords(Map.of(partition, RecordsToDelete.beforeOffset(4))).lowWatermarks().get(partition)
                .get(WAIT, TimeUnit.SECONDS).lowWatermark();
            assertEquals(4, lowWatermark);
            assertEquals(4, admin.listOffsets(Map.of(partition, OffsetSpec.earliest())).partitionResult(partition)
                .get(WAIT, TimeUnit.SECONDS).offset());
        }
    }

    @Test
    void consumerGroupsAreListedDescribedMovedAndDeleted() throws Exception {
        try (Admin admin = Broker.admin()) {
            String name = Broker.createTopic("groups", 2);
            TopicPartition p0 = new TopicPartition(name, 0);
            TopicPartition p1 = new TopicPartition(name, 1);
            produce(name, 0, 5);
            produce(name, 1, 5);
            String group = Broker.uniqueName("admin-group");
            try (KafkaConsumer<String, String> consumer = Broker.consumer(group, Map.of())) {
                consumer.subscribe(List.of(name));
                Broker.pollUntil(consumer, 10, Duration.ofSeconds(60));
                consumer.commitSync();
                Collection<GroupListing> groups = admin.listGroups().all().get(WAIT, TimeUnit.SECONDS);
                assertTrue(groups.stream().anyMatch(g -> g.groupId().equals(group)), "the group is listed");
                ConsumerGroupDescription description = admin.describeConsumerGroups(List.of(group)).all().get(WAIT, TimeUnit.SECONDS).get(group);
                assertEquals(GroupState.STABLE, description.groupState());
                assertEquals(1, description.members().size());
                assertEquals(Set.of(p0, p1), description.members().iterator().next().assignment().topicPartitions());
            }
            Map<TopicPartition, OffsetAndMetadata> committed = admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata()
                .get(WAIT, TimeUnit.SECONDS);
            assertEquals(Map.of(p0, 5L, p1, 5L), committed.entrySet().stream()
                .collect(Collectors.toMap(Map.Entry::getKey, e -> e.getValue().offset())));

            admin.alterConsumerGroupOffsets(group, Map.of(p0, new OffsetAndMetadata(1))).all().get(WAIT, TimeUnit.SECONDS);
            assertEquals(1, admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get(WAIT, TimeUnit.SECONDS)
                .get(p0).offset());
            admin.deleteConsumerGroupOffsets(group, Set.of(p1)).all().get(WAIT, TimeUnit.SECONDS);
            assertEquals(Set.of(p0), admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get(WAIT, TimeUnit.SECONDS)
                .keySet());

            admin.deleteConsumerGroups(List.of(group)).all().get(WAIT, TimeUnit.SECONDS);
            assertTrue(admin.listGroups().all().get(WAIT, TimeUnit.SECONDS).stream().noneMatch(g -> g.groupId().equals(group)));
        }
    }

    @Test
    void featuresLogDirsAndProducersAreDescribed() throws Exception {
        try (Admin admin = Broker.admin()) {
            String name = Broker.createTopic("describe", 1);
            TopicPartition partition = new TopicPartition(name, 0);
            produce(name, 0, 3);
            assertNotNull(admin.describeFeatures().featureMetadata().get(WAIT, TimeUnit.SECONDS));
            Node node = admin.describeCluster().nodes().get(WAIT, TimeUnit.SECONDS).iterator().next();
            var dirs = admin.describeLogDirs(List.of(node.id())).allDescriptions().get(WAIT, TimeUnit.SECONDS).get(node.id());
            assertFalse(dirs.isEmpty(), "at least one log directory");
            assertTrue(dirs.values().stream().anyMatch(d -> d.replicaInfos().containsKey(partition)), "the partition is in a log directory");
            var producers = admin.describeProducers(List.of(partition)).partitionResult(partition).get(WAIT, TimeUnit.SECONDS);
            assertEquals(1, producers.activeProducers().size(), "the idempotent producer that wrote the records");
            assertEquals(2, producers.activeProducers().get(0).lastSequence());
            assertTrue(admin.listPartitionReassignments().reassignments().get(WAIT, TimeUnit.SECONDS).isEmpty());
            assertTrue(admin.describeClientQuotas(org.apache.kafka.common.quota.ClientQuotaFilter.all()).entities()
                .get(WAIT, TimeUnit.SECONDS).isEmpty());
        }
    }
}
