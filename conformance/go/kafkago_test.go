package conformance

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

func kafkaGoClient(t *testing.T) *kafka.Client {
	return &kafka.Client{Addr: kafka.TCP(bootstrap(t)...), Timeout: 20 * time.Second}
}

func kafkaGoCreateTopic(t *testing.T, prefix string, partitions int) string {
	t.Helper()
	name := uniqueName(prefix)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	topic := kafka.TopicConfig{Topic: name, NumPartitions: partitions, ReplicationFactor: 1}
	response, err := kafkaGoClient(t).CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{topic}})
	if err != nil || response.Errors[name] != nil {
		t.Fatalf("create topic %s: %v %v", name, err, response)
	}
	response, err = kafkaGoClient(t).CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{topic}})
	if err != nil || !errors.Is(response.Errors[name], kafka.TopicAlreadyExists) {
		t.Fatalf("creating %s twice: %v %v, want %v", name, err, response.Errors[name], kafka.TopicAlreadyExists)
	}
	return name
}

// kafka-go's Writer with each codec and the hash balancer into four partitions, then a group
// Reader that fetches and commits every record: keys and headers intact, each key on one
// partition, and the committed offsets at each partition's end.
func TestKafkaGoWriterAndGroupReader(t *testing.T) {
	codecs := map[string]kafka.Compression{"none": 0, "gzip": kafka.Gzip, "snappy": kafka.Snappy, "lz4": kafka.Lz4, "zstd": kafka.Zstd}
	for name, codec := range codecs {
		t.Run(name, func(t *testing.T) {
			topic := kafkaGoCreateTopic(t, "kafka-go-"+name, 4)
			writer := &kafka.Writer{
				Addr: kafka.TCP(bootstrap(t)...), Topic: topic, Balancer: &kafka.Hash{}, Compression: codec,
				RequiredAcks: kafka.RequireAll, BatchTimeout: 5 * time.Millisecond, WriteTimeout: 20 * time.Second,
			}
			const records = 200
			messages := make([]kafka.Message, records)
			for i := range messages {
				messages[i] = kafka.Message{
					Key: []byte(fmt.Sprintf("key-%d", i%20)), Value: []byte(fmt.Sprintf("value-%d", i)),
					Headers: []kafka.Header{{Key: "n", Value: []byte(fmt.Sprint(i))}},
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			if err := writer.WriteMessages(ctx, messages...); err != nil {
				t.Fatalf("write: %v", err)
			}
			if err := writer.Close(); err != nil {
				t.Fatalf("closing the writer: %v", err)
			}

			group := uniqueName("kafka-go-group")
			reader := kafka.NewReader(kafka.ReaderConfig{
				Brokers: bootstrap(t), GroupID: group, Topic: topic, StartOffset: kafka.FirstOffset,
				MinBytes: 1, MaxBytes: 1 << 20, MaxWait: 200 * time.Millisecond, HeartbeatInterval: time.Second,
			})
			defer reader.Close()
			partitionOfKey := map[string]int{}
			values := map[string]bool{}
			for len(values) < records {
				message, err := reader.FetchMessage(ctx)
				if err != nil {
					t.Fatalf("fetch after %d records: %v", len(values), err)
				}
				if len(message.Headers) != 1 || message.Headers[0].Key != "n" || fmt.Sprintf("value-%s", message.Headers[0].Value) != string(message.Value) {
					t.Fatalf("headers of %q: %v", message.Value, message.Headers)
				}
				if p, ok := partitionOfKey[string(message.Key)]; ok && p != message.Partition {
					t.Fatalf("key %q on partitions %d and %d", message.Key, p, message.Partition)
				}
				partitionOfKey[string(message.Key)] = message.Partition
				values[string(message.Value)] = true
				if err := reader.CommitMessages(ctx, message); err != nil {
					t.Fatalf("commit: %v", err)
				}
			}

			fetched, err := kafkaGoClient(t).OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: {0, 1, 2, 3}}})
			if err != nil || fetched.Error != nil {
				t.Fatalf("offset fetch: %v %v", err, fetched)
			}
			var committed int64
			for _, partition := range fetched.Topics[topic] {
				committed += partition.CommittedOffset
			}
			if committed != records {
				t.Fatalf("committed offsets add up to %d, want %d: %+v", committed, records, fetched.Topics[topic])
			}
		})
	}
}

// A partition Reader (no group) seeks to an offset and reads from there; ReadLag reports what is left.
func TestKafkaGoPartitionReaderSeeks(t *testing.T) {
	topic := kafkaGoCreateTopic(t, "kafka-go-seek", 1)
	writer := &kafka.Writer{Addr: kafka.TCP(bootstrap(t)...), Topic: topic, BatchTimeout: 5 * time.Millisecond, RequiredAcks: kafka.RequireAll}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := 0; i < 30; i++ {
		if err := writer.WriteMessages(ctx, kafka.Message{Value: []byte(fmt.Sprintf("m%d", i))}); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	writer.Close()

	reader := kafka.NewReader(kafka.ReaderConfig{Brokers: bootstrap(t), Topic: topic, Partition: 0, MinBytes: 1, MaxBytes: 1 << 20, MaxWait: 200 * time.Millisecond})
	defer reader.Close()
	if err := reader.SetOffset(25); err != nil {
		t.Fatalf("set offset: %v", err)
	}
	for want := int64(25); want < 30; want++ {
		message, err := reader.ReadMessage(ctx)
		if err != nil || message.Offset != want || string(message.Value) != fmt.Sprintf("m%d", want) {
			t.Fatalf("at %d: %v %d %q", want, err, message.Offset, message.Value)
		}
	}
	lag, err := reader.ReadLag(ctx)
	if err != nil || lag != 0 {
		t.Fatalf("lag at the end: %d %v", lag, err)
	}
}
