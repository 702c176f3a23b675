package io.korvet.conformance;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * The broker under test, as run.py started it: korvet on Redis, or Apache Kafka for the
 * differential run. Tests that assert korvet's own behaviour (where it differs from Kafka on
 * purpose) check {@link #isKorvet()}.
 */
final class Broker {
    private Broker() {}

    static String bootstrap() {
        String servers = System.getenv("KORVET_BOOTSTRAP");
        if (servers == null || servers.isEmpty()) {
            throw new IllegalStateException("KORVET_BOOTSTRAP is not set: run the suite through conformance/java/run.py");
        }
        return servers;
    }

    static boolean isKorvet() {
        return !"kafka".equals(System.getenv("KORVET_BROKER_KIND"));
    }

    static String uniqueName(String prefix) {
        return prefix + "-" + UUID.randomUUID().toString().substring(0, 8);
    }

    static Properties common() {
        Properties props = new Properties();
        props.put("bootstrap.servers", bootstrap());
        props.put("request.timeout.ms", "20000");
        props.put("default.api.timeout.ms", "30000");
        return props;
    }

    static Admin admin() {
        return Admin.create(common());
    }

    static KafkaProducer<String, String> producer(Map<String, Object> overrides) {
        Properties props = common();
        props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        props.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "30000");
        props.putAll(overrides);
        return new KafkaProducer<>(props);
    }

    static KafkaConsumer<String, String> consumer(String group, Map<String, Object> overrides) {
        Properties props = common();
        props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        if (group != null) {
            props.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        }
        props.putAll(overrides);
        return new KafkaConsumer<>(props);
    }

    /** Creates a topic and waits until every partition has a leader in the metadata. */
    static String createTopic(String prefix, int partitions) throws Exception {
        return createTopic(prefix, partitions, Map.of());
    }

    static String createTopic(String prefix, int partitions, Map<String, String> configs) throws Exception {
        String name = uniqueName(prefix);
        try (Admin admin = admin()) {
            admin.createTopics(List.of(new NewTopic(name, partitions, (short) 1).configs(configs))).all().get(30, TimeUnit.SECONDS);
            waitFor(Duration.ofSeconds(30), "topic " + name + " to have leaders", () -> {
                try {
                    var description = admin.describeTopics(List.of(name)).allTopicNames().get(10, TimeUnit.SECONDS).get(name);
                    return description.partitions().size() == partitions
                        && description.partitions().stream().allMatch(p -> p.leader() != null && !p.leader().isEmpty());
                } catch (Exception e) {
                    return false;
                }
            });
        }
        return name;
    }

    /** Polls until `count` records have arrived, failing after `timeout`. */
    static List<ConsumerRecord<String, String>> pollUntil(KafkaConsumer<String, String> consumer, int count, Duration timeout) {
        List<ConsumerRecord<String, String>> records = new ArrayList<>();
        long deadline = System.nanoTime() + timeout.toNanos();
        while (records.size() < count) {
            if (System.nanoTime() > deadline) {
                throw new AssertionError("received " + records.size() + " of " + count + " records within " + timeout);
            }
            consumer.poll(Duration.ofMillis(200)).forEach(records::add);
        }
        return records;
    }

    static void waitFor(Duration timeout, String what, BooleanSupplier condition) throws InterruptedException {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (!condition.getAsBoolean()) {
            if (System.nanoTime() > deadline) {
                throw new AssertionError("timed out after " + timeout + " waiting for " + what);
            }
            Thread.sleep(50);
        }
    }
}
