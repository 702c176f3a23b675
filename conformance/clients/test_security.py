"""Security with real clients: SASL (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) on SASL_PLAINTEXT and
SASL_SSL, TLS with client certificates on SSL, ACLs checked as Kafka checks them, users and ACLs
shared by every broker of a keyspace. Certificates come from openssl, made here."""
import os
import shutil
import socket
import ssl
import struct
import subprocess
import tempfile
import time
import urllib.request

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AclBinding, AclOperation, AclPermissionType, AdminClient, ConfigResource, NewTopic, ResourcePatternType, ResourceType

from harness import KORVET_BIN, Korvet, free_port, make_certs, openssl, wait_for

PASSWORDS = {"admin": "admin-secret", "alice": "alice-secret", "bob": "bob-secret"}


@pytest.fixture(scope="module")
def certs():
    """A CA, a server certificate for 127.0.0.1 and localhost, and a client certificate whose
    subject is C=US, O=acme, CN=carol."""
    folder = tempfile.mkdtemp(prefix="korvet-certs-")
    yield make_certs(folder)
    shutil.rmtree(folder, ignore_errors=True)


def korvet_cli(bootstrap, *args, user=None):
    login = ["--sasl-username", user, "--sasl-password", PASSWORDS[user]] if user else []
    done = subprocess.run([KORVET_BIN, *args, "--bootstrap-server", bootstrap, *login], capture_output=True, text=True, timeout=60)
    return done.returncode, done.stdout, done.stderr


class SecureBroker:
    """A broker with a PLAINTEXT main listener, SASL_PLAINTEXT, SSL and SASL_SSL listeners."""

    def __init__(self, redis, keyspace, certs, extra=None, broker_id=0):
        self.sasl_port, self.ssl_port, self.sasl_ssl_port = free_port(), free_port(), free_port()
        env = {
            "KORVET_SERVER_BROKER_ID": str(broker_id),
            "KORVET_SERVER_LISTENERS": f"SASL_PLAINTEXT://127.0.0.1:{self.sasl_port},SSL://127.0.0.1:{self.ssl_port},SASL_SSL://127.0.0.1:{self.sasl_ssl_port}",
            "KORVET_TLS_CERT_FILE": certs("server.pem"),
            "KORVET_TLS_KEY_FILE": certs("server.key"),
            "KORVET_TLS_CLIENT_CA_FILE": certs("ca.pem"),
            "KORVET_TLS_CLIENT_AUTH": "requested",
            "KORVET_TLS_RELOAD_INTERVAL": "200ms",
            "KORVET_REGISTRY_HEARTBEAT_INTERVAL": "1s",
            "KORVET_REGISTRY_TTL": "3s",
            "KORVET_SERVER_REBALANCE_DELAY": "200ms",
        }
        env.update(extra or {})
        self.broker = Korvet(redis_uri=redis.uri, keyspace=keyspace, extra_env=env)
        self.certs = certs

    def sasl(self, user, mechanism="SCRAM-SHA-256", tls=False, password=None):
        port = self.sasl_ssl_port if tls else self.sasl_port
        conf = {
            "bootstrap.servers": f"127.0.0.1:{port}",
            "security.protocol": "SASL_SSL" if tls else "SASL_PLAINTEXT",
            "sasl.mechanism": mechanism,
            "sasl.username": user,
            "sasl.password": password or PASSWORDS[user],
        }
        if tls:
            conf["ssl.ca.location"] = self.certs("ca.pem")
        return conf

    def ssl(self, client_certificate=True):
        conf = {"bootstrap.servers": f"127.0.0.1:{self.ssl_port}", "security.protocol": "SSL", "ssl.ca.location": self.certs("ca.pem")}
        if client_certificate:
            conf.update({"ssl.certificate.location": self.certs("client.pem"), "ssl.key.location": self.certs("client.key")})
        return conf

    def metrics(self):
        url = f"http://127.0.0.1:{self.broker.management_port}/actuator/prometheus"
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.read().decode()

    def stop(self):
        self.broker.stop()


