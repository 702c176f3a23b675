"""The management HTTP server: health endpoints and Prometheus metrics."""
import os
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from kafka import KafkaProducer

from harness import KORVET_BIN, Korvet, wait_for


def get(broker, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{broker.management_port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def metric(text, name):
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def test_health_and_metrics(korvet):
    assert get(korvet, "/actuator/health/liveness") == (200, '{"status":"UP"}')
    wait_for(lambda: get(korvet, "/actuator/health/readiness")[0] == 200, 30, "readiness")
    assert get(korvet, "/nope")[0] == 404
    before = metric(get(korvet, "/actuator/prometheus")[1], "korvet_produce_requests_total") or 0
    producer = KafkaProducer(bootstrap_servers=korvet.bootstrap)
    producer.send("metered", b"x").get(timeout=30)
    producer.close()
    wait_for(lambda: (metric(get(korvet, "/actuator/prometheus")[1], "korvet_produce_requests_total") or 0) > before,
             30, "korvet_produce_requests_total to grow")
    # The request is counted on arrival, its records once stored: a snapshot may fall between.
    wait_for(lambda: 'korvet_records_in_total{topic="metered"} 1' in get(korvet, "/actuator/prometheus")[1],
             30, "the produced record to be counted")
    text = get(korvet, "/actuator/prometheus")[1]
    assert metric(text, "korvet_active_connections") is not None


@pytest.mark.standalone_redis
def test_readiness_follows_redis(redis):
    broker = Korvet(redis_uri=redis.uri, keyspace="ready")
    try:
        wait_for(lambda: get(broker, "/actuator/health/readiness")[0] == 200, 30, "ready")
        redis.stop()
        wait_for(lambda: get(broker, "/actuator/health/readiness")[0] == 503, 30, "not ready without Redis")
        assert get(broker, "/actuator/health/liveness")[0] == 200, "alive all the same"
        redis.start()
        wait_for(lambda: get(broker, "/actuator/health/readiness")[0] == 200, 60, "ready again")
    finally:
        if redis.proc.poll() is not None:
            redis.start()
        broker.stop()


def test_every_metric_family_moves_with_traffic(redis):
    from confluent_kafka import Consumer, Producer
    broker = Korvet(redis_uri=redis.uri, keyspace="metrics-families")
    try:
        producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
        for i in range(10):
            producer.produce("lagging", value=b"%d" % i)
        assert producer.flush(30) == 0
        consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "slow", "auto.offset.reset": "earliest",
                             "enable.auto.commit": False})
        consumer.subscribe(["lagging"])
        msg = None
        deadline = time.monotonic() + 30
        while msg is None and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
        assert msg is not None and not msg.error()
        consumer.commit(message=msg, asynchronous=False)  # committed offset 1 of 10: lag 9

        def lag_reported():
            text = get(broker, "/actuator/prometheus")[1]
            return 'korvet_consumer_lag{group="slow",partition="0",topic="lagging"} 9' in text
        wait_for(lag_reported, 30, "consumer lag in the metrics")
        text = get(broker, "/actuator/prometheus")[1]
        for line in [
            'korvet_request_duration_seconds_count{api="Produce"}',
            'korvet_request_duration_seconds_bucket{api="Fetch",le="+Inf"}',
            'korvet_storage_command_duration_seconds_count{command="Append"}',
            'korvet_records_out_total{topic="lagging"}',
            'korvet_consumer_groups{state="Stable"} 1',
            'korvet_live_brokers 1',
        ]:
            assert line in text, f"{line} missing from\n{text}"
        consumer.close()
    finally:
        broker.stop()


def test_basic_authentication_guards_everything_but_the_health_probes(redis):
    """With KORVET_MANAGEMENT_USERNAME and _PASSWORD, metrics need the credentials (401 with a
    Basic challenge otherwise; failures counted and logged at most every 10 s); the probes
    Kubernetes calls stay open; the password is never printed."""
    import base64
    broker = Korvet(redis_uri=redis.uri, keyspace="management-auth",
                    extra_env={"KORVET_MANAGEMENT_USERNAME": "ops", "KORVET_MANAGEMENT_PASSWORD": "hunter2-s3cret"})
    try:
        url = f"http://127.0.0.1:{broker.management_port}"
        for path in ["/actuator/health", "/actuator/health/liveness", "/actuator/health/readiness"]:
            # Served without credentials (UP or, for a moment under load, DOWN; never 401).
            status, body = get(broker, path)
            assert status in (200, 503) and '"status"' in body, (path, status, body)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{url}/actuator/prometheus", timeout=5)
        assert refused.value.code == 401
        assert refused.value.headers["WWW-Authenticate"].startswith('Basic realm="korvet"')

        def with_login(user, password):
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            request = urllib.request.Request(f"{url}/actuator/prometheus", headers={"Authorization": f"Basic {token}"})
            try:
                with urllib.request.urlopen(request, timeout=5) as answer:
                    return answer.status, answer.read().decode()
            except urllib.error.HTTPError as e:
                return e.code, ""

        assert with_login("ops", "wrong")[0] == 401
        status, text = with_login("ops", "hunter2-s3cret")
        assert status == 200 and "korvet_" in text
        assert metric(text, 'korvet_authentication_failures_total{mechanism="http-basic"}') == 2
        wait_for(lambda: "management request from 127.0.0.1" in broker.logs(), 10, "the refusal in the log")
        refusals = [line for line in broker.logs().splitlines() if "management request from" in line]
        assert len(refusals) == 1 and "no credentials" in refusals[0], refusals
        assert "hunter2" not in broker.logs()
        env = {**os.environ, "KORVET_MANAGEMENT_USERNAME": "ops", "KORVET_MANAGEMENT_PASSWORD": "hunter2-s3cret"}
        printed = subprocess.run([KORVET_BIN, "serve", "--print-config"], env=env, capture_output=True, text=True, timeout=30)
        assert printed.returncode == 0 and "hunter2" not in printed.stdout and 'password: "*****"' in printed.stdout
        env.pop("KORVET_MANAGEMENT_PASSWORD")
        alone = subprocess.run([KORVET_BIN, "serve", "--print-config"], env=env, capture_output=True, text=True, timeout=30)
        assert alone.returncode == 2 and "go together" in alone.stderr
    finally:
        broker.stop()
