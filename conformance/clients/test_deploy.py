"""The Docker Compose file and Kubernetes manifests in deploy/ parse, use only settings korvet
knows, point their probes at korvet's health endpoints, and the StatefulSet's broker-id init step
writes a config file that a real korvet accepts and serves with."""
import glob
import os
import re
import subprocess
import tempfile
import urllib.request

import yaml

from harness import KORVET_BIN, ROOT, free_port, port_open, wait_for

DEPLOY = os.path.join(ROOT, "deploy")
HEALTH_PATHS = {"/actuator/health", "/actuator/health/liveness", "/actuator/health/readiness"}
MANAGEMENT_PORT = 8080  # korvet's default, which the manifests rely on


def known_env_vars():
    help_text = subprocess.run([KORVET_BIN, "serve", "--help"], capture_output=True, text=True, check=True).stdout
    return set(re.findall(r"\[env: (KORVET_[A-Z_]+)=", help_text))


def manifests():
    docs = []
    for path in sorted(glob.glob(os.path.join(DEPLOY, "kubernetes", "*.yaml"))):
        with open(path) as f:
            docs.extend((os.path.basename(path), d) for d in yaml.safe_load_all(f) if d)
    return docs


def korvet_containers(doc):
    spec = doc.get("spec", {}).get("template", {}).get("spec", {})
    return [c for c in spec.get("containers", []) if c["name"] == "korvet"]


def statefulset():
    return next(d for _, d in manifests() if d["kind"] == "StatefulSet")


def configmap():
    return next(d for _, d in manifests() if d["kind"] == "ConfigMap")


def test_every_manifest_parses_and_names_only_known_settings():
    known = known_env_vars()
    assert {"KORVET_SERVER_BROKER_ID", "KORVET_REDIS_URI", "KORVET_CONFIG"} <= known
    kinds = {d["kind"] for _, d in manifests()}
    assert {"ConfigMap", "Service", "StatefulSet", "Deployment", "PodDisruptionBudget"} <= kinds
    for name, doc in manifests():
        if doc["kind"] == "ConfigMap":
            assert set(doc["data"]) <= known, f"{name}: unknown settings {set(doc['data']) - known}"
        for container in korvet_containers(doc):
            env = {e["name"] for e in container.get("env", []) if e["name"].startswith("KORVET_")}
            assert env <= known, f"{name}: unknown settings {env - known}"
            assert container["args"][0] == "serve"
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                if probe in container:
                    get = container[probe]["httpGet"]
                    assert get["path"] in HEALTH_PATHS and get["port"] == MANAGEMENT_PORT, f"{name} {probe}"
            assert "readinessProbe" in container and "livenessProbe" in container


def test_the_compose_file_is_the_guides_three_brokers():
    known = known_env_vars()
    with open(os.path.join(DEPLOY, "docker-compose.yml")) as f:
        compose = yaml.safe_load(f)
    brokers = {name: s for name, s in compose["services"].items() if name.startswith("korvet")}
    assert len(brokers) == 3
    ids = set()
    for name, service in brokers.items():
        env = service["environment"]
        assert set(env) <= known, f"{name}: unknown settings {set(env) - known}"
        ids.add(env["KORVET_SERVER_BROKER_ID"])
        assert env["KORVET_REDIS_URI"] == "redis://redis:6379"
    assert ids == {0, 1, 2}


def test_the_dockerfile_runs_korvet_as_a_non_root_user():
    with open(os.path.join(ROOT, "Dockerfile")) as f:
        dockerfile = f.read()
    assert re.search(r"^USER 65532", dockerfile, re.M)
    assert 'ENTRYPOINT ["/korvet"]' in dockerfile and 'CMD ["serve"]' in dockerfile


def run_init_step(config_dir, hostname, namespace):
    init = statefulset()["spec"]["template"]["spec"]["initContainers"][0]
    script = init["command"][2].replace("/config/", config_dir + "/")
    subprocess.run(["sh", "-c", script], env={"HOSTNAME": hostname, "NAMESPACE": namespace, "PATH": os.environ["PATH"]},
                   check=True, capture_output=True)
    return os.path.join(config_dir, "broker.yaml")


def test_the_init_step_gives_each_pod_its_broker_id(redis):
    with tempfile.TemporaryDirectory() as config_dir:
        config = run_init_step(config_dir, "korvet-2", "prod")
        container = korvet_containers(statefulset())[0]
        assert container["args"] == ["serve", "--config", "/config/broker.yaml"]
        env = dict(os.environ, **configmap()["data"])
        env.update({e["name"]: e["value"] for e in container["env"] if "value" in e})
        printed = subprocess.run([KORVET_BIN, "serve", "--config", config, "--print-config"], env=env,
                                 capture_output=True, text=True, check=True).stdout
        assert "broker-id: 2  # config file" in printed
        assert "advertised-host: korvet-2.korvet.prod.svc.cluster.local  # config file" in printed
        assert "keyspace: korvet  # environment variable KORVET_SERVER_KEYSPACE" in printed
        assert "rebalance-delay: 5s  # environment variable" in printed

        # And a broker started that way serves, with its probes answering.
        management = free_port()
        env.update({"KORVET_REDIS_URI": redis.uri, "KORVET_SERVER_HOST": "127.0.0.1", "KORVET_SERVER_PORT": str(free_port()),
                    "KORVET_MANAGEMENT_PORT": str(management), "KORVET_SERVER_KEYSPACE": "deploy-test"})
        proc = subprocess.Popen([KORVET_BIN] + container["args"][:1] + ["--config", config], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            def probe_ok(path):
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{management}{path}", timeout=2) as r:
                        return r.status == 200
                except OSError:
                    return False
            wait_for(lambda: port_open(management) and probe_ok(container["readinessProbe"]["httpGet"]["path"]), 30,
                     "readiness")
            assert probe_ok(container["livenessProbe"]["httpGet"]["path"])
        finally:
            proc.terminate()
            _, stderr = proc.communicate(timeout=20)
        assert proc.returncode == 0
        assert '"message":"registered as broker 2' in stderr, "JSON logs from the ConfigMap, broker id from the file"
