"""A run claimed on an ID whose finished record expired is listed like any other."""

from __future__ import annotations

import json
import uuid

import pytest

from singleton import RuntimeStatus
from tests.workers import wait_until


def listed(store, instance_id: str) -> bool:
    shards = store.index_page(float("inf"), oldest_us=float("-inf"), count=1000)
    return any(i == instance_id for shard in shards for i, _ in shard)


@pytest.mark.xfail(strict=True, reason="the expired record's expiry-index entry is left behind, "
                   "and the next sweep deletes the new run's listing entry")
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
