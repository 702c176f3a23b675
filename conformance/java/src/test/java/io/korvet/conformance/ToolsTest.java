package io.korvet.conformance;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Collectors;
import java.util.stream.IntStream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** Kafka's command-line tools, each run as a process against the broker, asserted on what they print. */
@Timeout(value = 300, unit = TimeUnit.SECONDS)
class ToolsTest {
    private static final String TOPICS = "org.apache.kafka.tools.TopicCommand";
    private static final String GROUPS = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand";
    private static final String CONFIGS = "org.apache.kafka.tools.ConfigCommand";

    private static Tool.Result ok(Tool.Result result) {
        assertEquals(0, result.exit(), result::toString);
        return result;
    }

    private static String bootstrap() {
        return Broker.bootstrap();
    }

    @Test
    void kafkaTopicsCreatesListsDescribesAltersAndDeletes() throws Exception {
        String topic = Broker.uniqueName("cli-topic");
        String server = bootstrap();
        ok(Tool.run(TOPICS, "--bootstrap-server", server, "--create", "--topic", topic, "--partitions", "3",
            "--replication-factor", "1", "--config", "retention.ms=3600000"));
        ok(Tool.run(TOPICS, "--bootstrap-server", server, "--create", "--if-not-exists", "--topic", topic, "--partitions", "3"));
        assertTrue(ok(Tool.run(TOPICS, "--bootstrap-server", server, "--list")).out().lines().anyMatch(topic::equals));
        String described = ok(Tool.run(TOPICS, "--bootstrap-server", server, "--describe", "--topic", topic)).out();
        assertTrue(described.contains("PartitionCount: 3"), described);
        assertTrue(described.contains("retention.ms=3600000"), described);
        assertTrue(ok(Tool.run(TOPICS, "--bootstrap-server", server, "--describe")).out().contains(topic), "describe all lists it");
        ok(Tool.run(TOPICS, "--bootstrap-server", server, "--alter", "--topic", topic, "--partitions", "4"));
        Broker.waitFor(java.time.Duration.ofSeconds(30), "four partitions", () -> {
            try {
                return Tool.run(TOPICS, "--bootstrap-server", server, "--describe", "--topic", topic).out().contains("PartitionCount: 4");
            } catch (Exception e) {
                return false;
            }
        });
        Tool.Result tooMany = Tool.run(TOPICS, "--bootstrap-server", server, "--create", "--topic", Broker.uniqueName("rf"),
            "--partitions", "1", "--replication-factor", "7");
        assertNotEquals(0, tooMany.exit());
        assertTrue(tooMany.all().contains("The target replication factor of 7 cannot be reached"), tooMany::toString);
        ok(Tool.run(TOPICS, "--bootstrap-server", server, "--delete", "--topic", topic));
    }

