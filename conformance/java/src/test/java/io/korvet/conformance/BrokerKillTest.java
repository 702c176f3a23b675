package io.korvet.conformance;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.common.TopicPartition;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * kill -9 of one broker of three while kafka-verifiable-producer sends: the verifiable consumer
 * then reads every record the producer saw acknowledged, as Kafka's system tests check. korvet
 * only (run.py starts the three brokers); the single Kafka node of the differential run has no
 * broker to spare.
 */
@Timeout(value = 300, unit = TimeUnit.SECONDS)
class BrokerKillTest {
    @Test
    void noAcknowledgedRecordIsLostWhenABrokerIsKilled() throws Exception {
        String bootstrap = System.getenv("KORVET_CLUSTER_BOOTSTRAP");
        String pids = System.getenv("KORVET_CLUSTER_PIDS");
        Assumptions.assumeTrue(bootstrap != null && pids != null, "needs the three-broker korvet cluster run.py starts");
        String topic = Broker.uniqueName("kill");
        Properties props = new Properties();
        props.put("bootstrap.servers", bootstrap);
        try (Admin admin = Admin.create(props)) {
            admin.createTopics(List.of(new NewTopic(topic, 6, (short) 1))).all().get(30, TimeUnit.SECONDS);
        }

        Path out = Files.createTempFile("korvet-verifiable-producer", ".out");
        Process producer = Tool.start(out, "org.apache.kafka.tools.VerifiableProducer", "--bootstrap-server", bootstrap,
            "--topic", topic, "--max-messages", "12000", "--throughput", "1500", "--acks", "-1");
        try {
            Broker.waitFor(java.time.Duration.ofSeconds(60), "3,000 acknowledged records before the kill", () -> {
                try {
                    return Verifiable.acknowledged(Files.readString(out)).size() >= 3000;
                } catch (Exception e) {
                    return false;
                }
            });
            long victim = Long.parseLong(pids.split(",")[1]);
            ProcessHandle.of(victim).orElseThrow().destroyForcibly(); // SIGKILL: no drain, no deregistration
            assertTrue(producer.waitFor(180, TimeUnit.SECONDS), "the producer finishes on the two brokers left");
        } finally {
            producer.destroyForcibly();
        }
        Set<String> acked = Verifiable.acknowledged(Files.readString(out));
        assertTrue(acked.size() > 3000, "acknowledged after the kill too: " + acked.size());

        long total;
        String survivors = bootstrap.split(",")[0] + "," + bootstrap.split(",")[2];
        props.put("bootstrap.servers", survivors);
        try (Admin admin = Admin.create(props)) {
            Map<TopicPartition, OffsetSpec> latest = new java.util.HashMap<>();
            for (int p = 0; p < 6; p++) {
                latest.put(new TopicPartition(topic, p), OffsetSpec.latest());
            }
            total = admin.listOffsets(latest).all().get(30, TimeUnit.SECONDS).values().stream().mapToLong(r -> r.offset()).sum();
        }
        Tool.Result consumed = Tool.run("org.apache.kafka.tools.VerifiableConsumer", "--bootstrap-server", survivors, "--topic", topic,
            "--group-id", Broker.uniqueName("kill-check"), "--max-messages", Long.toString(total), "--reset-policy", "earliest");
        assertEquals(0, consumed.exit(), consumed::toString);
        Set<String> seen = Verifiable.consumed(consumed.out());
        Set<String> lost = new HashSet<>(acked);
        lost.removeAll(seen);
        assertTrue(lost.isEmpty(), lost.size() + " acknowledged records never consumed, such as " + lost.stream().limit(10).toList());
    }
}
