"""Operating korvet: settings from file, environment and flags with their precedence and their
rejection messages; a refused Redis password is reported without it; SIGTERM under load loses no
acknowledged record; a second signal exits at once."""
import os
import signal
import subprocess
import tempfile
import threading
import time

from confluent_kafka import Consumer, Producer

from harness import KORVET_BIN, Korvet, free_port, port_open, wait_for
import kafka_wire
from test_management import get, metric


def korvet_serve(*args, env=None, timeout=20):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("KORVET_")}
    full_env.update(env or {})
    return subprocess.run([KORVET_BIN, "serve", *args], env=full_env, capture_output=True, text=True, timeout=timeout)


def config_file(text):
    f = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
    f.write(text)
    f.close()
    return f.name


def test_flag_beats_env_beats_file_beats_default():
    path = config_file("korvet:\n  server:\n    port: 9100\n    keyspace: from-file\n    broker-id: 7\n"
                       "    rebalance-delay: 750ms\n  redis:\n    password: hunter2\n")
    printed = korvet_serve("--config", path, "--print-config", "--port", "9300",
                           env={"KORVET_SERVER_PORT": "9200", "KORVET_SERVER_KEYSPACE": "from-env"})
    assert printed.returncode == 0, printed.stderr
    out = printed.stdout
    assert "port: 9300  # flag --port" in out
    assert "keyspace: from-env  # environment variable KORVET_SERVER_KEYSPACE" in out
    assert "broker-id: 7  # config file key korvet.server.broker-id" in out
    assert "rebalance-delay: 750ms  # config file" in out
    assert "host: 0.0.0.0  # default" in out
    assert "hunter2" not in out and 'password: "*****"' in out
    # KORVET_CONFIG names the file too.
    via_env = korvet_serve("--print-config", env={"KORVET_CONFIG": path})
    assert "broker-id: 7" in via_env.stdout


def test_print_config_without_redis_gives_a_file_serve_accepts_and_validates_as_serve_does():
    printed = korvet_serve("--print-config", "--log-retention-ms", "60000")
    assert printed.returncode == 0, printed.stderr
    assert "# uri: (not set)" in printed.stdout and "log-retention-ms: 60000" in printed.stdout
    again = korvet_serve("--config", config_file(printed.stdout), "--print-config")
    assert again.returncode == 0, again.stderr
    assert "log-retention-ms: 60000  # config file" in again.stdout
    # Settings that are valid one by one but not together are refused as serve refuses them.
    related = korvet_serve("--print-config", env={"KORVET_REGISTRY_TTL": "1s", "KORVET_REGISTRY_HEARTBEAT_INTERVAL": "10s"})
    assert related.returncode == 2 and "korvet.registry.ttl" in related.stderr
    bad_level = korvet_serve("--print-config", env={"KORVET_LOG_LEVEL": "info,=="})
    assert bad_level.returncode == 2 and "korvet.log.level" in bad_level.stderr


def test_a_broker_started_from_a_file_listens_where_the_file_says():
    port, management = free_port(), free_port()
    path = config_file(f"korvet:\n  server:\n    host: 127.0.0.1\n    port: {port}\n  management:\n    port: {management}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KORVET_")}
    proc = subprocess.Popen([KORVET_BIN, "serve", "--config", path], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: port_open(port) and port_open(management), 30, "korvet on the ports from its file")
    finally:
        proc.terminate()
        assert proc.wait(20) == 0


def test_bad_settings_are_refused_at_start_with_what_is_allowed():
    unknown = korvet_serve("--config", config_file("korvet:\n  server:\n    brokerid: 1\n"))
    assert unknown.returncode == 2
    assert '"korvet.server.brokerid"' in unknown.stderr and "korvet.server.broker-id" in unknown.stderr
    bad_env = korvet_serve(env={"KORVET_SERVER_PORT": "seventy"})
    assert bad_env.returncode == 2
    assert bad_env.stderr.strip() == ('korvet: invalid value "seventy" for korvet.server.port (from environment variable '
                                      'KORVET_SERVER_PORT): expected a port number from 1 to 65535')
    bad_duration = korvet_serve("--rebalance-delay", "soon")
    assert "--rebalance-delay" in bad_duration.stderr and "500ms" in bad_duration.stderr
    not_yaml = korvet_serve("--config", config_file("korvet: [unclosed\n"))
    assert not_yaml.returncode == 2 and "not valid YAML" in not_yaml.stderr
    missing = korvet_serve("--config", "/nonexistent/korvet.yaml")
    assert missing.returncode == 2 and "/nonexistent/korvet.yaml" in missing.stderr