@pytest.fixture(scope="module")
def secured(redis, certs):
    """Users admin, alice and bob (made through a broker without an authorizer), then a broker
    with ACLs on and User:admin as super user, on the same keyspace."""
    keyspace = f"secured{os.getpid()}"
    setup = Korvet(redis_uri=redis.uri, keyspace=keyspace)
    for user, password in PASSWORDS.items():
        code, _, err = korvet_cli(setup.bootstrap, "users", "set", user, "--password", password)
        assert code == 0, err
    setup.stop()
    acl_settings = {"KORVET_SECURITY_AUTHORIZER": "acl", "KORVET_SECURITY_SUPER_USERS": "User:admin", "KORVET_SECURITY_ACL_REFRESH_INTERVAL": "500ms"}
    broker = SecureBroker(redis, keyspace, certs, acl_settings)
    broker.keyspace, broker.acl_settings = keyspace, acl_settings
    yield broker
    broker.stop()


def produce(conf, topic, count=10, timeout=20):
    """Delivery errors of `count` records (None for each one delivered)."""
    producer = Producer(dict(conf, **{"message.timeout.ms": 8000, "retries": 0}))
    outcomes = []
    for i in range(count):
        producer.produce(topic, value=b"%d" % i, on_delivery=lambda err, msg: outcomes.append(err))
    producer.flush(timeout)
    return outcomes


def consume(conf, topic, group, want, timeout=20):
    consumer = Consumer(dict(conf, **{"group.id": group, "auto.offset.reset": "earliest", "session.timeout.ms": 6000}))
    consumer.subscribe([topic])
    got, errors = [], []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(got) < want and not errors:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            errors.append(msg.error())
        else:
            got.append(msg.value())
    consumer.close()
    return got, errors


def sasl_failure(conf):
    """The error a client reports when authentication fails, and how long it took."""
    errors = []
    started = time.monotonic()
    producer = Producer(dict(conf, error_cb=lambda err: errors.append(err)))
    deadline = started + 15
    while time.monotonic() < deadline and not errors:
        producer.poll(0.2)
    return errors, time.monotonic() - started


def create_topics(broker, *names):
    """Creates topics as the super user; returns that admin client."""
    admin = AdminClient(broker.sasl("admin"))
    for future in admin.create_topics([NewTopic(name, 1, 1) for name in names]).values():
        future.result(20)
    return admin


def add_acl(broker, *args):
    code, out, err = korvet_cli(f"127.0.0.1:{broker.sasl_port}", "acls", "add", *args, user="admin")
    assert code == 0, err


def test_every_mechanism_authenticates_on_both_sasl_listeners_and_wrong_passwords_fail_fast(secured):
    add_acl(secured, "--topic", "sasl-", "--resource-pattern-type", "prefixed", "--principal", "User:alice", "--operation", "All")
    add_acl(secured, "--group", "sasl-", "--resource-pattern-type", "prefixed", "--principal", "User:alice", "--operation", "Read")
    for tls in (False, True):
        for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"):
            topic = f"sasl-{mechanism.lower()}-{'tls' if tls else 'plain'}"
            conf = secured.sasl("alice", mechanism, tls)
            assert produce(conf, topic, 20) == [None] * 20, (mechanism, tls)
            got, errors = consume(conf, topic, f"sasl-{topic}", 20)
            assert (len(got), errors) == (20, []), (mechanism, tls)
    before = secured.metrics()
    errors, took = sasl_failure(secured.sasl("alice", "SCRAM-SHA-256", password="wrong"))
    assert errors and errors[0].code() == KafkaError._AUTHENTICATION, errors
    assert took < 5, f"authentication failure reported after {took:.1f} s"
    errors, _ = sasl_failure(secured.sasl("nobody", "PLAIN", password="x"))
    assert errors and errors[0].code() == KafkaError._AUTHENTICATION, errors
    wait_for(lambda: 'korvet_authentication_failures_total{mechanism="SCRAM-SHA-256"}' in secured.metrics(), 10, "the failure metric")
    logs = secured.broker.logs()
    assert 'authentication failed: SCRAM-SHA-256 from 127.0.0.1' in logs and 'as user "alice"' in logs
    assert "wrong" not in logs and "alice-secret" not in logs and "admin-secret" not in logs
    assert before is not None


