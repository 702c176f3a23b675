#!/usr/bin/env bash
# Runs every korvet test: Rust unit and contract tests (against a real redis-server they start),
# a short fuzzing run, then the real-client suites against a running korvet on a real Redis.
# Expects the tools that .ci/run installs.
set -euo pipefail
cd "$(dirname "$0")/.."
suites=0
started=$SECONDS
# Prints how long the suite that just ran took, and the total so far.
took() { echo "-- $1 took $((SECONDS - mark)) s (total $((SECONDS - started)) s)"; mark=$SECONDS; }
mark=$SECONDS

echo "== building"
cargo build --workspace --all-targets --quiet
took building

echo "== cargo test"
cargo test --workspace
suites=$((suites + 1))
took "cargo test"

echo "== fuzzing the request path, record batches and the TLS handshake (short runs)"
# cargo-fuzz wants a nightly compiler for sanitizer flags; RUSTC_BOOTSTRAP lets the stable
# toolchain build libFuzzer targets without a sanitizer.
# The request target starts from fuzz/seeds/request: one valid frame per API and version
# (regenerate with KORVET_WRITE_FUZZ_SEEDS=$PWD/fuzz/seeds/request cargo test -p korvet-core
# --test broker); new inputs go to the ignored fuzz/corpus.
for target in request record_batch tls; do
  mkdir -p "fuzz/corpus/$target"
  seeds=()
  [ -d "fuzz/seeds/$target" ] && seeds=("fuzz/seeds/$target")
  RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" --sanitizer none "fuzz/corpus/$target" "${seeds[@]}" -- \
    -max_total_time="${KORVET_FUZZ_SECONDS:-30}" -rss_limit_mb=4096 2>&1 | tail -n 1
done
suites=$((suites + 1))
took fuzzing

echo "== real-client suite on tokio (confluent-kafka, kafka-python, aiokafka, kcat, kafkajs, rdkafka)"
(cd conformance/clients && python3 -m pytest -q -p no:warnings)
suites=$((suites + 1))
took "client suite on tokio"

echo "== the same real-client suite on smol"
(cd conformance/clients && KORVET_RUNTIME=smol python3 -m pytest -q -p no:warnings)
suites=$((suites + 1))
took "client suite on smol"

echo "== the real-client suite's cluster subset on a Redis Cluster (3 masters, a replica each)"
# Produce/fetch with every client, topic admin, groups, commits, multi-broker, bounded topics and
# management, with korvet given one node of the cluster; tests marked standalone_redis skip.
(cd conformance/clients && KORVET_TEST_REDIS=cluster python3 -m pytest -q -p no:warnings test_roundtrip.py \
  test_topics_admin.py test_committed_offsets.py test_consumer_groups.py test_cluster.py test_bounded_topics.py test_management.py \
  test_transactions.py)
suites=$((suites + 1))
took "cluster subset"

echo "== kafka-python's own integration tests against korvet"
python3 conformance/peer/run_kafka_python.py -p no:warnings
suites=$((suites + 1))
took "kafka-python's suite"

echo "== Java suite: the Java client 4.4.0, Kafka's command-line tools, Streams, Connect (conformance/java)"
python3 conformance/java/run.py
suites=$((suites + 1))
took "Java suite"

echo "== Java suite with the 3.9 client line (producer, consumer, groups, broker kill, Streams, Connect)"
python3 conformance/java/run.py --kafka-version 3.9.1
suites=$((suites + 1))
took "Java 3.9 client"

echo "== differential: the same Java suite against Apache Kafka 4.4.0 (one KRaft node from the Maven jars)"
# The assertions must hold for Kafka itself, so that they encode Kafka's behaviour, not korvet's.
python3 conformance/java/run.py --broker kafka
suites=$((suites + 1))
took "Java suite against Apache Kafka"

echo "== Go suite: sarama, kafka-go, franz-go, and franz-go's own pkg/kgo integration tests (conformance/go)"
python3 conformance/go/run.py
suites=$((suites + 1))
took "Go suite"

echo "== the Go suite again with every topic of the batch layout (served as stored, compressed as produced)"
python3 conformance/go/run.py --layout batch
suites=$((suites + 1))
took "Go suite on the batch layout"

echo "== differential: the Go clients' tests against Apache Kafka 4.4.0"
python3 conformance/go/run.py --broker kafka
suites=$((suites + 1))
took "Go suite against Apache Kafka"

echo "suites: $suites passed, 0 failed"
