package io.korvet.conformance;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.consumer.OffsetAndTimestamp;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.Header;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** The Java producer and consumer outside groups: codecs, headers, order, seeks and timestamps. */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class ProducerConsumerTest {

    /** korvet's batch layout (an entry per producer batch, served as stored); Apache Kafka has
     * no such config, and the same checks then run on its own topics. */
    static Map<String, String> batchLayout(Map<String, String> configs) {
        if (!Broker.isKorvet()) {
            return configs;
        }
        Map<String, String> withLayout = new HashMap<>(configs);
        withLayout.put("korvet.layout", "batch");
        return withLayout;
    }

    @ParameterizedTest
    @ValueSource(strings = {"none", "gzip", "snappy", "lz4", "zstd"})
    void everyCodecRoundTripsKeysValuesAndHeadersInOrder(String codec) throws Exception {
        roundTrip(codec, Broker.createTopic("codec-" + codec, 1));
    }

    @ParameterizedTest
    @ValueSource(strings = {"none", "gzip", "snappy", "lz4", "zstd"})
    void everyCodecRoundTripsOnABatchLayoutTopic(String codec) throws Exception {
        roundTrip(codec, Broker.createTopic("batch-codec-" + codec, 1, batchLayout(Map.of())));
    }

    /** compression.type on the topic: batches are stored compressed with it, whatever the
     * producer sent, and read back as sent. */
    @ParameterizedTest
    @ValueSource(strings = {"lz4", "zstd", "gzip", "snappy"})
    void aBatchLayoutTopicCompressesAtRest(String codec) throws Exception {
        roundTrip("none", Broker.createTopic("at-rest-" + codec, 1, batchLayout(Map.of("compression.type", codec))));
    }

    private static void roundTrip(String codec, String topic) throws Exception {
        int count = 500;
        // The producer's defaults: idempotent, acks=all, five requests in flight.
        try (KafkaProducer<String, String> producer = Broker.producer(Map.of("compression.type", codec, "linger.ms", "5"))) {
            List<Future<RecordMetadata>> sent = new ArrayList<>();
            for (int i = 0; i < count; i++) {
                ProducerRecord<String, String> record = new ProducerRecord<>(topic, "key-" + i, "value-" + i + "-" + "x".repeat(i % 50));
                record.headers().add("index", Integer.toString(i).getBytes(StandardCharsets.UTF_8));
                record.headers().add("codec", codec.getBytes(StandardCharsets.UTF_8));
                sent.add(producer.send(record));
            }
            for (int i = 0; i < count; i++) {
                assertEquals(i, sent.get(i).get(30, TimeUnit.SECONDS).offset(), "offsets are dense and in send order");
            }
        }
        try (KafkaConsumer<String, String> consumer = Broker.consumer(null, Map.of())) {
            consumer.assign(List.of(new TopicPartition(topic, 0)));
            consumer.seekToBeginning(consumer.assignment());
            List<ConsumerRecord<String, String>> records = Broker.pollUntil(consumer, count, Duration.ofSeconds(60));
            for (int i = 0; i < count; i++) {
                ConsumerRecord<String, String> record = records.get(i);
                assertEquals(i, record.offset());
                assertEquals("key-" + i, record.key());
                assertEquals("value-" + i + "-" + "x".repeat(i % 50), record.value());
                Header index = record.headers().lastHeader("index");
                assertNotNull(index);
                assertEquals(Integer.toString(i), new String(index.value(), StandardCharsets.UTF_8));
                assertEquals(codec, new String(record.headers().lastHeader("codec").value(), StandardCharsets.UTF_8));
            }
        }
    }

    @Test
    void nullKeysValuesAndEmptyHeadersSurvive() throws Exception {
        String topic = Broker.createTopic("nulls", 1);
        try (KafkaProducer<String, String> producer = Broker.producer(Map.of())) {
            producer.send(new ProducerRecord<>(topic, null, "no key")).get(30, TimeUnit.SECONDS);
            producer.send(new ProducerRecord<>(topic, "tombstone", null)).get(30, TimeUnit.SECONDS);
            ProducerRecord<String, String> withEmptyHeader = new ProducerRecord<>(topic, "k", "v");
            withEmptyHeader.headers().add("empty", new byte[0]).add("null", null);
            producer.send(withEmptyHeader).get(30, TimeUnit.SECONDS);
        }
        try (KafkaConsumer<String, String> consumer = Broker.consumer(null, Map.of())) {
            consumer.assign(List.of(new TopicPartition(topic, 0)));
            List<ConsumerRecord<String, String>> records = Broker.pollUntil(consumer, 3, Duration.ofSeconds(30));
            assertEquals(null, records.get(0).key());
            assertEquals("no key", records.get(0).value());
            assertEquals(null, records.get(1).value());
            assertEquals(0, records.get(2).headers().lastHeader("empty").value().length);
            assertEquals(null, records.get(2).headers().lastHeader("null").value());
        }
    }

    @Test
    void seekOffsetsForTimesAndPauseResume() throws Exception {
        seekOffsetsForTimesAndPauseResume(Broker.createTopic("seek", 2));
    }

    /** On the batch layout the ten records of a partition go in one batch: seeks and times land
     * inside it, and the consumer skips what precedes the offset it asked for. */
    @Test
    void seekOffsetsForTimesAndPauseResumeOnABatchLayoutTopic() throws Exception {
        seekOffsetsForTimesAndPauseResume(Broker.createTopic("batch-seek", 2, batchLayout(Map.of())));
    }

    private static void seekOffsetsForTimesAndPauseResume(String topic) throws Exception {
        TopicPartition p0 = new TopicPartition(topic, 0);
        TopicPartition p1 = new TopicPartition(topic, 1);
        long base = System.currentTimeMillis() - 60_000;
        try (KafkaProducer<String, String> producer = Broker.producer(Map.of())) {
            for (int i = 0; i < 10; i++) {
                producer.send(new ProducerRecord<>(topic, 0, base + i * 1000L, "k", "p0-" + i));
                producer.send(new ProducerRecord<>(topic, 1, base + i * 1000L, "k", "p1-" + i));
            }
            producer.flush();
        }
        try (KafkaConsumer<String, String> consumer = Broker.consumer(null, Map.of())) {
            consumer.assign(List.of(p0, p1));
            Map<TopicPartition, OffsetAndTimestamp> found = consumer.offsetsForTimes(Map.of(p0, base + 4500L, p1, base + 100_000L));
            assertEquals(5, found.get(p0).offset(), "the first record at or after the time");
            assertEquals(base + 5000L, found.get(p0).timestamp());
            assertEquals(null, found.get(p1), "no record at or after the time");
            assertEquals(Map.of(p0, 0L, p1, 0L), consumer.beginningOffsets(List.of(p0, p1)));
            assertEquals(Map.of(p0, 10L, p1, 10L), consumer.endOffsets(List.of(p0, p1)));

            consumer.seek(p0, 7);
            consumer.seek(p1, 10);
            List<ConsumerRecord<String, String>> records = Broker.pollUntil(consumer, 3, Duration.ofSeconds(30));
            assertEquals(List.of("p0-7", "p0-8", "p0-9"), records.stream().map(ConsumerRecord::value).toList());
            assertEquals(10, consumer.position(p0));

            consumer.seekToBeginning(List.of(p0, p1));
            consumer.pause(List.of(p1));
            records = Broker.pollUntil(consumer, 10, Duration.ofSeconds(30));
            assertTrue(records.stream().allMatch(r -> r.partition() == 0), "a paused partition returns nothing");
            assertEquals(Set.of(p1), consumer.paused());
            consumer.resume(List.of(p1));
            records = Broker.pollUntil(consumer, 10, Duration.ofSeconds(30));
            assertTrue(records.stream().allMatch(r -> r.partition() == 1));
            assertEquals("p1-0", records.get(0).value());
        }
    }

    @Test
    void keysLandOnTheSamePartitionAsTheJavaPartitionerSays() throws Exception {
        String topic = Broker.createTopic("keys", 6);
        Map<String, Integer> partitionOfKey = new HashMap<>();
        try (KafkaProducer<String, String> producer = Broker.producer(Map.of())) {
            for (int i = 0; i < 60; i++) {
                String key = "user-" + (i % 12);
                int partition = producer.send(new ProducerRecord<>(topic, key, "v" + i)).get(30, TimeUnit.SECONDS).partition();
                Integer earlier = partitionOfKey.putIfAbsent(key, partition);
                assertTrue(earlier == null || earlier == partition, "one key, one partition");
            }
        }
        assertTrue(new HashSet<>(partitionOfKey.values()).size() > 1, "twelve keys spread over partitions");
    }

    @Test
    void manualCommitsAreReadBack() throws Exception {
        String topic = Broker.createTopic("commits", 1);
        TopicPartition partition = new TopicPartition(topic, 0);
        String group = Broker.uniqueName("commit-group");
        try (KafkaProducer<String, String> producer = Broker.producer(Map.of())) {
            for (int i = 0; i < 5; i++) {
                producer.send(new ProducerRecord<>(topic, "k", "v" + i));
            }
        }
        try (KafkaConsumer<String, String> consumer = Broker.consumer(group, Map.of())) {
            consumer.assign(List.of(partition));
            Broker.pollUntil(consumer, 5, Duration.ofSeconds(30));
            consumer.commitSync(Map.of(partition, new OffsetAndMetadata(3, "checkpoint")));
            OffsetAndMetadata committed = consumer.committed(Set.of(partition)).get(partition);
            assertEquals(3, committed.offset());
            assertEquals("checkpoint", committed.metadata());
        }
        try (KafkaConsumer<String, String> consumer = Broker.consumer(group, Map.of())) {
            consumer.assign(List.of(partition));
            List<ConsumerRecord<String, String>> records = Broker.pollUntil(consumer, 2, Duration.ofSeconds(30));
            assertEquals("v3", records.get(0).value(), "a new consumer starts at the committed offset");
        }
    }
}
