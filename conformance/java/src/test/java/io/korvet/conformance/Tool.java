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
        String classpath = System.getenv("KORVET_JAVA_CLASSPATH");
        if (classpath == null) {
            throw new IllegalStateException("KORVET_JAVA_CLASSPATH is not set: run the suite through conformance/java/run.py");
        }
        List<String> command = new ArrayList<>(List.of(javaBinary(), "-Xmx256m", "-XX:TieredStopAtLevel=1", "-cp", classpath, mainClass));
        command.addAll(List.of(args));
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

    private static String javaBinary() {
        return Path.of(System.getProperty("java.home"), "bin", "java").toString();
    }
}
