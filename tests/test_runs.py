"""The run a step executes in: ``current_run()`` and the fence that fences its side effects."""

from __future__ import annotations

import pytest

from singleton import CurrentRun, NotInRun, RuntimeStatus, current_run
from singleton.runtime import runtime
from tests.durability import module_worker
from tests.holds import ledger_write
from tests.probe import events


@pytest.fixture(scope="module")
def holds_worker(tmp_path_factory):
    """One worker with the test-only orchestrators loaded, for the tests of this module."""
    yield from module_worker(tmp_path_factory)


def run_once(client, redis_client, uid: str, value: str) -> dict:
    """Run FencedWrite once on `uid`; return what its step's current_run() said."""
    client.start_new("FencedWrite", uid, {"key": uid, "value": value})
    assert client.wait_for_completion(uid, timeout=20).runtime_status is RuntimeStatus.COMPLETED
    return [e for e in events(redis_client, uid) if e["event"] == "fenced"][-1]


def test_current_run_outside_a_step_is_an_error() -> None:
    with pytest.raises(NotInRun):
        current_run()


def test_a_step_knows_its_run_and_its_fence_grows_with_every_run_of_the_id(
    app, client, uid, redis_client, holds_worker
) -> None:
    first = run_once(client, redis_client, uid, "first")
    record = runtime(app).store.read(uid)
    assert (first["instance"], first["run"], first["orchestrator"]) == (uid, record["run"], "FencedWrite")
    assert first["fence"] == int(record["fence"])
    second = run_once(client, redis_client, uid, "second")
    assert second["run"] != first["run"] and second["fence"] > first["fence"]
    # A write that carries the first run's fence, arriving late (a step whose process
    # stalled past its lease), is refused by the store that checks fences.
    assert not ledger_write(redis_client, uid, fence=first["fence"], value="stale")
    assert redis_client.hget(f"probe:ledger:{uid}", "value") == b"second"


def test_current_run_is_a_small_frozen_value() -> None:
    run = CurrentRun("id", "run", 3, "Orchestrator")
    with pytest.raises(AttributeError):
        run.fence = 4  # type: ignore[misc]
