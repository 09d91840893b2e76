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
from pathlib import Path

import pytest
import redis

from proj.redis_server import RedisServer
from singleton.store import Store

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


@pytest.fixture(scope="session")
def redis_server(pytestconfig: pytest.Config) -> RedisServer:
    return pytestconfig.stash[_SERVER]


@pytest.fixture(scope="session")
def redis_client(redis_server: RedisServer) -> redis.Redis:
    client = redis.Redis.from_url(redis_server.url)
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


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory):
    """A real prefork worker (2 processes) for the tests of one module."""
    from tests.workers import Worker

    w = Worker(tmp_path_factory.mktemp("worker") / "worker.log").start()
    yield w
    w.stop()
