"""Purging by filter deletes exactly the finished records that match, never more."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from singleton import RuntimeStatus
from singleton.runtime import runtime
from singleton.schedules import START_TASK
from singleton.status import LIVE_STATUSES
from tests.test_listing import create, redis_now, remove
from tests.workers import wait_until


@pytest.fixture
def window(app: Any, redis_client):
    """Create one record per status in a fresh time window; yield (ids by status, bounds)."""
    store = runtime(app).store
    since = redis_now(redis_client)
    made = {status: f"purge-{uuid.uuid4().hex[:10]}" for status in RuntimeStatus}
    for status, instance_id in made.items():
        create(store, instance_id, status)
    yield made, {"created_time_from": since, "created_time_to": redis_now(redis_client)}
    remove(store, list(made.values()))


def surviving(client, made: dict) -> set[RuntimeStatus]:
    return {status for status, i in made.items() if client.get_status(i) is not None}


def test_purge_by_filter_without_statuses_deletes_every_finished_record(client, window):
    made, bounds = window
    assert client.purge_instance_history_by(**bounds) == 3
    assert surviving(client, made) == set(LIVE_STATUSES)


def test_purge_by_filter_deletes_only_the_statuses_asked_for(client, window):
    made, bounds = window
    assert client.purge_instance_history_by(runtime_status=[RuntimeStatus.FAILED], **bounds) == 1
    assert RuntimeStatus.FAILED not in surviving(client, made)
    assert len(surviving(client, made)) == len(RuntimeStatus) - 1


def test_purge_by_filter_asking_only_for_live_statuses_deletes_nothing(client, window):
    made, bounds = window
    live = list(LIVE_STATUSES)
    assert client.purge_instance_history_by(runtime_status=live, **bounds) == 0
    assert surviving(client, made) == set(RuntimeStatus)


def test_purge_by_filter_with_an_empty_status_list_deletes_nothing(client, window):
    made, bounds = window
    assert client.purge_instance_history_by(runtime_status=[], **bounds) == 0
    assert surviving(client, made) == set(RuntimeStatus)


def test_listing_with_an_empty_status_list_matches_nothing(client, window):
    _, bounds = window
    page = client.get_status_by(runtime_status=[], **bounds)
    assert page.instances == [] and page.continuation_token is None


def test_purge_by_filter_keeps_a_record_re_run_after_it_was_listed(app, redis_client):
    # Listed in the window as Completed; re-run (and finished again) before the purge.
    store = runtime(app).store
    instance_id = f"purge-{uuid.uuid4().hex[:10]}"
    since = redis_now(redis_client)
    create(store, instance_id, RuntimeStatus.COMPLETED)
    until = redis_now(redis_client)
    create(store, instance_id, RuntimeStatus.COMPLETED)
    try:
        purged = store.purge_many([instance_id], created_from_us=since.timestamp() * 1e6,
                                  created_to_us=until.timestamp() * 1e6, statuses=["Completed"])
        assert purged == 0
        assert store.read(instance_id)["status"] == "Completed"
    finally:
        remove(store, [instance_id])


def test_purge_by_filter_keeps_a_record_whose_status_changed_after_it_was_listed(app, redis_client):
    # Listed as Failed; re-run and Completed before the purge (an open-ended window).
    store = runtime(app).store
    instance_id = f"purge-{uuid.uuid4().hex[:10]}"
    since_us = redis_now(redis_client).timestamp() * 1e6
    create(store, instance_id, RuntimeStatus.FAILED)
    create(store, instance_id, RuntimeStatus.COMPLETED)
    try:
        assert store.purge_many([instance_id], created_from_us=since_us, statuses=["Failed"]) == 0
        assert store.read(instance_id)["status"] == "Completed"
        both = ["Failed", "Completed"]
        assert store.purge_many([instance_id], created_from_us=since_us, statuses=both) == 1
    finally:
        remove(store, [instance_id])


def test_purging_an_instance_deletes_its_beat_tick_counts(app, client, worker, uid):
    app.send_task(START_TASK, args=["Timed", uid], kwargs={"input": {"key": uid, "seconds": 0}})
    store = runtime(app).store
    wait_until(lambda: store.tick_counts(uid).get("started"), 20, "the tick to start the run")
    client.wait_for_completion(uid, timeout=30)
    assert client.purge_instance_history(uid) == 1
    assert store.tick_counts(uid) == {}
