package io.korvet.conformance;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Comparator;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.CooperativeStickyAssignor;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.RangeAssignor;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.TopicPartition;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** The classic group protocol as the Java consumer runs it: assignors, rebalances, static members. */
@Timeout(value = 180, unit = TimeUnit.SECONDS)
class ConsumerGroupTest {

    /** A consumer polling on its own thread, recording what it received and what it was given. */
    static final class Member implements AutoCloseable {
        final KafkaConsumer<String, String> consumer;
        final List<ConsumerRecord<String, String>> received = new CopyOnWriteArrayList<>();
        final Set<TopicPartition> owned = ConcurrentHashMap.newKeySet();
        final List<String> events = new CopyOnWriteArrayList<>();
        private final AtomicBoolean running = new AtomicBoolean(true);
        private final Thread thread;

        Member(String group, String topic, Map<String, Object> config) {
            consumer = Broker.consumer(group, config);
            thread = new Thread(() -> {
                consumer.subscribe(List.of(topic), new ConsumerRebalanceListener() {
                    @Override
                    public void onPartitionsRevoked(Collection<TopicPartition> partitions) {
                        owned.removeAll(partitions);
                        events.add("revoked " + partitions.size());
                        try {
                            consumer.commitSync();
                        } catch (KafkaException e) {
                            // A second rebalance already under way refuses this commit; the
                            // records are consumed again by the next owner, as in any service.
                            events.add("commit on revoke failed: " + e);
                        }
                    }

                    @Override
                    public void onPartitionsAssigned(Collection<TopicPartition> partitions) {
                        owned.addAll(partitions);
                        events.add("assigned " + partitions.size());
                    }

                    @Override
                    public void onPartitionsLost(Collection<TopicPartition> partitions) {
                        owned.removeAll(partitions);
                        events.add("lost " + partitions.size());
                    }
                });
                while (running.get()) {
                    try {
                        consumer.poll(Duration.ofMillis(100)).forEach(received::add);
                        consumer.commitAsync();
                    } catch (KafkaException e) {
                        // A member whose thread died would keep its partitions until
                        // max.poll.interval.ms; a real service logs and polls on.
                        events.add("poll failed: " + e);
                    }
                }
                consumer.commitSync();
                consumer.close(Duration.ofSeconds(20));
            }, "member");
            thread.start();
        }

        @Override
        public void close() throws InterruptedException {
            running.set(false);
            thread.join(40_000);
        }
    }

    private static void produce(String topic, int count) throws Exception {
        try (KafkaProducer<String, String> producer = Broker.producer(Map.of())) {
            List<Future<RecordMetadata>> sent = new ArrayList<>();
            for (int i = 0; i < count; i++) {
                sent.add(producer.send(new ProducerRecord<>(topic, "key-" + i, "value-" + i)));
            }
            producer.flush();
            // A send that failed would otherwise show up only as a consumer that waits in vain.
            for (Future<RecordMetadata> acknowledgement : sent) {
                acknowledgement.get(30, TimeUnit.SECONDS);
            }
        }
    }

    /**
     * Per partition: the log end offset, the group's committed offset, and the highest offset
     * each member received, so that a member that stopped consuming is named in the failure.
     */
    private static String progress(String topic, String group, Member... members) {
        try (Admin admin = Broker.admin()) {
            Map<TopicPartition, OffsetSpec> latest = new TreeMap<>(Comparator.comparingInt(TopicPartition::partition));
            for (int p = 0; p < 6; p++) {
                latest.put(new TopicPartition(topic, p), OffsetSpec.latest());
            }
            var ends = admin.listOffsets(latest).all().get(10, TimeUnit.SECONDS);
            var committed = admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get(10, TimeUnit.SECONDS);
            StringBuilder report = new StringBuilder();
            for (TopicPartition partition : latest.keySet()) {
                report.append(String.format("%n  partition %d: end %d, committed %s, highest received per member",
                    partition.partition(), ends.get(partition).offset(),
                    committed.containsKey(partition) ? committed.get(partition).offset() : "none"));
                for (Member member : members) {
                    long highest = member.received.stream().filter(r -> r.partition() == partition.partition())
                        .mapToLong(ConsumerRecord::offset).max().orElse(-1);
                    report.append(' ').append(highest).append(member.owned.contains(partition) ? "*" : "");
                }
            }
            return report.toString();
        } catch (Exception e) {
            return " (progress unavailable: " + e + ")";
        }
    }

