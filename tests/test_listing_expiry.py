"""A run claimed on an ID whose finished record expired is listed like any other."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from celery import Celery

from singleton import OrchestrationClient, RuntimeStatus, init_app
from tests.workers import wait_until


def listed(store, instance_id: str) -> bool:
    shards = store.index_page(float("inf"), oldest_us=float("-inf"), count=1000)
    return any(i == instance_id for shard in shards for i, _ in shard)


def test_a_run_claimed_on_an_expired_id_stays_in_the_listing_index(make_store, uid):
    store = make_store(retention_s=0.2)
    old = uuid.uuid4().hex
    store.claim(uid, name="Probe", run_id=old, input_json="null")
    store.end_run(uid, run_id=old, status=RuntimeStatus.COMPLETED, output_json=json.dumps("done"))
    wait_until(lambda: store.read(uid) is None, 10, "the finished record to expire")

    new = store.claim(uid, name="Probe", run_id=uuid.uuid4().hex, input_json="null")
    assert new.claimed and store.read(uid)["status"] == "Pending"
    # Every claim sweeps a few due expiry entries of its shard: this claim's own among them.
    assert listed(store, uid), "the live run on the expired ID is missing from the listing index"
    assert store.read(uid)["run"] == new.run_id


def test_a_sweep_never_deletes_a_live_runs_listing_entry(make_store, redis_client, uid):
    store = make_store()
    store.claim(uid, name="Probe", run_id=uuid.uuid4().hex, input_json="null")
    # A due expiry entry for the live run, as a record that expired before this claim
    # (and a claim that did not clean up after it) would leave.
    redis_client.zadd(store.keys(uid).expiring, {uid: 0})
    neighbour = next(n for n in (f"{uid}-{i}" for i in range(1000))
                     if store.keys(n).expiring == store.keys(uid).expiring)
    store.claim(neighbour, name="Probe", run_id=uuid.uuid4().hex, input_json="null")  # sweeps
    assert listed(store, uid), "the sweep deleted the live run's listing entry"


@pytest.fixture
def prefixed_client(redis_server, prefix):
    """A client of an app of its own whose keys are under the test's prefix."""
    app = Celery("prefixed", broker=redis_server.url, backend=redis_server.url)
    app.conf.update(singleton_key_prefix=prefix)
    init_app(app)
    yield OrchestrationClient(app)
    app.close()


def test_purge_by_filter_finds_a_run_claimed_on_an_expired_id(prefixed_client, make_store, uid):
    since = datetime.now(UTC) - timedelta(minutes=1)
    short, store = make_store(retention_s=0.2), make_store()
    old = uuid.uuid4().hex
    short.claim(uid, name="Probe", run_id=old, input_json="null")
    short.end_run(uid, run_id=old, status=RuntimeStatus.COMPLETED, output_json="null")
    wait_until(lambda: store.read(uid) is None, 10, "the finished record to expire")
    run = uuid.uuid4().hex
    store.claim(uid, name="Probe", run_id=run, input_json="null")
    store.end_run(uid, run_id=run, status=RuntimeStatus.COMPLETED, output_json="null")
    assert prefixed_client.purge_instance_history_by(created_time_from=since) == 1
    assert prefixed_client.get_status(uid) is None
