"""The record store on a Redis Cluster of three masters (``singleton_store_url``).

The broker and result backend stay on the tests' Redis: Celery supports neither on a
cluster. The store's own test module, a worker end to end and the 300-start race
run again, in a pytest of their own, with the store on the cluster.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from redis.cluster import RedisCluster

from singleton.store import Store
from tests.services import ClusterNodes
from tests.workers import REPO

pytestmark = [pytest.mark.timeout(420), pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    nodes = ClusterNodes(tmp_path_factory.mktemp("cluster")).start()
    yield nodes
    nodes.stop()


def pytest_run(tmp_path, args: list[str], **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_URL", "CELERY_"))}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           f"--basetemp={tmp_path / 'pytest'}", *args],
                          cwd=REPO, env={**environment, **env}, capture_output=True, text=True, timeout=400)
    print(done.stdout[-3000:])
    return done


def test_the_cluster_has_three_masters_sharing_every_slot(cluster):
    client = RedisCluster.from_url(cluster.url.split(",")[0].replace("redis+cluster://", "redis://"))
    assert len(client.get_primaries()) == 3
    assert int(client.cluster_info()["cluster_slots_ok"]) == 16384


def test_the_store_tests_pass_on_the_cluster(cluster, tmp_path):
    done = pytest_run(tmp_path, ["tests/test_store.py"], STORE_TESTS_CLUSTER_URL=cluster.url)
    assert done.returncode == 0, done.stdout[-3000:]
    assert " passed" in done.stdout.splitlines()[-1] and "failed" not in done.stdout.splitlines()[-1]


def test_a_worker_runs_orchestrations_and_a_race_of_300_starts_makes_one_run(cluster, tmp_path):
    done = pytest_run(tmp_path, ["tests/test_race.py", "tests/test_lifecycle.py", "-k", "not rabbitmq"],
                      SINGLETON_STORE_URL=cluster.url)
    assert done.returncode == 0, done.stdout[-3000:]
    # The records were written on the cluster, spread over its masters.
    client = RedisCluster.from_url(cluster.url.split(",")[0].replace("redis+cluster://", "redis://"))
    per_node = [len(node.redis_connection.keys("singleton-test:*")) for node in client.get_primaries()]
    assert all(per_node), per_node


def test_a_cluster_store_refuses_min_replicas(cluster):
    client = RedisCluster.from_url(cluster.url.split(",")[0].replace("redis+cluster://", "redis://"))
    with pytest.raises(ValueError, match="min_replicas cannot be used with a Redis Cluster"):
        Store(client, prefix="refused", retention_s=60, min_replicas=1)
