"""kafka-python's own SASL and SSL integration tests, against korvet's listeners.

Their fixtures (`sasl_kafka`, `ssl_kafka`) start a Kafka broker of their own, and their modules
skip themselves when KAFKA_URI names an external one. This module, copied beside them by
run_kafka_python.py, imports their tests unchanged and gives them korvet instead: the broker
run_kafka_python.py started, with a SASL_PLAINTEXT listener (the user alice for PLAIN,
SCRAM-SHA-256 and SCRAM-SHA-512) and an SSL listener (a test CA in KORVET_PEER_SSL_DIR/ca-cert)."""
import os

import pytest

from kafka import KafkaAdminClient
from test.integration.fixtures import KafkaFixture
from test.integration.test_sasl_integration import sasl_kafka, test_admin, test_client, test_produce_and_consume  # noqa: F401
from test.integration.test_ssl_integration import TestSSLConnection  # noqa: F401
from test.service import ExternalService


class KorvetListener:
    """What kafka-python's tests use of a KafkaFixture, for one of korvet's listeners."""

    def __init__(self, address, transport, sasl_mechanism=None, ssl_dir=None):
        self.host, port = address.rsplit(":", 1)
        self.port = int(port)
        self.transport = transport
        self.sasl_mechanism = sasl_mechanism
        self.broker_user, self.broker_password = "alice", "alice-secret"
        self.ssl_dir = ssl_dir
        self.partitions, self.replicas = 4, 1
        self.child = ExternalService(self.host, self.port)

    sasl_enabled = property(lambda self: self.transport in ("SASL_PLAINTEXT", "SASL_SSL"))
    ssl_enabled = property(lambda self: self.transport in ("SSL", "SASL_SSL"))
    # Their client settings for a listener, unchanged: only the attributes above are read.
    _enrich_client_params = KafkaFixture._enrich_client_params

    def bootstrap_server(self):
        return f"{self.host}:{self.port}"

    def get_topic_names(self):
        with KafkaAdminClient(**self._enrich_client_params({}, client_id="topic_lister")) as admin:
            return admin.list_topics()


@pytest.fixture(scope="module")
def kafka_broker_factory():
    def factory(transport="SASL_PLAINTEXT", sasl_mechanism=None, **_):
        assert transport == "SASL_PLAINTEXT", transport
        return KorvetListener(os.environ["KORVET_PEER_SASL"], transport, sasl_mechanism)
    return factory


@pytest.fixture(scope="module")
def ssl_kafka():
    return KorvetListener(os.environ["KORVET_PEER_SSL"], "SSL", ssl_dir=os.environ["KORVET_PEER_SSL_DIR"])
