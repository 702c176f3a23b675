package conformance

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
)

// saramaConfig speaks the protocol of Kafka 3.8, the release whose API versions korvet matches.
func saramaConfig() *sarama.Config {
	config := sarama.NewConfig()
	config.Version = sarama.V3_8_0_0
	config.ClientID = "korvet-conformance"
	config.Net.DialTimeout = 10 * time.Second
	config.Metadata.Retry.Max = 20
	config.Metadata.Retry.Backoff = 250 * time.Millisecond
	return config
}

func saramaCreateTopic(t *testing.T, prefix string, partitions int32) string {
	t.Helper()
	admin, err := sarama.NewClusterAdmin(bootstrap(t), saramaConfig())
	if err != nil {
		t.Fatalf("cluster admin: %v", err)
	}
	defer admin.Close()
	name := uniqueName(prefix)
	if err := admin.CreateTopic(name, &sarama.TopicDetail{NumPartitions: partitions, ReplicationFactor: 1}, false); err != nil {
		t.Fatalf("create topic %s: %v", name, err)
	}
	// Creating it again is refused with Kafka's error.
	err = admin.CreateTopic(name, &sarama.TopicDetail{NumPartitions: partitions, ReplicationFactor: 1}, false)
	if topicErr, ok := err.(*sarama.TopicError); !ok || topicErr.Err != sarama.ErrTopicAlreadyExists {
		t.Fatalf("creating %s twice: got %v, want %v", name, err, sarama.ErrTopicAlreadyExists)
	}
	return name
}

// An idempotent sync producer with every codec: each record is acknowledged at the next offset of
// its partition, and a partition consumer reads back keys, values and headers byte for byte.
func TestSaramaSyncProducerEveryCodec(t *testing.T) {
	codecs := map[string]sarama.CompressionCodec{
		"none": sarama.CompressionNone, "gzip": sarama.CompressionGZIP, "snappy": sarama.CompressionSnappy,
		"lz4": sarama.CompressionLZ4, "zstd": sarama.CompressionZSTD,
	}
	for name, codec := range codecs {
		t.Run(name, func(t *testing.T) {
			topic := saramaCreateTopic(t, "sarama-"+name, 1)
			config := saramaConfig()
			config.Producer.Return.Successes = true
			config.Producer.RequiredAcks = sarama.WaitForAll
			config.Producer.Idempotent = true
			config.Net.MaxOpenRequests = 1
			config.Producer.Compression = codec
			producer, err := sarama.NewSyncProducer(bootstrap(t), config)
			if err != nil {
				t.Fatalf("producer: %v", err)
			}
			defer producer.Close()

			var want []sent
			for i := 0; i < 50; i++ {
				record := sent{key: fmt.Sprintf("key-%d", i), value: fmt.Sprintf("value %d %s", i, name), headers: map[string]string{"n": fmt.Sprint(i)}}
				want = append(want, record)
				partition, offset, err := producer.SendMessage(&sarama.ProducerMessage{
					Topic: topic, Key: sarama.StringEncoder(record.key), Value: sarama.StringEncoder(record.value),
					Headers: []sarama.RecordHeader{{Key: []byte("n"), Value: []byte(record.headers["n"])}},
				})
				if err != nil || partition != 0 || offset != int64(i) {
					t.Fatalf("record %d: partition %d offset %d err %v, want partition 0 offset %d", i, partition, offset, err, i)
				}
			}
			// A batch sent in one request also lands in order.
			batch := make([]*sarama.ProducerMessage, 20)
			for i := range batch {
				record := sent{key: fmt.Sprintf("batch-%d", i), value: fmt.Sprintf("batched %d", i), headers: map[string]string{}}
				want = append(want, record)
				batch[i] = &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(record.key), Value: sarama.StringEncoder(record.value)}
			}
			if err := producer.SendMessages(batch); err != nil {
				t.Fatalf("send messages: %v", err)
			}

			consumer, err := sarama.NewConsumer(bootstrap(t), saramaConfig())
			if err != nil {
				t.Fatalf("consumer: %v", err)
			}
			defer consumer.Close()
			partition, err := consumer.ConsumePartition(topic, 0, sarama.OffsetOldest)
			if err != nil {
				t.Fatalf("consume partition: %v", err)
			}
			defer partition.Close()
			for i, expected := range want {
				select {
				case message := <-partition.Messages():
					headers := map[string]string{}
					for _, header := range message.Headers {
						headers[string(header.Key)] = string(header.Value)
					}
					if message.Offset != int64(i) || string(message.Key) != expected.key || string(message.Value) != expected.value || fmt.Sprint(headers) != fmt.Sprint(expected.headers) {
						t.Fatalf("offset %d: got %d %q %q %v, want %q %q %v", i, message.Offset, message.Key, message.Value, headers, expected.key, expected.value, expected.headers)
					}
				case err := <-partition.Errors():
					t.Fatalf("consumer error: %v", err)
				case <-time.After(30 * time.Second):
					t.Fatalf("record %d did not arrive within 30 s", i)
				}
			}
		})
	}
}

