package io.korvet.conformance;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.net.ServerSocket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import java.util.stream.IntStream;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Kafka Connect workers, run as `connect-standalone` and `connect-distributed` would run them,
 * with the FileStream source (a file's lines into a topic) and sink (a topic into a file).
 */
class ConnectTest {
    private static final String SOURCE = "org.apache.kafka.connect.file.FileStreamSourceConnector";
    private static final String SINK = "org.apache.kafka.connect.file.FileStreamSinkConnector";
    private static final HttpClient HTTP = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();

    @Test
    @Timeout(240)
    void standaloneWorkerCopiesAFileThroughATopic() throws Exception {
        Path dir = Files.createTempDirectory("korvet-connect-standalone-");
        String topic = Broker.createTopic("connect-file", 1);
        Path input = dir.resolve("input.txt");
        Path output = dir.resolve("output.txt");
        List<String> lines = lines("standalone", 0, 50);
        Files.write(input, lines);
        int port = freePort();
        Path worker = properties(dir.resolve("worker.properties"), workerSettings(port, Map.of(
            "offset.storage.file.filename", dir.resolve("offsets").toString())));
        Path source = properties(dir.resolve("source.properties"), Map.of(
            "name", "file-source", "connector.class", SOURCE, "tasks.max", "1", "file", input.toString(), "topic", topic));
        Path sink = properties(dir.resolve("sink.properties"), Map.of(
            "name", "file-sink", "connector.class", SINK, "tasks.max", "1", "file", output.toString(), "topics", topic));

        Path log = dir.resolve("worker.log");
        Process process = Tool.startConnectWorker(log, "org.apache.kafka.connect.cli.ConnectStandalone", worker.toString(), source.toString(), sink.toString());
        try {
            awaitLines(output, lines, process, log);
            String connectors = get(port, "/connectors");
            assertTrue(connectors.contains("file-source") && connectors.contains("file-sink"), connectors);
            awaitRunning(port, "file-source", process, log);
            awaitRunning(port, "file-sink", process, log);

            List<String> more = lines("standalone", 50, 60);
            Files.write(input, more, StandardOpenOption.APPEND);
            awaitLines(output, concat(lines, more), process, log);
            assertEquals(60, recordsIn(topic), "each line is one record in the topic");
        } finally {
            stop(process);
        }
    }

    /**
     * A distributed worker keeps its connectors' configs, source offsets and statuses in three
     * compacted topics it creates itself, and joins a group with Connect's own protocol. After a
     * restart it reads them back: the connectors come back without being posted again and the
     * source goes on from its stored offset instead of copying the file a second time.
     */
    @Test
    @Timeout(300)
    void distributedWorkerKeepsItsStateInCompactedTopics() throws Exception {
        Path dir = Files.createTempDirectory("korvet-connect-distributed-");
        String cluster = Broker.uniqueName("connect");
        String topic = Broker.createTopic("connect-dist", 2);
        Path input = dir.resolve("input.txt");
        Path output = dir.resolve("output.txt");
        List<String> lines = lines("distributed", 0, 40);
        Files.write(input, lines);
        int port = freePort();
        Map<String, String> settings = workerSettings(port, Map.of(
            "group.id", cluster,
            "config.storage.topic", cluster + "-configs", "offset.storage.topic", cluster + "-offsets",
            "status.storage.topic", cluster + "-status", "config.storage.replication.factor", "1",
            "offset.storage.replication.factor", "1", "status.storage.replication.factor", "1"));
        Path worker = properties(dir.resolve("worker.properties"), settings);

        Path log = dir.resolve("worker.log");
        Process process = Tool.startConnectWorker(log, "org.apache.kafka.connect.cli.ConnectDistributed", worker.toString());
        try {
            awaitRest(port, process, log);
            put(port, "/connectors/file-source/config", json(Map.of(
                "connector.class", SOURCE, "tasks.max", "1", "file", input.toString(), "topic", topic)));
            put(port, "/connectors/file-sink/config", json(Map.of(
                "connector.class", SINK, "tasks.max", "1", "file", output.toString(), "topics", topic)));
            awaitLinesInAnyOrder(output, lines, process, log);
            awaitRunning(port, "file-source", process, log);
        } finally {
            stop(process);
        }

        try (Admin admin = Broker.admin()) {
            for (String internal : List.of("-configs", "-offsets", "-status")) {
                ConfigResource resource = new ConfigResource(ConfigResource.Type.TOPIC, cluster + internal);
                Config config = admin.describeConfigs(List.of(resource)).all().get(30, TimeUnit.SECONDS).get(resource);
                assertEquals("compact", config.get("cleanup.policy").value(), cluster + internal + " is compacted");
            }
        }

        List<String> more = lines("distributed", 40, 55);
        Files.write(input, more, StandardOpenOption.APPEND);
        Path secondLog = dir.resolve("worker-2.log");
        process = Tool.startConnectWorker(secondLog, "org.apache.kafka.connect.cli.ConnectDistributed", worker.toString());
        try {
            awaitRest(port, process, secondLog);
            awaitLinesInAnyOrder(output, concat(lines, more), process, secondLog);
            awaitRunning(port, "file-sink", process, secondLog);
            assertEquals(55, recordsIn(topic), "the restarted source resumed from its stored offset");
        } finally {
            stop(process);
        }
    }

    private static Map<String, String> workerSettings(int port, Map<String, String> extra) {
        Map<String, String> settings = new java.util.HashMap<>(Map.of(
            "bootstrap.servers", Broker.bootstrap(),
            "key.converter", "org.apache.kafka.connect.storage.StringConverter",
            "value.converter", "org.apache.kafka.connect.storage.StringConverter",
            "listeners", "http://127.0.0.1:" + port,
            "offset.flush.interval.ms", "500",
            "plugin.discovery", "only_scan"));
        settings.putAll(extra);
        return settings;
    }

    private static List<String> lines(String prefix, int from, int to) {
        return IntStream.range(from, to).mapToObj(i -> prefix + " line " + i).toList();
    }

    private static List<String> concat(List<String> first, List<String> second) {
        List<String> all = new ArrayList<>(first);
        all.addAll(second);
        return all;
    }

    private static Path properties(Path file, Map<String, String> settings) throws IOException {
        Files.writeString(file, settings.entrySet().stream().map(e -> e.getKey() + "=" + e.getValue()).collect(Collectors.joining("\n")) + "\n");
        return file;
    }

    private static String json(Map<String, String> settings) {
        return settings.entrySet().stream().map(e -> "\"" + e.getKey() + "\":\"" + e.getValue() + "\"").collect(Collectors.joining(",", "{", "}"));
    }

    private static int freePort() throws IOException {
        try (ServerSocket socket = new ServerSocket(0)) {
            return socket.getLocalPort();
        }
    }

    private static long recordsIn(String topic) throws Exception {
        try (Admin admin = Broker.admin()) {
            int partitions = admin.describeTopics(List.of(topic)).allTopicNames().get(30, TimeUnit.SECONDS).get(topic).partitions().size();
            Map<TopicPartition, OffsetSpec> latest = IntStream.range(0, partitions).boxed()
                .collect(Collectors.toMap(p -> new TopicPartition(topic, p), p -> OffsetSpec.latest()));
            return admin.listOffsets(latest).all().get(30, TimeUnit.SECONDS).values().stream().mapToLong(info -> info.offset()).sum();
        }
    }

    private static void awaitLines(Path file, List<String> expected, Process worker, Path log) throws Exception {
        await(Duration.ofSeconds(90), "the sink to write " + expected.size() + " lines in order", worker, log,
            () -> Files.exists(file) && Files.readAllLines(file).equals(expected));
    }

    /** With more than one partition the sink writes each partition in order, not the file as a whole. */
    private static void awaitLinesInAnyOrder(Path file, List<String> expected, Process worker, Path log) throws Exception {
        await(Duration.ofSeconds(120), "the sink to write " + expected.size() + " lines", worker, log,
            () -> Files.exists(file) && Files.readAllLines(file).stream().distinct().sorted().toList().equals(expected.stream().sorted().toList()));
    }

    private static void awaitRest(int port, Process worker, Path log) throws Exception {
        await(Duration.ofSeconds(120), "the worker's REST API", worker, log, () -> {
            try {
                get(port, "/connectors");
                return true;
            } catch (IOException e) {
                return false;
            }
        });
    }

    private static void awaitRunning(int port, String connector, Process worker, Path log) throws Exception {
        await(Duration.ofSeconds(60), connector + " and its task to be RUNNING", worker, log, () -> {
            String status = get(port, "/connectors/" + connector + "/status");
            return status.contains("\"tasks\":[{") && !status.replace("\"state\":\"RUNNING\"", "").contains("\"state\":");
        });
    }

    interface Check {
        boolean holds() throws Exception;
    }

    private static void await(Duration timeout, String what, Process worker, Path log, Check check) throws Exception {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (true) {
            if (check.holds()) {
                return;
            }
            if (!worker.isAlive() || System.nanoTime() > deadline) {
                String tail = Files.readAllLines(log).stream().filter(line -> line.contains("ERROR") || line.contains("WARN"))
                    .limit(40).collect(Collectors.joining("\n"));
                throw new AssertionError("timed out after " + timeout + " waiting for " + what
                    + (worker.isAlive() ? "" : " (the worker exited)") + "; worker warnings:\n" + tail);
            }
            Thread.sleep(100);
        }
    }

    private static String get(int port, String path) throws IOException, InterruptedException {
        HttpRequest request = HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + path)).timeout(Duration.ofSeconds(10)).GET().build();
        HttpResponse<String> response = HTTP.send(request, HttpResponse.BodyHandlers.ofString(StandardCharsets.UTF_8));
        if (response.statusCode() != 200) {
            throw new IOException("GET " + path + ": " + response.statusCode() + " " + response.body());
        }
        return response.body();
    }

    /** PUT /connectors/NAME/config, retried while the worker is still joining its group (409). */
    private static void put(int port, String path, String body) throws Exception {
        long deadline = System.nanoTime() + Duration.ofSeconds(60).toNanos();
        while (true) {
            HttpRequest request = HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + path)).timeout(Duration.ofSeconds(30))
                .header("Content-Type", "application/json").PUT(HttpRequest.BodyPublishers.ofString(body)).build();
            HttpResponse<String> response = HTTP.send(request, HttpResponse.BodyHandlers.ofString(StandardCharsets.UTF_8));
            if (response.statusCode() == 200 || response.statusCode() == 201) {
                return;
            }
            if (response.statusCode() != 409 || System.nanoTime() > deadline) {
                throw new AssertionError("PUT " + path + ": " + response.statusCode() + " " + response.body());
            }
            Thread.sleep(200);
        }
    }

    /** SIGTERM, as an operator stops a worker: it commits offsets and leaves its group. */
    private static void stop(Process process) throws InterruptedException {
        process.destroy();
        if (!process.waitFor(60, TimeUnit.SECONDS)) {
            process.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
        }
    }
}
