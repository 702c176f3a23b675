package io.korvet.conformance;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.TransactionDescription;
import org.apache.kafka.clients.admin.TransactionState;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.errors.InvalidProducerEpochException;
import org.apache.kafka.common.errors.ProducerFencedException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * The Java client's transactional producer: commits and aborts seen as Kafka shows them to
 * read_committed and read_uncommitted consumers, offsets committed in a transaction, a zombie
 * fenced by a new instance, and the Admin API describing the transaction.
 */
@Timeout(value = 180, unit = TimeUnit.SECONDS)
class TransactionsTest {

    private static KafkaProducer<String, String> transactional(String id) {
        KafkaProducer<String, String> producer = Broker.producer(Map.of("transactional.id", id, "transaction.timeout.ms", "30000"));
        producer.initTransactions();
        return producer;
    }

    private static List<String> readAll(String topic, int partitions, String isolation, int expected) {
        Map<String, Object> config = Map.of("isolation.level", isolation);
        try (KafkaConsumer<String, String> consumer = Broker.consumer(null, config)) {
            List<TopicPartition> assigned = new ArrayList<>();
            for (int p = 0; p < partitions; p++) {
                assigned.add(new TopicPartition(topic, p));
            }
            consumer.assign(assigned);
            consumer.seekToBeginning(assigned);
            List<String> values = new ArrayList<>();
            for (ConsumerRecord<String, String> record : Broker.pollUntil(consumer, expected, Duration.ofSeconds(30))) {
                values.add(record.value());
            }
            // Nothing more arrives: what read_committed must not see stays unseen.
            consumer.poll(Duration.ofMillis(1000)).forEach(record -> values.add(record.value()));
            values.sort(null);
            return values;
        }
    }

    @Test
    void committedRecordsAreSeenAndAbortedOnesOnlyByReadUncommitted() throws Exception {
        String topic = Broker.createTopic("txn", 3);
        try (KafkaProducer<String, String> producer = transactional(Broker.uniqueName("txn-producer"))) {
            producer.beginTransaction();
            for (int i = 0; i < 9; i++) {
                producer.send(new ProducerRecord<>(topic, i % 3, null, "committed-" + i));
            }
            producer.commitTransaction();
            producer.beginTransaction();
            for (int i = 0; i < 6; i++) {
                producer.send(new ProducerRecord<>(topic, i % 3, null, "aborted-" + i));
            }
            producer.flush();
            producer.abortTransaction();
        }
        List<String> committed = new ArrayList<>();
        List<String> everything = new ArrayList<>();
        for (int i = 0; i < 9; i++) {
            committed.add("committed-" + i);
        }
        everything.addAll(committed);
        for (int i = 0; i < 6; i++) {
            everything.add("aborted-" + i);
        }
        committed.sort(null);
        everything.sort(null);
        assertEquals(committed, readAll(topic, 3, "read_committed", 9));
        assertEquals(everything, readAll(topic, 3, "read_uncommitted", 15));
    }

    @Test
    void offsetsCommittedInATransactionBecomeTheGroupsOnCommit() throws Exception {
        String input = Broker.createTopic("txn-in", 1);
        String output = Broker.createTopic("txn-out", 1);
        String group = Broker.uniqueName("txn-group");
        try (KafkaProducer<String, String> plain = Broker.producer(Map.of())) {
            for (int i = 0; i < 5; i++) {
                plain.send(new ProducerRecord<>(input, 0, null, "in-" + i)).get(30, TimeUnit.SECONDS);
            }
        }
        TopicPartition source = new TopicPartition(input, 0);
        try (KafkaConsumer<String, String> consumer = Broker.consumer(group, Map.of("isolation.level", "read_committed"));
             KafkaProducer<String, String> producer = transactional(Broker.uniqueName("copier"))) {
            consumer.subscribe(List.of(input));
            List<ConsumerRecord<String, String>> records = Broker.pollUntil(consumer, 5, Duration.ofSeconds(60));
            producer.beginTransaction();
            for (ConsumerRecord<String, String> record : records) {
                producer.send(new ProducerRecord<>(output, 0, null, "out-" + record.value()));
            }
            producer.sendOffsetsToTransaction(Map.of(source, new OffsetAndMetadata(5)), consumer.groupMetadata());
            try (Admin admin = Broker.admin()) {
                Map<TopicPartition, OffsetAndMetadata> before = admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get(30, TimeUnit.SECONDS);
                assertEquals(null, before.get(source), "not the group's before the commit");
                producer.commitTransaction();
                // Kafka writes the commit's markers after EndTxn answers, so the group's offsets
                // follow shortly after commitTransaction returns (korvet's, before it answers).
                Broker.waitFor(Duration.ofSeconds(30), "the transaction's offsets to be the group's", () -> {
                    try {
                        OffsetAndMetadata after = admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get(10, TimeUnit.SECONDS).get(source);
                        return after != null && after.offset() == 5;
                    } catch (Exception e) {
                        return false;
                    }
                });
            }
        }
        assertEquals(List.of("out-in-0", "out-in-1", "out-in-2", "out-in-3", "out-in-4"), readAll(output, 1, "read_committed", 5));
    }

    @Test
    void aNewInstanceFencesTheOldOneAndTheAdminDescribesIt() throws Exception {
        String topic = Broker.createTopic("txn-fence", 1);
        String id = Broker.uniqueName("fenced");
        KafkaProducer<String, String> zombie = transactional(id);
        try (KafkaProducer<String, String> successor = transactional(id)) {
            zombie.beginTransaction();
            zombie.send(new ProducerRecord<>(topic, 0, null, "zombie"));
            // Kafka 4's own brokers (transaction version 2) report the zombie's stale epoch from
            // the partition first; either way the zombie cannot commit.
            KafkaException refused = assertThrows(KafkaException.class, zombie::commitTransaction);
            assertTrue(refused instanceof ProducerFencedException || refused instanceof InvalidProducerEpochException, refused.toString());
            successor.beginTransaction();
            successor.send(new ProducerRecord<>(topic, 0, null, "successor")).get(30, TimeUnit.SECONDS);
            try (Admin admin = Broker.admin()) {
                TransactionDescription open = admin.describeTransactions(List.of(id)).description(id).get(30, TimeUnit.SECONDS);
                assertEquals(TransactionState.ONGOING, open.state());
                assertEquals(List.of(new TopicPartition(topic, 0)), List.copyOf(open.topicPartitions()));
            }
            successor.commitTransaction();
        } finally {
            zombie.close(Duration.ZERO);
        }
        assertEquals(List.of("successor"), readAll(topic, 1, "read_committed", 1));
    }
}