def test_a_client_certificate_is_the_principal_on_the_ssl_listener(secured):
    carol = "User:CN=carol,O=acme,C=US"
    create_topics(secured, "certified")
    add_acl(secured, "--topic", "certified", "--principal", carol, "--operation", "Write")
    add_acl(secured, "--topic", "certified", "--principal", carol, "--operation", "Read")
    add_acl(secured, "--group", "certified", "--principal", carol, "--operation", "Read")
    assert produce(secured.ssl(), "certified", 5) == [None] * 5
    got, errors = consume(secured.ssl(), "certified", "certified", 5)
    assert (len(got), errors) == (5, [])
    # Without a certificate the connection is anonymous, which no ACL allows.
    outcomes = produce(secured.ssl(client_certificate=False), "certified", 1)
    assert outcomes[0] is not None and outcomes[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, outcomes


def test_the_admin_commands_speak_ssl_and_sasl_ssl(secured):
    ca = ["--ssl-ca-file", secured.certs("ca.pem")]
    sasl_ssl = f"127.0.0.1:{secured.sasl_ssl_port}"
    code, out, err = korvet_cli(sasl_ssl, "acls", "list", "--security-protocol", "SASL_SSL", *ca, user="admin")
    assert code == 0, err
    code, out, err = korvet_cli(sasl_ssl, "topics", "create", "admin-over-tls", "--partitions", "2", "--security-protocol", "SASL_SSL", *ca, user="admin")
    assert code == 0, err
    code, out, err = korvet_cli(sasl_ssl, "topics", "describe", "admin-over-tls", "--security-protocol", "SASL_SSL", *ca, user="admin")
    assert code == 0 and "admin-over-tls" in out, (out, err)
    # On the SSL listener the client certificate is the principal: carol may not describe ACLs.
    ssl = f"127.0.0.1:{secured.ssl_port}"
    identity = ["--ssl-cert-file", secured.certs("client.pem"), "--ssl-key-file", secured.certs("client.key")]
    code, out, err = korvet_cli(ssl, "acls", "list", "--security-protocol", "SSL", *ca, *identity)
    assert code == 1 and "ClusterAuthorizationFailed" in err, (code, out, err)
    # A broker certificate from an unknown CA is refused, and so are flags that do not fit.
    code, _, err = korvet_cli(ssl, "topics", "list", "--security-protocol", "SSL", "--ssl-ca-file", secured.certs("client.pem"))
    assert code == 2 and "certificate" in err.lower(), err
    code, _, err = korvet_cli(ssl, "topics", "list", "--security-protocol", "SSL", *ca, user="admin")
    assert code == 2 and "SASL_PLAINTEXT or SASL_SSL" in err, err
    code, _, err = korvet_cli(sasl_ssl, "topics", "list", "--security-protocol", "SASL_SSL", *ca)
    assert code == 2 and "needs --sasl-username" in err, err
    # Plain TCP to a TLS listener says what to do instead of hanging.
    code, _, err = korvet_cli(ssl, "topics", "list")
    assert code == 2 and "--security-protocol SSL or SASL_SSL" in err, err


def test_acls_as_kafka_applies_them(secured):
    admin = create_topics(secured, "orders-eu", "orders-secret", "logs")
    # Through the admin client's CreateAcls, as kafka-acls sends it.
    bindings = [
        AclBinding(ResourceType.TOPIC, "orders-", ResourcePatternType.PREFIXED, "User:alice", "*", AclOperation.WRITE, AclPermissionType.ALLOW),
        AclBinding(ResourceType.TOPIC, "orders-secret", ResourcePatternType.LITERAL, "User:alice", "*", AclOperation.ALL, AclPermissionType.DENY),
        AclBinding(ResourceType.TOPIC, "orders-eu", ResourcePatternType.LITERAL, "User:alice", "*", AclOperation.READ, AclPermissionType.ALLOW),
        AclBinding(ResourceType.GROUP, "billing", ResourcePatternType.LITERAL, "User:alice", "*", AclOperation.READ, AclPermissionType.ALLOW),
    ]
    for future in admin.create_acls(bindings).values():
        future.result(20)
    alice = secured.sasl("alice")
    assert produce(alice, "orders-eu", 3) == [None] * 3
    denied = produce(alice, "orders-secret", 1)[0]
    assert denied is not None and denied.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, "DENY wins over the prefixed ALLOW"
    denied = produce(alice, "logs", 1)[0]
    assert denied is not None and denied.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    got, errors = consume(alice, "orders-eu", "billing", 3)
    assert (len(got), errors) == (3, [])
    _, errors = consume(alice, "orders-eu", "other-group", 1, timeout=10)
    assert errors and errors[0].code() == KafkaError.GROUP_AUTHORIZATION_FAILED, errors

    # Metadata leaves out what the principal may not describe; Write implies Describe.
    bob_admin = AdminClient(secured.sasl("bob"))
    assert set(bob_admin.list_topics(timeout=10).topics) == set()
    assert {"orders-eu"} <= set(AdminClient(alice).list_topics(timeout=10).topics)
    assert "logs" not in AdminClient(alice).list_topics(timeout=10).topics
    # The wildcard: every topic described by everyone.
    add_acl(secured, "--topic", "*", "--principal", "User:*", "--operation", "Describe")
    assert {"orders-eu", "orders-secret", "logs"} <= set(bob_admin.list_topics(timeout=10).topics)

    # Topic administration.
    with pytest.raises(KafkaException) as refused:
        bob_admin.create_topics([NewTopic("bobs-topic", 1, 1)])["bobs-topic"].result(20)
    assert refused.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    with pytest.raises(KafkaException) as refused:
        bob_admin.delete_topics(["logs"])["logs"].result(20)
    assert refused.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    with pytest.raises(KafkaException) as refused:
        bob_admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, "logs")])[ConfigResource(ConfigResource.Type.TOPIC, "logs")].result(20)
    assert refused.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    add_acl(secured, "--topic", "logs", "--principal", "User:bob", "--operation", "AlterConfigs")
    configs = bob_admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, "logs")])
    assert "retention.ms" in list(configs.values())[0].result(20), "AlterConfigs implies DescribeConfigs"
    add_acl(secured, "--cluster", "--principal", "User:bob", "--operation", "Create")
    bob_admin.create_topics([NewTopic("bobs-topic", 1, 1)])["bobs-topic"].result(20)

    # ACL administration needs Alter on the cluster.
    code, _, err = korvet_cli(f"127.0.0.1:{secured.sasl_port}", "acls", "add", "--topic", "x", "--principal", "User:bob", "--operation", "Read", user="bob")
    assert code == 1 and "ClusterAuthorizationFailed" in err, err
    code, out, _ = korvet_cli(f"127.0.0.1:{secured.sasl_port}", "acls", "list", "--topic", "orders-eu", user="admin")
    assert code == 0 and "orders-" in out and "PREFIXED" in out and "Deny" not in out.split("orders-secret")[0], out


