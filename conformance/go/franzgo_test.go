package conformance

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// franz-go's admin client (kadm) and a cooperative-sticky group of two kgo consumers: topics
// created and described, every record of the idempotent producer consumed once, and the group's
// lag zero once its commits are in. franz-go's own integration tests (run.py runs them too) go
// much further; this one checks the admin answers they do not look at.
func TestFranzGoAdminAndCooperativeGroup(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	client, err := kgo.NewClient(kgo.SeedBrokers(bootstrap(t)...))
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	defer client.Close()
	admin := kadm.NewClient(client)

	topic := uniqueName("franz")
	created, err := admin.CreateTopic(ctx, 5, 1, map[string]*string{"retention.ms": kadm.StringPtr("3600000")}, topic)
	if err != nil || created.Err != nil {
		t.Fatalf("create topic: %v %v", err, created.Err)
	}
	if _, err := admin.CreateTopic(ctx, 5, 1, nil, topic); !errors.Is(err, kerr.TopicAlreadyExists) {
		t.Fatalf("creating %s twice: %v, want TOPIC_ALREADY_EXISTS", topic, err)
	}
	details, err := admin.ListTopics(ctx, topic)
	if err != nil || len(details[topic].Partitions) != 5 {
		t.Fatalf("list topics: %v %+v", err, details[topic])
	}
	configs, err := admin.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		t.Fatalf("describe configs: %v", err)
	}
	retention, err := configs.On(topic, nil)
	if err != nil {
		t.Fatalf("configs of %s: %v", topic, err)
	}
	found := false
	for _, config := range retention.Configs {
		if config.Key == "retention.ms" && config.Value != nil && *config.Value == "3600000" {
			found = true
		}
	}
	if !found {
		t.Fatalf("retention.ms=3600000 not among %v", retention.Configs)
	}

	const records = 500
	for i := 0; i < records; i++ {
		client.Produce(ctx, &kgo.Record{Topic: topic, Key: []byte(fmt.Sprint(i % 50)), Value: []byte(fmt.Sprintf("r%d", i))}, func(_ *kgo.Record, err error) {
			if err != nil {
				t.Errorf("produce: %v", err)
			}
		})
	}
	if err := client.Flush(ctx); err != nil {
		t.Fatalf("flush: %v", err)
	}

	group := uniqueName("franz-group")
	seen := make(chan string, records)
	var consumers []*kgo.Client
	for member := 0; member < 2; member++ {
		consumer, err := kgo.NewClient(kgo.SeedBrokers(bootstrap(t)...), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
			kgo.Balancers(kgo.CooperativeStickyBalancer()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
			kgo.AutoCommitInterval(100*time.Millisecond))
		if err != nil {
			t.Fatalf("consumer: %v", err)
		}
		consumers = append(consumers, consumer)
		go func() {
			for ctx.Err() == nil {
				fetches := consumer.PollFetches(ctx)
				if fetches.IsClientClosed() {
					return
				}
				fetches.EachRecord(func(record *kgo.Record) { seen <- string(record.Value) })
			}
		}()
	}
	values := map[string]bool{}
	for len(values) < records {
		select {
		case value := <-seen:
			values[value] = true
		case <-ctx.Done():
			t.Fatalf("%d of %d records consumed", len(values), records)
		}
	}
	waitFor(t, 30*time.Second, "the group's lag to reach zero", func() bool {
		lags, err := admin.Lag(ctx, group)
		if err != nil || lags[group].FetchErr != nil || lags[group].DescribeErr != nil {
			return false
		}
		return lags[group].Lag.Total() == 0 && len(lags[group].Lag[topic]) == 5
	})
	// Cooperative rebalancing takes a second round after the first assignment: wait for its end.
	waitFor(t, 30*time.Second, "the group to be Stable with both members", func() bool {
		described, err := admin.DescribeGroups(ctx, group)
		return err == nil && described[group].State == "Stable" && len(described[group].Members) == 2
	})
	for _, consumer := range consumers {
		consumer.Close()
	}
	if _, err := admin.DeleteTopics(ctx, topic); err != nil {
		t.Fatalf("delete topic: %v", err)
	}
}