    /** How many distinct records (partition and offset) the members received between them. */
    private static int distinctOffsets(Member... members) {
        Set<String> distinct = new HashSet<>();
        for (Member member : members) {
            member.received.forEach(r -> distinct.add(r.partition() + "/" + r.offset()));
        }
        return distinct.size();
    }

    @ParameterizedTest
    @ValueSource(classes = {RangeAssignor.class, CooperativeStickyAssignor.class})
    void membersSharePartitionsAndEveryRecordIsConsumed(Class<?> assignor) throws Exception {
        String topic = Broker.createTopic("group-" + assignor.getSimpleName(), 6);
        String group = Broker.uniqueName("group");
        Map<String, Object> config = Map.of("partition.assignment.strategy", assignor.getName(), "session.timeout.ms", "10000",
            "heartbeat.interval.ms", "500");
        produce(topic, 300);
        try (Member first = new Member(group, topic, config)) {
            Broker.waitFor(Duration.ofSeconds(60), "the first member to own all six partitions", () -> first.owned.size() == 6);
            try (Member second = new Member(group, topic, config); Member third = new Member(group, topic, config)) {
                Broker.waitFor(Duration.ofSeconds(90), "three members with two partitions each",
                    () -> first.owned.size() == 2 && second.owned.size() == 2 && third.owned.size() == 2);
                Set<TopicPartition> all = new HashSet<>(first.owned);
                all.addAll(second.owned);
                all.addAll(third.owned);
                assertEquals(6, all.size(), "no partition is owned twice");
                produce(topic, 300);
                // A commit refused by a rebalance gives its records to the next owner again, so
                // count distinct offsets, not deliveries.
                try {
                    Broker.waitFor(Duration.ofSeconds(60), "all 600 records", () -> distinctOffsets(first, second, third) == 600);
                } catch (AssertionError e) {
                    throw new AssertionError(e.getMessage() + "; members received " + List.of(first.received.size(),
                        second.received.size(), third.received.size()) + ", events " + List.of(first.events, second.events,
                        third.events) + "; progress (* owner):" + progress(topic, group, first, second, third), e);
                }
                if (assignor == CooperativeStickyAssignor.class) {
                    assertTrue(first.events.stream().noneMatch(e -> e.equals("revoked 6")),
                        "cooperative rebalancing revokes only what moves: " + first.events);
                }
            }
        }
    }

    @Test
    void aStaticMemberThatReturnsWithinTheSessionKeepsItsPartitionsWithoutARebalance() throws Exception {
        String topic = Broker.createTopic("static", 4);
        String group = Broker.uniqueName("static-group");
        Map<String, Object> a = Map.of("group.instance.id", "instance-a", "session.timeout.ms", "30000", "heartbeat.interval.ms", "500");
        Map<String, Object> b = Map.of("group.instance.id", "instance-b", "session.timeout.ms", "30000", "heartbeat.interval.ms", "500");
        try (Member first = new Member(group, topic, a)) {
            Member second = new Member(group, topic, b);
            Broker.waitFor(Duration.ofSeconds(60), "two static members with two partitions each",
                () -> first.owned.size() == 2 && second.owned.size() == 2);
            Set<TopicPartition> secondsPartitions = new HashSet<>(second.owned);
            int firstEvents = first.events.size();
            second.close(); // a static member's close sends no LeaveGroup
            try (Member returned = new Member(group, topic, b)) {
                Broker.waitFor(Duration.ofSeconds(60), "the returning member's partitions", () -> returned.owned.size() == 2);
                assertEquals(secondsPartitions, returned.owned, "the same instance id gets the same partitions back");
                assertEquals(firstEvents, first.events.size(), "the other member saw no rebalance: " + first.events);
            }
        }
    }
}
