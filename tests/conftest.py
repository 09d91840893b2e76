"""Test session set-up: a private Redis server, and helpers to run real workers.

The Redis server starts before any test module imports ``proj``, and its URL goes
into the environment, so celeryconfig, the in-process client and every worker
subprocess all use it. Local Redis or RabbitMQ servers are never touched.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from _pytest.nodeid import NodeId
from redis.cluster import RedisCluster

from devtools.rabbitmq import RabbitVhost, point_app_at, rabbitmq_missing
from proj.redis_server import RedisServer
from singleton.store import Store
from tests.services import RABBITMQ_SKIP, rabbitmq_vhost

STORE_RETENTION_S = 60.0

# Short leases and visibility timeout so that crash and redelivery tests finish fast.
TEST_ENV = {
    "SINGLETON_STEP_LEASE": "2",
    "SINGLETON_VISIBILITY_TIMEOUT": "6",
    "BROKER_RESTORE_INTERVAL": "1",
    "SINGLETON_KEY_PREFIX": "singleton-test",
    "SINGLETON_MAX_COUNTDOWN": "3",
}


def pytest_configure(config: pytest.Config) -> None:
    directory = Path(tempfile.mkdtemp(prefix="singleton-tests-"))
    server = RedisServer(directory, appendonly=False).start()
    config.stash[_SERVER] = server
    os.environ.update(TEST_ENV, REDIS_URL=server.url)
    os.environ.pop("CELERY_BROKER_URL", None)
    os.environ.pop("CELERY_RESULT_BACKEND", None)


def pytest_unconfigure(config: pytest.Config) -> None:
    server = config.stash.get(_SERVER, None)
    if server is not None:
        server.stop()


_SERVER = pytest.StashKey[RedisServer]()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Under pytest 9 schemathesis' items of every operation share one node ID (pytest takes
    # an ID's [params] from a callspec, which they have not; their names have the
    # operation): pytest-xdist schedules by node ID, and would run only one of them.
    for item in items:
        module, _, function = item.nodeid.rpartition("::")
        if "[" in item.name and "[" not in function:
            item._id = NodeId.parse(f"{module}::{item.name}")


@pytest.fixture(scope="session")
def redis_server(pytestconfig: pytest.Config) -> RedisServer:
    return pytestconfig.stash[_SERVER]


# tests/test_cluster.py runs the store's tests again with this set to a Redis Cluster:
# redis_client, and so every Store of those tests, is then a cluster client.
STORE_TESTS_CLUSTER = "STORE_TESTS_CLUSTER_URL"


@pytest.fixture(scope="session")
def redis_client(redis_server: RedisServer) -> redis.Redis:
    cluster = os.environ.get(STORE_TESTS_CLUSTER, "")
    client = RedisCluster.from_url(cluster.split(",")[0].replace("redis+cluster://", "redis://")) \
        if cluster else redis.Redis.from_url(redis_server.url)
    if cluster:
        client.command_flags["KEYS"] = RedisCluster.PRIMARIES  # the tests list keys on every node
    yield client
    client.close()


@pytest.fixture(scope="session")
def app():
    import tests.probe  # noqa: F401  (the probe orchestrators)
    from proj import app

    # Importing proj must not have read the configuration before REDIS_URL was set:
    # the tests would then talk to the machine's own Redis.
    assert app.conf.broker_url == os.environ["REDIS_URL"], app.conf.broker_url
    assert app.conf.singleton_key_prefix == TEST_ENV["SINGLETON_KEY_PREFIX"]
    return app


@pytest.fixture(scope="session")
def client(app):
    from singleton import OrchestrationClient

    return OrchestrationClient(app)


@pytest.fixture
def prefix(redis_client: redis.Redis) -> Iterator[str]:
    """Return a key prefix no other test uses; delete its keys afterwards."""
    p = f"st-{uuid.uuid4().hex}"
    yield p
    leftovers = redis_client.keys(f"{p}*")
    if leftovers:
        redis_client.delete(*leftovers)


@pytest.fixture
def make_store(redis_client: redis.Redis, prefix: str) -> Callable[..., Store]:
    """Return a factory of Stores on the test Redis under the test's own prefix."""

    def make(retention_s: float = STORE_RETENTION_S) -> Store:
        return Store(redis_client, prefix=prefix, retention_s=retention_s)

    return make


@pytest.fixture
def store(make_store: Callable[..., Store]) -> Store:
    """Return a Store under the test's own prefix (no worker involved)."""
    return make_store()


@pytest.fixture
def uid(request: pytest.FixtureRequest) -> str:
    """Return an instance ID no other test uses."""
    return f"{request.node.name[:40]}-{uuid.uuid4().hex[:8]}"


# -- brokers -------------------------------------------------------------------------


@dataclass(frozen=True)
class Broker:
    """The broker a module's processes use: its kind, URL, and vhost on RabbitMQ."""

    kind: str
    url: str
    vhost: RabbitVhost | None = None


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    reports = terminalreporter.stats.get("skipped", [])
    skipped = sum(RABBITMQ_SKIP in str(report.longrepr) for report in reports)
    if skipped:
        terminalreporter.write_line(
            f"RabbitMQ tests skipped ({skipped}): {rabbitmq_missing()}; REQUIRE_RABBITMQ=1 fails instead",
            yellow=True,
        )


@pytest.fixture(scope="module")
def broker(request: pytest.FixtureRequest, app, redis_server: RedisServer) -> Iterator[Broker]:
    """The module's broker: the test Redis, or (param "rabbitmq") a RabbitMQ vhost of its own.

    On RabbitMQ, CELERY_BROKER_URL names the vhost for the processes the module starts
    (workers, beat) and the in-process app publishes there too, until the module ends.
    """
    if getattr(request, "param", "redis") == "redis":
        yield Broker("redis", redis_server.url)
        return
    vhost = rabbitmq_vhost()
    os.environ["CELERY_BROKER_URL"] = vhost.url
    redis_options = app.conf.broker_transport_options
    point_app_at(app, vhost.url, {"confirm_publish": True})
    with app.connection_for_write() as connection:
        assert connection.transport.driver_type == "amqp", connection.transport
    try:
        yield Broker("rabbitmq", vhost.url, vhost)
    finally:
        point_app_at(app, redis_server.url, redis_options)
        os.environ.pop("CELERY_BROKER_URL", None)
        vhost.delete()


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory, broker: Broker):
    """A real prefork worker (2 processes) for the tests of one module, on its broker."""
    from tests.workers import Worker

    w = Worker(tmp_path_factory.mktemp("worker") / "worker.log").start()
    yield w
    w.stop()