def test_an_acl_removed_through_another_broker_stops_an_open_connection(secured, redis, certs):
    add_acl(secured, "--topic", "revoked", "--principal", "User:bob", "--operation", "Write")
    second = SecureBroker(redis, secured.keyspace, certs, secured.acl_settings, broker_id=1)
    try:
        producer = Producer(dict(secured.sasl("bob"), **{"message.timeout.ms": 5000, "retries": 0}))
        outcomes = []
        producer.produce("revoked", b"before", on_delivery=lambda err, msg: outcomes.append(err))
        producer.flush(20)
        assert outcomes == [None]
        # The same users authenticate against the second broker, which removes the ACL.
        code, _, err = korvet_cli(f"127.0.0.1:{second.sasl_port}", "acls", "remove", "--topic", "revoked", "--principal", "User:bob", "--operation", "Write", user="admin")
        assert code == 0, err

        def refused_on_the_open_connection():
            outcomes.clear()
            producer.produce("revoked", b"after", on_delivery=lambda err, msg: outcomes.append(err))
            producer.flush(10)
            return outcomes and outcomes[0] is not None and outcomes[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED

        wait_for(refused_on_the_open_connection, 15, "the removed ACL to apply on the first broker")
        denied = produce(second.sasl("bob"), "revoked", 1)[0]
        assert denied is not None and denied.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    finally:
        second.stop()


def frame(api_key, version, correlation, body=b""):
    client = b"probe"
    header = struct.pack(">hhih", api_key, version, correlation, len(client)) + client
    return struct.pack(">i", len(header) + len(body)) + header + body


def closed(sock, timeout):
    sock.settimeout(timeout)
    try:
        while True:
            data = sock.recv(4096)
            if not data:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def test_unauthenticated_requests_are_refused_and_idle_connections_closed(redis, certs):
    broker = SecureBroker(redis, f"unauth{os.getpid()}", certs, {"KORVET_SASL_AUTHENTICATION_TIMEOUT": "1s"})
    try:
        with socket.create_connection(("127.0.0.1", broker.sasl_port), timeout=5) as sock:
            sock.sendall(frame(3, 1, 7, struct.pack(">i", -1)))  # Metadata before authenticating
            assert closed(sock, 5)
        with socket.create_connection(("127.0.0.1", broker.sasl_port), timeout=5) as sock:
            started = time.monotonic()
            assert closed(sock, 10)
            assert 0.8 < time.monotonic() - started < 5
        # The broker serves on: a plaintext client on the TLS port fails, the others work.
        errors, took = sasl_failure({"bootstrap.servers": f"127.0.0.1:{broker.ssl_port}"})
        assert errors and took < 10
        assert produce({"bootstrap.servers": broker.broker.bootstrap}, "still-serving", 1) == [None]
        wait_for(lambda: 'korvet_authentication_failures_total{mechanism="TLS"}' in broker.metrics(), 10, "the TLS failure metric")
    finally:
        broker.stop()


def served_certificate_serial(port, ca):
    context = ssl.create_default_context(cafile=ca)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            return tls.getpeercert()["serialNumber"]


def test_a_rotated_certificate_is_served_without_a_restart(redis, certs):
    folder = tempfile.mkdtemp(prefix="korvet-rotate-")
    cert, key = os.path.join(folder, "server.pem"), os.path.join(folder, "server.key")
    shutil.copy(certs("server.pem"), cert)
    shutil.copy(certs("server.key"), key)
    broker = SecureBroker(redis, f"rotate{os.getpid()}", certs, {"KORVET_TLS_CERT_FILE": cert, "KORVET_TLS_KEY_FILE": key})
    try:
        first = served_certificate_serial(broker.ssl_port, certs("ca.pem"))
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key + ".new", "-out", cert + ".csr", "-subj", "/CN=localhost")
        openssl("x509", "-req", "-in", cert + ".csr", "-CA", certs("ca.pem"), "-CAkey", certs("ca.key"), "-CAcreateserial",
                "-out", cert + ".new", "-days", "2", "-extfile", certs("server.ext"))
        os.replace(key + ".new", key)
        os.replace(cert + ".new", cert)
        wait_for(lambda: served_certificate_serial(broker.ssl_port, certs("ca.pem")) != first, 10, "the new certificate")
        assert produce(broker.ssl(), "rotated", 1) == [None]
    finally:
        broker.stop()
        shutil.rmtree(folder, ignore_errors=True)