type groupHandler struct {
	mu       sync.Mutex
	seen     map[string]int
	sessions int
}

func (h *groupHandler) Setup(sarama.ConsumerGroupSession) error {
	h.mu.Lock()
	h.sessions++
	h.mu.Unlock()
	return nil
}

func (h *groupHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (h *groupHandler) ConsumeClaim(session sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for message := range claim.Messages() {
		h.mu.Lock()
		h.seen[string(message.Value)]++
		h.mu.Unlock()
		session.MarkMessage(message, "")
	}
	return nil
}

func (h *groupHandler) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.seen)
}

// An async producer feeds a six-partition topic while two consumer-group members share it with
// each of sarama's balance strategies: every record is consumed, and the committed offsets reach
// each partition's end.
func TestSaramaAsyncProducerAndConsumerGroup(t *testing.T) {
	strategies := map[string]sarama.BalanceStrategy{
		"range": sarama.NewBalanceStrategyRange(), "roundrobin": sarama.NewBalanceStrategyRoundRobin(),
		"sticky": sarama.NewBalanceStrategySticky(), "cooperative-sticky": sarama.NewBalanceStrategyCooperativeSticky(),
	}
	for name, strategy := range strategies {
		t.Run(name, func(t *testing.T) {
			topic := saramaCreateTopic(t, "sarama-group", 6)
			group := uniqueName("sarama-" + name)
			const records = 600

			config := saramaConfig()
			config.Producer.Return.Successes = true
			config.Producer.Flush.Frequency = 5 * time.Millisecond
			producer, err := sarama.NewAsyncProducer(bootstrap(t), config)
			if err != nil {
				t.Fatalf("async producer: %v", err)
			}
			go func() {
				for i := 0; i < records; i++ {
					producer.Input() <- &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(fmt.Sprint(i)), Value: sarama.StringEncoder(fmt.Sprintf("record-%d", i))}
				}
			}()
			for acknowledged := 0; acknowledged < records; {
				select {
				case <-producer.Successes():
					acknowledged++
				case err := <-producer.Errors():
					t.Fatalf("async produce: %v", err)
				case <-time.After(30 * time.Second):
					t.Fatalf("%d of %d records acknowledged within 30 s", acknowledged, records)
				}
			}
			if err := producer.Close(); err != nil {
				t.Fatalf("closing the producer: %v", err)
			}

			consumerConfig := saramaConfig()
			consumerConfig.Consumer.Offsets.Initial = sarama.OffsetOldest
			consumerConfig.Consumer.Offsets.AutoCommit.Interval = 100 * time.Millisecond
			consumerConfig.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{strategy}
			handler := &groupHandler{seen: map[string]int{}}
			ctx, cancel := context.WithCancel(context.Background())
			var members sync.WaitGroup
			for member := 0; member < 2; member++ {
				consumerGroup, err := sarama.NewConsumerGroup(bootstrap(t), group, consumerConfig)
				if err != nil {
					t.Fatalf("consumer group: %v", err)
				}
				members.Add(1)
				go func() {
					defer members.Done()
					defer consumerGroup.Close()
					for ctx.Err() == nil {
						if err := consumerGroup.Consume(ctx, []string{topic}, handler); err != nil && ctx.Err() == nil {
							t.Errorf("consume: %v", err)
							return
						}
					}
				}()
			}
			waitFor(t, 60*time.Second, "every record consumed by the group", func() bool { return handler.count() == records })

			admin, err := sarama.NewClusterAdmin(bootstrap(t), saramaConfig())
			if err != nil {
				t.Fatalf("cluster admin: %v", err)
			}
			defer admin.Close()
			waitFor(t, 30*time.Second, "the group's offsets committed at each partition's end", func() bool {
				offsets, err := admin.ListConsumerGroupOffsets(group, map[string][]int32{topic: {0, 1, 2, 3, 4, 5}})
				if err != nil {
					return false
				}
				var committed int64
				for _, block := range offsets.Blocks[topic] {
					committed += block.Offset
				}
				return committed == records
			})
			cancel()
			members.Wait()

			groups, err := admin.DescribeConsumerGroups([]string{group})
			if err != nil || len(groups) != 1 || groups[0].ProtocolType != "consumer" {
				t.Fatalf("describe group: %v %+v", err, groups)
			}
		})
	}
}
