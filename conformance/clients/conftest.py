import itertools
import os

import pytest

from harness import Korvet, Redis, RedisCluster

_keyspaces = itertools.count()
ON_CLUSTER = os.environ.get("KORVET_TEST_REDIS") == "cluster"


def pytest_collection_modifyitems(config, items):
    """On a Redis Cluster, tests that stop or reconfigure the one shared Redis server do not apply."""
    if ON_CLUSTER:
        skip = pytest.mark.skip(reason="stops or reconfigures a single Redis server")
        for item in items:
            if "standalone_redis" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def redis():
    """The shared Redis: a single server, or with KORVET_TEST_REDIS=cluster a Redis Cluster of
    three masters with a replica each."""
    server = RedisCluster() if ON_CLUSTER else Redis()
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
