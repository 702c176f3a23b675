#!/usr/bin/env bash
# Runs every korvet test: Rust unit and contract tests (against a real redis-server they start),
# then the real-client suites against a running korvet on a real Redis. Expects the tools that
# .ci/run installs.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== building"
cargo build --workspace --all-targets --quiet

echo "== cargo test"
cargo test --workspace

echo "== real-client suite (confluent-kafka, kafka-python, aiokafka, kcat, kafkajs, rdkafka)"
(cd conformance/clients && python3 -m pytest -q -p no:warnings)
