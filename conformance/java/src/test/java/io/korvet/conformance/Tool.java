package io.korvet.conformance;

import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/** One of Kafka's command-line tools run as its own JVM, as `bin/kafka-*.sh` would run it. */
final class Tool {
    record Result(int exit, String out, String err) {
        String all() {
            return out + err;
        }

        @Override
        public String toString() {
            return "exit " + exit + "\n--- stdout\n" + out + "\n--- stderr\n" + err;
        }
    }

    private Tool() {}

    static Result run(String mainClass, String... args) throws IOException, InterruptedException {
        return runWithInput(null, mainClass, args);
    }

    /** Runs the tool with `input` on its standard input (null: none), bounded at 90 seconds. */
    static Result runWithInput(String input, String mainClass, String... args) throws IOException, InterruptedException {
        List<String> command = command("KORVET_JAVA_CLASSPATH", mainClass, args);
        Path out = Files.createTempFile("korvet-tool-", ".out");
        Path err = Files.createTempFile("korvet-tool-", ".err");
        ProcessBuilder builder = new ProcessBuilder(command).redirectOutput(out.toFile()).redirectError(err.toFile());
        if (input == null) {
            builder.redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null")));
        }
        Process process = builder.start();
        if (input != null) {
            try (var stdin = process.getOutputStream()) {
                stdin.write(input.getBytes(StandardCharsets.UTF_8));
            }
        }
        if (!process.waitFor(90, TimeUnit.SECONDS)) {
            process.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
            throw new AssertionError(mainClass + " did not finish within 90 s:\n" + Files.readString(out) + Files.readString(err));
        }
        Result result = new Result(process.exitValue(), Files.readString(out), Files.readString(err));
        Files.deleteIfExists(out);
        Files.deleteIfExists(err);
        return result;
    }

    /**
     * Starts a tool that runs until stopped (a Connect worker, a producer under a broker kill),
     * its standard output and error both into `output`. The caller stops it.
     */
    static Process start(Path output, String mainClass, String... args) throws IOException {
        return start(output, command("KORVET_JAVA_CLASSPATH", mainClass, args));
    }

    /** A Connect worker, from the classpath of the release whose FileStream connectors exist. */
    static Process startConnectWorker(Path output, String mainClass, String... args) throws IOException {
        return start(output, command("KORVET_CONNECT_CLASSPATH", mainClass, args));
    }

    private static Process start(Path output, List<String> command) throws IOException {
        return new ProcessBuilder(command).redirectOutput(output.toFile()).redirectErrorStream(true)
            .redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null"))).start();
    }

    private static List<String> command(String classpathVariable, String mainClass, String... args) {
        String classpath = System.getenv(classpathVariable);
        if (classpath == null) {
            throw new IllegalStateException(classpathVariable + " is not set: run the suite through conformance/java/run.py");
        }
        List<String> command = new ArrayList<>(List.of(javaBinary(), "-Xmx256m", "-XX:TieredStopAtLevel=1", "-cp", classpath, mainClass));
        command.addAll(List.of(args));
        return command;
    }

    private static String javaBinary() {
        return Path.of(System.getProperty("java.home"), "bin", "java").toString();
    }
}
