package io.korvet.conformance;

import java.util.HashSet;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Reads what kafka-verifiable-producer and kafka-verifiable-consumer print (one JSON object per
 * line) into sets of "partition/offset", the comparison Kafka's system tests make.
 */
final class Verifiable {
    private static final Pattern PARTITION = Pattern.compile("\"partition\":(\\d+)");
    private static final Pattern OFFSET = Pattern.compile("\"offset\":(\\d+)");
    private static final Pattern CONSUMED =
        Pattern.compile("\"partition\":(\\d+),\"count\":(\\d+),\"minOffset\":(\\d+),\"maxOffset\":(\\d+)");

    private Verifiable() {}

    /** The records the producer reported acknowledged. */
    static Set<String> acknowledged(String producerOutput) {
        Set<String> acked = new HashSet<>();
        producerOutput.lines().filter(l -> l.contains("\"name\":\"producer_send_success\"")).forEach(line -> {
            Matcher p = PARTITION.matcher(line);
            Matcher o = OFFSET.matcher(line);
            if (p.find() && o.find()) {
                acked.add(p.group(1) + "/" + o.group(1));
            }
        });
        return acked;
    }

    /** The records the consumer reported consumed (each batch is a range of offsets). */
    static Set<String> consumed(String consumerOutput) {
        Set<String> seen = new HashSet<>();
        consumerOutput.lines().filter(l -> l.contains("\"records_consumed\"")).forEach(line -> {
            Matcher m = CONSUMED.matcher(line);
            while (m.find()) {
                for (long at = Long.parseLong(m.group(3)); at <= Long.parseLong(m.group(4)); at++) {
                    seen.add(m.group(1) + "/" + at);
                }
            }
        });
        return seen;
    }
}