def test_kafka_python_with_scram_and_kcat_with_plain(secured):
    from kafka import KafkaConsumer, KafkaProducer
    add_acl(secured, "--topic", "py-", "--resource-pattern-type", "prefixed", "--principal", "User:alice", "--operation", "All")
    add_acl(secured, "--group", "py-", "--resource-pattern-type", "prefixed", "--principal", "User:alice", "--operation", "All")
    conf = dict(bootstrap_servers=f"127.0.0.1:{secured.sasl_ssl_port}", security_protocol="SASL_SSL", ssl_cafile=secured.certs("ca.pem"),
                sasl_mechanism="SCRAM-SHA-512", sasl_plain_username="alice", sasl_plain_password=PASSWORDS["alice"])
    producer = KafkaProducer(**conf)
    for i in range(10):
        producer.send("py-scram", b"%d" % i)
    producer.flush(20)
    producer.close()
    consumer = KafkaConsumer("py-scram", group_id="py-group", auto_offset_reset="earliest", consumer_timeout_ms=10000, **conf)
    assert len([m for m in consumer]) == 10
    consumer.close()
    # Debian's kcat is built on librdkafka 2.0.2, whose SCRAM client sends the client nonce twice
    # in its final message (confluent-kafka's librdkafka above does not): it authenticates with
    # PLAIN here.
    kcat = shutil.which("kcat") or shutil.which("kafkacat")
    if kcat:
        done = subprocess.run([kcat, "-b", f"127.0.0.1:{secured.sasl_port}", "-X", "security.protocol=SASL_PLAINTEXT", "-X", "sasl.mechanism=PLAIN",
                               "-X", "sasl.username=alice", "-X", f"sasl.password={PASSWORDS['alice']}", "-C", "-t", "py-scram", "-o", "beginning", "-e", "-q"],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and len(done.stdout.split()) == 10, done.stderr


def test_the_management_server_over_https_with_basic_authentication(redis, certs):
    import base64
    import urllib.error
    broker = Korvet(redis_uri=redis.uri, keyspace=f"mgmt{os.getpid()}", extra_env={
        "KORVET_MANAGEMENT_TLS": "true",
        "KORVET_TLS_CERT_FILE": certs("server.pem"),
        "KORVET_TLS_KEY_FILE": certs("server.key"),
        "KORVET_MANAGEMENT_USERNAME": "ops",
        "KORVET_MANAGEMENT_PASSWORD": "ops-secret",
    })
    context = ssl.create_default_context(cafile=certs("ca.pem"))

    def get(path, login=None):
        request = urllib.request.Request(f"https://localhost:{broker.management_port}{path}")
        if login:
            request.add_header("Authorization", "Basic " + base64.b64encode(login.encode()).decode())
        try:
            with urllib.request.urlopen(request, timeout=5, context=context) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, ""

    try:
        wait_for(lambda: get("/actuator/health/readiness")[0] == 200, 20, "readiness over HTTPS")
        assert get("/actuator/prometheus")[0] == 401
        status, text = get("/actuator/prometheus", "ops:ops-secret")
        assert status == 200 and "korvet_active_connections" in text
        with pytest.raises(Exception):
            urllib.request.urlopen(f"http://127.0.0.1:{broker.management_port}/actuator/health", timeout=5).read()
    finally:
        broker.stop()


def jwt(private_key_path, claims):
    """A JWT signed RS256 with the key at `private_key_path`."""
    import base64
    import json
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding
    b64 = lambda data: base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    signing_input = b64(json.dumps({"alg": "RS256", "typ": "JWT"}).encode()) + "." + b64(json.dumps(claims).encode())
    with open(private_key_path, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return signing_input + "." + b64(signature)


def test_oauthbearer_tokens_are_verified_and_their_subject_is_the_principal(redis, certs):
    folder = tempfile.mkdtemp(prefix="korvet-oauth-")
    key, public, rogue = (os.path.join(folder, name) for name in ("issuer.key", "issuer.pub", "rogue.key"))
    for path in (key, rogue):
        openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", path)
    openssl("pkey", "-in", key, "-pubout", "-out", public)
    issuer = "https://issuer.example"
    broker = SecureBroker(redis, f"oauth{os.getpid()}", certs, {
        "KORVET_SASL_MECHANISMS": "OAUTHBEARER,SCRAM-SHA-256",
        "KORVET_SASL_OAUTHBEARER_PUBLIC_KEY_FILE": public,
        "KORVET_SASL_OAUTHBEARER_ISSUER": issuer,
        "KORVET_SECURITY_AUTHORIZER": "acl",
        "KORVET_SECURITY_SUPER_USERS": "User:svc-admin",
    })

    def conf(subject, signer=key, lifetime=300, iss=issuer):
        def token(_config):
            # The client is told the token lasts; the exp claim is what the broker checks.
            claims = {"sub": subject, "iss": iss, "exp": int(time.time() + lifetime), "iat": int(time.time())}
            return jwt(signer, claims), time.time() + 300
        return {"bootstrap.servers": f"127.0.0.1:{broker.sasl_ssl_port}", "security.protocol": "SASL_SSL",
                "ssl.ca.location": certs("ca.pem"), "sasl.mechanism": "OAUTHBEARER", "oauth_cb": token}

    try:
        admin = AdminClient(conf("svc-admin"))
        admin.create_topics([NewTopic("oauth-orders", 1, 1)])["oauth-orders"].result(20)
        binding = AclBinding(ResourceType.TOPIC, "oauth-orders", ResourcePatternType.LITERAL, "User:svc-orders", "*", AclOperation.WRITE, AclPermissionType.ALLOW)
        for future in admin.create_acls([binding]).values():
            future.result(20)
        assert produce(conf("svc-orders"), "oauth-orders", 5) == [None] * 5
        denied = produce(conf("svc-other"), "oauth-orders", 1)[0]
        assert denied is not None and denied.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
        for refused in (conf("svc-orders", signer=rogue), conf("svc-orders", lifetime=-60), conf("svc-orders", iss="https://elsewhere")):
            errors, took = sasl_failure(refused)
            assert errors and errors[0].code() == KafkaError._AUTHENTICATION and took < 5, errors
        # One line per 10 s in the log; every failure in the metric.
        assert "authentication failed: OAUTHBEARER" in broker.broker.logs()
        wait_for(lambda: 'korvet_authentication_failures_total{mechanism="OAUTHBEARER"} 3' in broker.metrics(), 10, "three OAUTHBEARER failures counted")
    finally:
        broker.stop()
        shutil.rmtree(folder, ignore_errors=True)


def test_kafkajs_and_the_rdkafka_crate_on_sasl_ssl(secured, monkeypatch):
    import clients
    add_acl(secured, "--topic", "js-", "--resource-pattern-type", "prefixed", "--principal", "User:alice", "--operation", "All")
    add_acl(secured, "--group", "*", "--principal", "User:alice", "--operation", "Read")
    records = [{"partition": 0, "key": f"k{i}", "value": f"v{i}", "headers": []} for i in range(10)]
    bootstrap = f"127.0.0.1:{secured.sasl_ssl_port}"
    monkeypatch.setenv("KORVET_CLIENT_SASL", f"scram-sha-256:alice:{PASSWORDS['alice']}")
    monkeypatch.setenv("KORVET_CLIENT_CA", secured.certs("ca.pem"))
    clients.kafkajs_produce(bootstrap, "js-orders", "none", records)
    assert [r["value"] for r in clients.kafkajs_consume(bootstrap, "js-orders", 1, 10)] == [f"v{i}" for i in range(10)]
    monkeypatch.setenv("KORVET_CLIENT_CONFIG", ";".join([
        "security.protocol=SASL_SSL", "sasl.mechanism=SCRAM-SHA-512", "sasl.username=alice",
        f"sasl.password={PASSWORDS['alice']}", f"ssl.ca.location={secured.certs('ca.pem')}"]))
    clients.rdkafka_produce(bootstrap, "js-rust", "lz4", records)
    assert [r["value"] for r in clients.rdkafka_consume(bootstrap, "js-rust", 1, 10)] == [f"v{i}" for i in range(10)]
