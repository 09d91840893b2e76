"""A run claimed on an ID whose finished record expired is listed like any other."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

from singleton import RuntimeStatus
from singleton.runtime import runtime
from singleton.store import Store
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


def test_purge_by_filter_finds_a_run_claimed_on_an_expired_id(app, client, redis_client, uid):
    # The session client's keys, with a record store whose finished records expire fast.
    prefix = runtime(app).settings.key_prefix
    short, store = Store(redis_client, prefix=prefix, retention_s=0.2), runtime(app).store
    since = datetime.now(UTC) - timedelta(milliseconds=1)
    old = uuid.uuid4().hex
    short.claim(uid, name="Probe", run_id=old, input_json="null")
    short.end_run(uid, run_id=old, status=RuntimeStatus.COMPLETED, output_json="null")
    wait_until(lambda: store.read(uid) is None, 10, "the finished record to expire")
    run = uuid.uuid4().hex
    store.claim(uid, name="Probe", run_id=run, input_json="null")
    store.end_run(uid, run_id=run, status=RuntimeStatus.COMPLETED, output_json="null")
    # A window that holds this test's records only: the session's others are older.
    window = {"created_time_from": since, "created_time_to": datetime.now(UTC)}
    assert [s.instance_id for s in client.iter_status_by(**window)] == [uid]
    assert client.purge_instance_history_by(**window) == 1
    assert client.get_status(uid) is None