def test_a_wrong_redis_password_is_reported_without_the_password():
    """A Redis that refuses korvet's password: korvet says so and keeps trying (a rotated secret
    may be mounted meanwhile), stays not ready, and no log line shows either password."""
    from harness import Redis
    server = Redis(["--requirepass", "right-pass-123"])
    broker = None
    try:
        management = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("KORVET_")}
        env.update({"KORVET_REDIS_URI": f"redis://:wrong-pass-456@127.0.0.1:{server.port}", "KORVET_SERVER_PORT": str(free_port()),
                    "KORVET_MANAGEMENT_PORT": str(management)})
        log = tempfile.NamedTemporaryFile(suffix=".log", delete=False)
        broker = subprocess.Popen([KORVET_BIN, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
        logs = lambda: open(log.name, errors="replace").read()
        wait_for(lambda: logs().count("authentication failed") >= 2, 20, "korvet to report the refused password twice")
        assert broker.poll() is None, "korvet keeps trying"
        from types import SimpleNamespace
        assert get(SimpleNamespace(management_port=management), "/actuator/health/readiness")[0] == 503
        assert "wrong-pass-456" not in logs() and "right-pass-123" not in logs()
        assert "redis://***@127.0.0.1" in logs()
    finally:
        if broker:
            broker.kill()
            broker.wait(10)
        server.close()


def test_sigterm_under_load_loses_no_acknowledged_record(redis):
    broker = Korvet(redis_uri=redis.uri, keyspace=f"sigterm{time.monotonic_ns()}")
    acked, errors = [], []
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "enable.idempotence": True,
                         "linger.ms": 2, "message.timeout.ms": 120000})

    def on_delivery(err, msg):
        (errors.append(err) if err else acked.append(int(msg.value())))

    stop = threading.Event()

    def produce():
        i = 0
        while not stop.is_set():
            try:
                producer.produce("drained", value=b"%d" % i, partition=0, on_delivery=on_delivery)
                i += 1
            except BufferError:
                pass
            producer.poll(0.001)

    thread = threading.Thread(target=produce, daemon=True)
    try:
        thread.start()
        wait_for(lambda: len(acked) > 2000, 60, "records to be acknowledged")
        broker.proc.send_signal(signal.SIGTERM)
        assert broker.proc.wait(30) == 0, "a drained broker exits 0"
        assert "shutting down" in broker.logs()
        acked_while_running = len(acked)
        broker.start()  # same port, same keyspace: the producer reconnects and retries
        wait_for(lambda: len(acked) > acked_while_running + 1000, 60, "producing to resume after the restart")
        stop.set()
        thread.join(30)
        assert producer.flush(120) == 0
        assert not errors, errors[:3]
        consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "check", "auto.offset.reset": "earliest",
                             "enable.auto.commit": False})
        consumer.subscribe(["drained"])
        seen = []
        deadline = time.monotonic() + 90
        while len(seen) < len(acked) and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                seen.append(int(msg.value()))
        consumer.close()
        assert set(acked) <= set(seen), f"{len(set(acked) - set(seen))} acknowledged records lost"
        assert len(seen) == len(set(seen)), "the idempotent producer's retries were not written twice"
    finally:
        stop.set()
        broker.stop()


def test_a_second_signal_exits_at_once(redis):
    broker = Korvet(redis_uri=redis.uri, keyspace=f"second-signal{time.monotonic_ns()}",
                    extra_env={"KORVET_SERVER_SHUTDOWN_TIMEOUT": "60s"})
    try:
        producer = Producer({"bootstrap.servers": broker.bootstrap})
        producer.produce("idle", value=b"x")
        assert producer.flush(30) == 0
        # A long poll at the end of the log is a request in flight, which the drain waits for.
        poll = threading.Thread(target=lambda: _fetch_ignoring_errors(broker.bootstrap), daemon=True)
        poll.start()

        def parked():
            text = get(broker, "/actuator/prometheus")[1]
            # Received, and not answered yet.
            return metric(text, "korvet_fetch_requests_total") == 1 and \
                'korvet_request_duration_seconds_count{api="Fetch"} 0' in text
        wait_for(parked, 10, "the long poll to be parked")
        broker.proc.send_signal(signal.SIGTERM)
        wait_for(lambda: "shutting down: finishing 1 in-flight requests" in broker.logs(), 10, "the drain to start")
        started = time.monotonic()
        broker.proc.send_signal(signal.SIGTERM)
        assert broker.proc.wait(10) == 130
        assert time.monotonic() - started < 5
        assert "second signal" in broker.logs()
    finally:
        broker.stop()


def _fetch_ignoring_errors(bootstrap):
    try:
        kafka_wire.fetch(bootstrap, "idle", 0, 1, 30_000, 40)
    except (OSError, ConnectionError):
        pass
