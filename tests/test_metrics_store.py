"""The live-run gauge's store read: exact counts by status, bounded work beyond."""

from __future__ import annotations

import uuid

from singleton.store import SHARDS, Store


def claim(store: Store, instance_id: str) -> str:
    run_id = uuid.uuid4().hex
    assert store.claim(instance_id, name="Probe", run_id=run_id, input_json="null").claimed
    return run_id


def test_live_runs_counts_each_live_status_exactly(store: Store) -> None:
    for n in range(5):
        claim(store, f"pending-{n}")
    for n in range(3):
        run_id = claim(store, f"running-{n}")
        assert store.begin_step(f"running-{n}", run_id=run_id, task_id="t1", token="token",
                                lease_s=60.0).outcome == "run"
    claim(store, "suspended")
    assert store.suspend("suspended")[0] == "ok"
    claim(store, "terminated")
    store.terminate("terminated", reason_json='"gone"')
    assert store.live_runs() == {"Pending": 5, "Running": 3, "Suspended": 1}


def test_live_runs_is_empty_without_live_runs(store: Store) -> None:
    claim(store, "done")
    store.terminate("done", reason_json='"gone"')
    assert store.live_runs() == {}


def test_live_runs_keeps_the_total_exact_when_it_samples(store: Store) -> None:
    for n in range(SHARDS * 6):
        claim(store, f"many-{n}")
    counts = store.live_runs(sample=SHARDS * 2)
    assert counts.keys() == {"Pending"}
    assert round(counts["Pending"]) == SHARDS * 6
