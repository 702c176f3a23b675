package io.korvet.conformance;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.serialization.LongDeserializer;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Kafka Streams' word count: a repartition topic (the re-keying groupBy), a state store with its
 * compacted changelog topic, both created by Streams through the Admin API, and a restart that
 * restores the store from the changelog and goes on counting where it left off; at least once,
 * and exactly once (exactly_once_v2: transactions, read_committed, offsets committed in the
 * transaction).
 */
class StreamsTest {
    private static final List<String> LINES = List.of(
        "the quick brown fox", "jumps over the lazy dog", "The dog barks", "the fox runs", "quick quick QUICK");

    @ParameterizedTest
    @ValueSource(strings = {StreamsConfig.AT_LEAST_ONCE, StreamsConfig.EXACTLY_ONCE_V2})
    @Timeout(240)
    void wordCountWithRepartitionAndChangelogSurvivesARestart(String guarantee) throws Exception {
        String input = Broker.createTopic("streams-in", 3);
        String output = Broker.createTopic("streams-out", 2);
        String application = Broker.uniqueName("wordcount");
        Path stateDir = Files.createTempDirectory("korvet-streams-");

        produce(input, LINES);
        Map<String, Long> expected = count(LINES);
        try (KafkaStreams streams = start(application, input, output, stateDir, guarantee)) {
            assertEquals(expected, readCounts(output, expected, Duration.ofSeconds(90)));
        }

        try (Admin admin = Broker.admin()) {
            Set<String> internal = admin.listTopics().names().get(30, TimeUnit.SECONDS).stream()
                .filter(name -> name.startsWith(application + "-")).collect(Collectors.toSet());
            String changelog = application + "-counts-changelog";
            String repartition = application + "-counts-repartition";
            assertEquals(Set.of(changelog, repartition), internal, "the internal topics Streams created");
            ConfigResource resource = new ConfigResource(ConfigResource.Type.TOPIC, changelog);
            Config config = admin.describeConfigs(List.of(resource)).all().get(30, TimeUnit.SECONDS).get(resource);
            assertEquals("compact", config.get("cleanup.policy").value(), "the changelog is compacted");
            assertEquals(3, admin.describeTopics(List.of(repartition)).allTopicNames().get(30, TimeUnit.SECONDS)
                .get(repartition).partitions().size(), "the repartition topic has the input's partition count");
        }

        // A second instance with an empty state directory restores the counts from the changelog,
        // so the words of the next lines add to the earlier totals rather than starting again.
        List<String> more = List.of("the end", "fox");
        produce(input, more);
        expected = count(concat(LINES, more));
        Path freshState = Files.createTempDirectory("korvet-streams-");
        try (KafkaStreams streams = start(application, input, output, freshState, guarantee)) {
            assertEquals(expected, readCounts(output, expected, Duration.ofSeconds(90)));
        }
    }

    private static KafkaStreams start(String application, String input, String output, Path stateDir, String guarantee) throws Exception {
        Properties props = Broker.common();
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, application);
        props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, guarantee);
        props.put(StreamsConfig.STATE_DIR_CONFIG, stateDir.toString());
        props.put(StreamsConfig.DEFAULT_KEY_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
        props.put(StreamsConfig.DEFAULT_VALUE_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
        props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, "200");
        props.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, "1");
        props.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
        props.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, "0");
        // Streams' consumers do not leave the group on close, so the restarted instance waits for
        // the first one's session to expire: keep that short.
        props.put(StreamsConfig.consumerPrefix(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG), "6000");
        props.put(StreamsConfig.consumerPrefix(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG), "1000");

        StreamsBuilder builder = new StreamsBuilder();
        builder.stream(input, Consumed.with(Serdes.String(), Serdes.String()))
            .flatMapValues(line -> Arrays.asList(line.toLowerCase(Locale.ROOT).split("\\W+")))
            .groupBy((key, word) -> word, Grouped.with("counts", Serdes.String(), Serdes.String()))
            .count(Materialized.as("counts"))
            .toStream()
            .to(output, Produced.with(Serdes.String(), Serdes.Long()));
        KafkaStreams streams = new KafkaStreams(builder.build(), props);
        streams.start();
        Broker.waitFor(Duration.ofSeconds(90), "the Streams application to run",
            () -> streams.state() == KafkaStreams.State.RUNNING);
        return streams;
    }

    private static void produce(String topic, List<String> lines) throws Exception {
        try (KafkaProducer<String, String> producer = Broker.producer(Map.of())) {
            int key = 0;
            for (String line : lines) {
                producer.send(new ProducerRecord<>(topic, "line-" + key++, line)).get(30, TimeUnit.SECONDS);
            }
        }
    }

    /** Reads the output topic from the start until the latest count of every word is `expected`. */
    private static Map<String, Long> readCounts(String topic, Map<String, Long> expected, Duration timeout) {
        Properties props = Broker.common();
        props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, LongDeserializer.class.getName());
        props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        props.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        props.put(ConsumerConfig.GROUP_ID_CONFIG, Broker.uniqueName("streams-reader"));
        Map<String, Long> latest = new HashMap<>();
        try (KafkaConsumer<String, Long> consumer = new KafkaConsumer<>(props)) {
            consumer.subscribe(List.of(topic));
            long deadline = System.nanoTime() + timeout.toNanos();
            while (!latest.equals(expected)) {
                assertTrue(System.nanoTime() < deadline, "counts after " + timeout + ": " + latest + ", expected " + expected);
                consumer.poll(Duration.ofMillis(200)).forEach(record -> latest.put(record.key(), record.value()));
            }
        }
        return latest;
    }

    private static Map<String, Long> count(List<String> lines) {
        return lines.stream()
            .flatMap(line -> Arrays.stream(line.toLowerCase(Locale.ROOT).split("\\W+")))
            .map(word -> KeyValue.pair(word, 1L))
            .collect(Collectors.groupingBy(pair -> pair.key, Collectors.counting()));
    }

    private static List<String> concat(List<String> first, List<String> second) {
        return java.util.stream.Stream.concat(first.stream(), second.stream()).toList();
    }
}
