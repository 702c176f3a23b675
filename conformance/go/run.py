#!/usr/bin/env python3
"""Runs the Go clients against a broker it starts: this module's tests (sarama, kafka-go,
franz-go's kadm) and franz-go's own pkg/kgo integration tests.

    python3 conformance/go/run.py                  # korvet on a fresh redis-server
    python3 conformance/go/run.py --broker kafka   # this module's tests against Apache Kafka
    python3 conformance/go/run.py --no-kgo         # without franz-go's suite

The modules come from the Go module proxy into the module cache (nothing is committed).
franz-go's tests run from its module (the version go.mod requires) with KGO_SEEDS and
KGO_TEST_RF=1; the tests left out are listed in KGO_SKIPPED with the reason. Every wait is
bounded; the exit status is non-zero if any test failed."""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "clients"))
sys.path.insert(0, os.path.join(HERE, "..", "java"))
import harness  # noqa: E402

# franz-go's integration tests that cannot pass on korvet, each with the reason. All three pass
# against Apache Kafka 4.4.0 (KGO_SEEDS pointed at the node conformance/java/run.py starts).
KGO_SKIPPED = {
    "TestConsumeRegex": "expects Kafka's internal __consumer_offsets topic in Metadata; korvet keeps "
                        "committed offsets in Redis hashes and has no such topic (its regex part passes)",
    "TestConsumeMaxDecompressBatchBytes": "expects fetched batches compressed as produced; korvet's record "
                                          "layout serves them uncompressed, so there is nothing to limit",
    "TestPooling": "checks that the decompression buffer pool is used; korvet serves fetches uncompressed",
}
# On batch-layout topics korvet serves batches compressed as they were produced, so the tests of
# decompression run there.
KGO_SKIPPED_ON_BATCH_LAYOUT = {test: reason for test, reason in KGO_SKIPPED.items() if test == "TestConsumeRegex"}
SCRAM_USER, SCRAM_PASSWORD = "kgo", "kgo-secret"


def go_test(args, env, timeout):
    """Runs `go test -v` into a log file and returns (exit code, {test: PASS|FAIL|SKIP}, log path).
    Prints each top-level test that failed or was skipped as it ends, and the end of the log if the
    run failed."""
    log_path = tempfile.mktemp(prefix="korvet-go-test-", suffix=".log")
    results = {}
    with open(log_path, "w") as log:
        proc = subprocess.Popen(["go", "test", "-count=1", "-v", *args], cwd=HERE, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            for line in proc.stdout:
                log.write(line)
                outcome = re.match(r"^--- (PASS|FAIL|SKIP): (\S+)", line)
                if outcome:
                    results[outcome.group(2)] = outcome.group(1)
                if (outcome and outcome.group(1) != "PASS") or line.startswith(("FAIL", "ok", "panic")):
                    sys.stdout.write(line)
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = -1
    if code != 0:
        with open(log_path) as log:
            print("".join(log.readlines()[-150:]))
        print(f"the whole output: {log_path}")
    return code, results


def report(name, code, results, started_at):
    counts = {kind: sum(1 for outcome in results.values() if outcome == kind) for kind in ("PASS", "FAIL", "SKIP")}
    print(f"{name}: {counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped by the suite itself, "
          f"exit {code}, {time.monotonic() - started_at:.0f} s")
    for test, outcome in sorted(results.items()):
        if outcome == "FAIL" and "/" not in test:
            print(f"  FAILED {test}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--broker", choices=["korvet", "kafka"], default="korvet")
    parser.add_argument("--no-kgo", action="store_true", help="leave out franz-go's own integration tests")
    parser.add_argument("--layout", choices=["record", "batch"], default="record",
                        help="korvet's layout for the topics the tests create (KORVET_SERVER_DEFAULT_TOPIC_LAYOUT)")
    args = parser.parse_args()
    env = dict(os.environ)
    started = []
    failed = False
    try:
        if args.broker == "kafka":
            import run as java_run  # conformance/java/run.py: Apache Kafka from the Maven jars
            kafka = java_run.ApacheKafka(java_run.classpath("4.4.0"))
            started.append(kafka)
            env["KORVET_BOOTSTRAP"] = f"127.0.0.1:{kafka.port}"
        else:
            redis = harness.Redis()
            started.append(redis)
            sasl_port = harness.free_port()
            broker = harness.Korvet(redis.uri, extra_env={
                # Configured as the Apache Kafka node of the differential runs is.
                "KORVET_SERVER_REBALANCE_DELAY": "0s",
                "KORVET_SERVER_LISTENERS": f"SASL_PLAINTEXT://127.0.0.1:{sasl_port}",
                "KORVET_SERVER_DEFAULT_TOPIC_LAYOUT": args.layout,
            })
            started.append(broker)
            harness.wait_for(broker.ready, 30, "korvet readiness")
            env["KORVET_BOOTSTRAP"] = f"127.0.0.1:{broker.port}"
            subprocess.run([harness.KORVET_BIN, "users", "set", SCRAM_USER, "--password", SCRAM_PASSWORD,
                            "--bootstrap-server", env["KORVET_BOOTSTRAP"]], check=True, timeout=60, capture_output=True)
            env["KGO_TEST_SCRAM_SEEDS"] = f"127.0.0.1:{sasl_port}"

        started_at = time.monotonic()
        code, results = go_test(["-timeout", "10m", "./..."], env, timeout=660)
        on = f"{args.broker} ({args.layout} layout)" if args.broker == "korvet" else args.broker
        report(f"Go clients (sarama, kafka-go, franz-go) against {on}", code, results, started_at)
        failed |= code != 0

        if args.broker == "korvet" and not args.no_kgo:
            kgo_env = dict(env, KGO_SEEDS=env["KORVET_BOOTSTRAP"], KGO_TEST_RF="1", KGO_TEST_RECORDS="20000",
                           KGO_LOG_LEVEL="none", KGO_TEST_SCRAM=f"{SCRAM_USER}:{SCRAM_PASSWORD}:512")
            skipped = KGO_SKIPPED_ON_BATCH_LAYOUT if args.layout == "batch" else KGO_SKIPPED
            skip = "^(" + "|".join(skipped) + ")$"
            started_at = time.monotonic()
            code, results = go_test(["-timeout", "10m", "-skip", skip, "github.com/twmb/franz-go/pkg/kgo"], kgo_env, timeout=660)
            report(f"franz-go's pkg/kgo integration tests against {on}", code, results, started_at)
            print("  left out on korvet:")
            for test, reason in skipped.items():
                print(f"    {test}: {reason}")
            failed |= code != 0
        if failed and args.broker == "korvet":
            print(f"korvet's log: {started[1].log_path}")
        return 1 if failed else 0
    finally:
        for part in reversed(started):
            part.close() if hasattr(part, "close") else part.stop()


if __name__ == "__main__":
    sys.exit(main())
