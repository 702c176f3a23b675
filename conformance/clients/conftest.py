import itertools

import pytest

from harness import Korvet, Redis

_keyspaces = itertools.count()


@pytest.fixture(scope="session")
def redis():
    server = Redis()
    yield server
    server.close()


@pytest.fixture(scope="session")
def korvet(redis):
    """A broker on the shared Redis, for tests that do not restart it."""
    broker = Korvet(redis_uri=redis.uri, keyspace="suite")
    yield broker
    broker.stop()


@pytest.fixture
def fresh_korvet(redis):
    """A broker of its own (own keyspace), for tests that stop, restart or break it."""
    broker = Korvet(redis_uri=redis.uri, keyspace=f"isolated{next(_keyspaces)}")
    yield broker
    broker.stop()
