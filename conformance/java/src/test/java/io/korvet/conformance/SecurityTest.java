package io.korvet.conformance;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.Metric;
import org.apache.kafka.common.MetricName;
import org.apache.kafka.common.errors.SaslAuthenticationException;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * The Java client on a SASL_SSL listener whose sessions last two seconds
 * (connections.max.reauth.ms): SCRAM-SHA-256, SCRAM-SHA-512 and PLAIN over TLS with a PEM trust
 * store, re-authentication on open connections (KIP-368), and a wrong password refused.
 */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class SecurityTest {
    private static String bootstrap;
    private static String caFile;

    @BeforeAll
    static void secureListener() {
        bootstrap = System.getenv("KORVET_SASL_SSL_BOOTSTRAP");
        caFile = System.getenv("KORVET_SASL_SSL_CA_FILE");
        Assumptions.assumeTrue(bootstrap != null && caFile != null, "needs the SASL_SSL listener run.py starts");
    }

    /** Client settings for `user` with `mechanism` on the SASL_SSL listener. */
    private static Map<String, Object> sasl(String mechanism, String user, String password) {
        String module = mechanism.equals("PLAIN") ? "org.apache.kafka.common.security.plain.PlainLoginModule"
            : "org.apache.kafka.common.security.scram.ScramLoginModule";
        Map<String, Object> config = new HashMap<>();
        config.put("bootstrap.servers", bootstrap);
        config.put("security.protocol", "SASL_SSL");
        config.put("sasl.mechanism", mechanism);
        config.put("sasl.jaas.config", module + " required username=\"" + user + "\" password=\"" + password + "\";");
        config.put("ssl.truststore.type", "PEM");
        config.put("ssl.truststore.location", caFile);
        return config;
    }

    private static double metric(Map<MetricName, ? extends Metric> metrics, String name) {
        return metrics.entrySet().stream().filter(e -> e.getKey().name().equals(name))
            .mapToDouble(e -> ((Number) e.getValue().metricValue()).doubleValue()).sum();
    }

    @Test
    void everyMechanismProducesAndConsumesOverSaslSsl() throws Exception {
        for (String mechanism : List.of("SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN")) {
            Map<String, Object> alice = sasl(mechanism, "alice", "alice-secret");
            String topic = Broker.uniqueName("secure-" + mechanism.toLowerCase());
            try (Admin admin = Admin.create(alice)) {
                admin.createTopics(List.of(new NewTopic(topic, 1, (short) 1))).all().get(30, TimeUnit.SECONDS);
            }
            try (KafkaProducer<String, String> producer = Broker.producer(alice)) {
                for (int i = 0; i < 10; i++) {
                    producer.send(new ProducerRecord<>(topic, "k" + i, "v" + i)).get(30, TimeUnit.SECONDS);
                }
            }
            try (KafkaConsumer<String, String> consumer = Broker.consumer(Broker.uniqueName("secure"), alice)) {
                consumer.subscribe(List.of(topic));
                List<ConsumerRecord<String, String>> records = Broker.pollUntil(consumer, 10, Duration.ofSeconds(30));
                assertEquals("v0", records.get(0).value(), mechanism);
                assertEquals("v9", records.get(9).value(), mechanism);
            }
        }
    }

    @Test
    void theJavaClientReauthenticatesOnItsOpenConnectionsAsSessionsEnd() throws Exception {
        Map<String, Object> alice = sasl("SCRAM-SHA-512", "alice", "alice-secret");
        String topic = Broker.uniqueName("reauth");
        try (Admin admin = Admin.create(alice)) {
            admin.createTopics(List.of(new NewTopic(topic, 1, (short) 1))).all().get(30, TimeUnit.SECONDS);
        }
        try (KafkaProducer<String, String> producer = Broker.producer(alice)) {
            // Seven seconds of sends on connections whose sessions last two: each one is
            // re-authenticated before its session ends, and no send fails.
            long end = System.nanoTime() + Duration.ofSeconds(7).toNanos();
            int sent = 0;
            while (System.nanoTime() < end) {
                producer.send(new ProducerRecord<>(topic, "k", "v" + sent)).get(30, TimeUnit.SECONDS);
                sent++;
                Thread.sleep(100);
            }
            double reauthentications = metric(producer.metrics(), "successful-reauthentication-total");
            assertTrue(reauthentications >= 2, "re-authentications on the producer's connections: " + reauthentications);
            assertEquals(0.0, metric(producer.metrics(), "failed-reauthentication-total"));
            try (KafkaConsumer<String, String> consumer = Broker.consumer(null, alice)) {
                consumer.assign(List.of(new org.apache.kafka.common.TopicPartition(topic, 0)));
                assertEquals(sent, Broker.pollUntil(consumer, sent, Duration.ofSeconds(30)).size());
            }
        }
    }

    @Test
    void aWrongPasswordIsRefusedAsAnAuthenticationFailure() {
        Map<String, Object> config = sasl("SCRAM-SHA-256", "alice", "wrong");
        config.put("max.block.ms", "15000");
        try (KafkaProducer<String, String> producer = Broker.producer(config)) {
            ExecutionException failure = assertThrows(ExecutionException.class,
                () -> producer.send(new ProducerRecord<>("secure-refused", "v")).get(30, TimeUnit.SECONDS));
            assertInstanceOf(SaslAuthenticationException.class, failure.getCause(), failure.toString());
        }
    }
}