    @Test
    void consoleProducerConsumerAndConsumerGroupsRoundTripKeysHeadersAndOffsets() throws Exception {
        String server = bootstrap();
        String topic = Broker.createTopic("cli-console", 2);
        String group = Broker.uniqueName("cli-group");
        String input = IntStream.range(0, 10).mapToObj(i -> "source:cli\tkey" + i + ":value" + i).collect(Collectors.joining("\n")) + "\n";
        ok(Tool.runWithInput(input, "org.apache.kafka.tools.ConsoleProducer", "--bootstrap-server", server, "--topic", topic,
            "--reader-property", "parse.key=true", "--reader-property", "key.separator=:", "--reader-property", "parse.headers=true"));
        Tool.Result consumed = ok(Tool.run("org.apache.kafka.tools.consumer.ConsoleConsumer", "--bootstrap-server", server,
            "--topic", topic, "--group", group, "--from-beginning", "--max-messages", "10", "--timeout-ms", "30000",
            "--formatter-property", "print.key=true", "--formatter-property", "print.headers=true"));
        Set<String> lines = consumed.out().lines().collect(Collectors.toSet());
        for (int i = 0; i < 10; i++) {
            assertTrue(lines.contains("source:cli\tkey" + i + "\tvalue" + i), "record " + i + " with its key and header:\n" + consumed.out());
        }

        assertTrue(ok(Tool.run(GROUPS, "--bootstrap-server", server, "--list")).out().lines().anyMatch(group::equals));
        String described = ok(Tool.run(GROUPS, "--bootstrap-server", server, "--describe", "--group", group)).out();
        assertTrue(described.contains("LAG"), described);
        int committed = 0;
        for (String line : described.lines().filter(l -> l.startsWith(group)).toList()) {
            String[] columns = line.trim().split("\\s+");
            committed += Integer.parseInt(columns[3]);
            assertEquals("0", columns[5], "no lag after consuming everything: " + line);
        }
        assertEquals(10, committed, described);

        String reset = ok(Tool.run(GROUPS, "--bootstrap-server", server, "--reset-offsets", "--group", group, "--topic", topic,
            "--to-earliest", "--execute")).out();
        assertTrue(reset.lines().filter(l -> l.contains(topic)).allMatch(l -> l.trim().endsWith(" 0")), reset);
        String shifted = ok(Tool.run(GROUPS, "--bootstrap-server", server, "--reset-offsets", "--group", group, "--all-topics",
            "--shift-by", "2", "--execute")).out();
        assertTrue(shifted.lines().filter(l -> l.contains(topic)).allMatch(l -> l.trim().endsWith(" 2")), shifted);
        String byTime = ok(Tool.run(GROUPS, "--bootstrap-server", server, "--reset-offsets", "--group", group, "--topic", topic + ":0",
            "--to-datetime", "2000-01-01T00:00:00.000", "--execute")).out();
        assertTrue(byTime.lines().filter(l -> l.contains(topic)).allMatch(l -> l.trim().endsWith(" 0")), byTime);
        ok(Tool.run(GROUPS, "--bootstrap-server", server, "--delete", "--group", group));
        assertTrue(ok(Tool.run(GROUPS, "--bootstrap-server", server, "--list")).out().lines().noneMatch(group::equals));
    }

    @Test
    void offsetsRecordsConfigsAndApiVersionsTools() throws Exception {
        String server = bootstrap();
        String topic = Broker.createTopic("cli-offsets", 1);
        ok(Tool.runWithInput("a\nb\nc\nd\n", "org.apache.kafka.tools.ConsoleProducer", "--bootstrap-server", server, "--topic", topic));
        assertEquals(topic + ":0:4", ok(Tool.run("org.apache.kafka.tools.GetOffsetShell", "--bootstrap-server", server, "--topic", topic))
            .out().trim());

        Path plan = Files.createTempFile("korvet-delete-records", ".json");
        Files.writeString(plan, "{\"version\":1,\"partitions\":[{\"topic\":\"" + topic + "\",\"partition\":0,\"offset\":2}]}");
        String deleted = ok(Tool.run("org.apache.kafka.tools.DeleteRecordsCommand", "--bootstrap-server", server,
            "--offset-json-file", plan.toString())).out();
        assertTrue(deleted.contains("low_watermark: 2"), deleted);
        assertEquals(topic + ":0:2", ok(Tool.run("org.apache.kafka.tools.GetOffsetShell", "--bootstrap-server", server, "--topic", topic,
            "--time", "-2")).out().trim());

        ok(Tool.run(CONFIGS, "--bootstrap-server", server, "--alter", "--entity-type", "topics", "--entity-name", topic,
            "--add-config", "retention.ms=1234567"));
        String configs = ok(Tool.run(CONFIGS, "--bootstrap-server", server, "--describe", "--entity-type", "topics", "--entity-name", topic)).out();
        assertTrue(configs.contains("retention.ms=1234567"), configs);

        String versions = ok(Tool.run("org.apache.kafka.tools.BrokerApiVersionsCommand", "--bootstrap-server", server)).out();
        assertTrue(versions.contains("Produce(0):"), versions);
        assertTrue(versions.contains("DescribeCluster(60):"), versions);
    }

    @Test
    void scramUsersAreManagedWithKafkaConfigs() throws Exception {
        String server = bootstrap();
        String user = Broker.uniqueName("alice");
        ok(Tool.run(CONFIGS, "--bootstrap-server", server, "--alter", "--entity-type", "users", "--entity-name", user,
            "--add-config", "SCRAM-SHA-256=[iterations=8192,password=alice-secret]"));
        Broker.waitFor(java.time.Duration.ofSeconds(30), "the user's credential", () -> {
            try {
                return Tool.run(CONFIGS, "--bootstrap-server", server, "--describe", "--entity-type", "users", "--entity-name", user)
                    .out().contains("SCRAM-SHA-256=iterations=8192");
            } catch (Exception e) {
                return false;
            }
        });
        ok(Tool.run(CONFIGS, "--bootstrap-server", server, "--alter", "--entity-type", "users", "--entity-name", user,
            "--delete-config", "SCRAM-SHA-256"));
    }

    @Test
    void logDirsTransactionsLeaderElectionAndAclsToolsAnswer() throws Exception {
        String server = bootstrap();
        String topic = Broker.createTopic("cli-describe", 1);
        ok(Tool.runWithInput("x\ny\n", "org.apache.kafka.tools.ConsoleProducer", "--bootstrap-server", server, "--topic", topic));
        String dirs = ok(Tool.run("org.apache.kafka.tools.LogDirsCommand", "--bootstrap-server", server, "--describe",
            "--topic-list", topic)).out();
        assertTrue(dirs.contains("\"partition\":\"" + topic + "-0\""), dirs);

        ok(Tool.run("org.apache.kafka.tools.TransactionsCommand", "--bootstrap-server", server, "list"));
        String producers = ok(Tool.run("org.apache.kafka.tools.TransactionsCommand", "--bootstrap-server", server,
            "describe-producers", "--topic", topic, "--partition", "0")).out();
        assertTrue(producers.contains("ProducerId"), producers);
        assertEquals(2, producers.lines().count(), "a header and the console producer's line:\n" + producers);

        Tool.Result election = Tool.run("org.apache.kafka.tools.LeaderElectionCommand", "--bootstrap-server", server,
            "--election-type", "preferred", "--topic", topic, "--partition", "0");
        assertTrue(election.all().contains("Valid replica already elected for partitions " + topic + "-0"), election::toString);

        // Without an authorizer Kafka refuses every ACL request: SECURITY_DISABLED.
        Tool.Result acls = Tool.run("org.apache.kafka.tools.AclCommand", "--bootstrap-server", server, "--list");
        assertTrue(acls.all().contains("SecurityDisabledException"), acls::toString);
    }

    @Test
    void perfToolsRunToTheEnd() throws Exception {
        String server = bootstrap();
        String topic = Broker.createTopic("cli-perf", 2);
        String produced = ok(Tool.run("org.apache.kafka.tools.ProducerPerformance", "--topic", topic, "--num-records", "20000",
            "--record-size", "100", "--throughput", "-1", "--producer-props", "bootstrap.servers=" + server, "acks=all")).out();
        assertTrue(produced.contains("20000 records sent"), produced);
        String consumed = ok(Tool.run("org.apache.kafka.tools.ConsumerPerformance", "--bootstrap-server", server, "--topic", topic,
            "--messages", "20000", "--timeout", "60000")).out();
        Matcher row = Pattern.compile("(?m)^\\S+ \\S+, \\S+ \\S+, [\\d.]+, [\\d.]+, (\\d+),").matcher(consumed);
        assertTrue(row.find(), consumed);
        assertEquals(20000, Integer.parseInt(row.group(1)), consumed);
    }

    @Test
    void verifiableProducerAndConsumerAgreeOnEveryAcknowledgedRecord() throws Exception {
        String server = bootstrap();
        String topic = Broker.createTopic("cli-verifiable", 3);
        Tool.Result produced = ok(Tool.run("org.apache.kafka.tools.VerifiableProducer", "--bootstrap-server", server, "--topic", topic,
            "--max-messages", "3000", "--acks", "-1"));
        Set<String> acked = Verifiable.acknowledged(produced.out());
        assertEquals(3000, acked.size(), "every record acknowledged once");

        Tool.Result consumed = ok(Tool.run("org.apache.kafka.tools.VerifiableConsumer", "--bootstrap-server", server, "--topic", topic,
            "--group-id", Broker.uniqueName("verifiable"), "--max-messages", "3000", "--reset-policy", "earliest"));
        Set<String> seen = Verifiable.consumed(consumed.out());
        Set<String> lost = new HashSet<>(acked);
        lost.removeAll(seen);
        assertTrue(lost.isEmpty(), "acknowledged but never consumed: " + lost.stream().limit(20).toList());
    }
}
