"""The store's Lua scripts, driven through singleton.store.Store against the real test Redis.

Every test gets its own key prefix, so tests never see each other's keys. No worker runs.
"""

from __future__ import annotations

import json
import re
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from celery import Celery
from redis.backoff import NoBackoff
from redis.retry import Retry

from proj.redis_server import free_port
from singleton import RuntimeStatus, ServiceUnavailable, Settings
from singleton.store import SHARDS, ClaimResult, Store
from tests.conftest import STORE_RETENTION_S

INF = float("inf")
RETENTION_S = STORE_RETENTION_S

# -- helpers ---------------------------------------------------------------------------


def shard_of(instance_id: str) -> int:
    return zlib.crc32(instance_id.encode()) % SHARDS


def ids_in_one_shard(count: int, tag: str) -> list[str]:
    """Return `count` distinct IDs that all land in the same shard."""
    target = shard_of(f"{tag}-0")
    found: list[str] = []
    n = 0
    while len(found) < count:
        candidate = f"{tag}-{n}"
        if shard_of(candidate) == target:
            found.append(candidate)
        n += 1
    return found


def inst_key(prefix: str, instance_id: str) -> str:
    return f"{prefix}:{{{shard_of(instance_id):x}}}:i:{instance_id}"


def shard_key(prefix: str, instance_id: str, name: str) -> str:
    return f"{prefix}:{{{shard_of(instance_id):x}}}:{name}"


def claim(store: Store, instance_id: str, input_json: str = '{"n":1}') -> ClaimResult:
    return store.claim(instance_id, name="Probe", run_id=uuid.uuid4().hex, input_json=input_json)


def indexed_ids(store: Store) -> set[str]:
    return {i for rows in store.index_page(INF, oldest_us=-INF, count=1000) for i, _ in rows}


def redis_now_us(redis_client: redis.Redis) -> int:
    seconds, micros = redis_client.time()
    return seconds * 1_000_000 + micros


def keys_of(redis_client: redis.Redis, prefix: str) -> set[str]:
    return {k.decode() for k in redis_client.keys(f"{prefix}*")}


def poll(predicate: Callable[[], Any], timeout: float = 5.0, what: str = "a condition") -> Any:
    """A short, bounded poll loop: return the first truthy value of `predicate`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


# -- fixtures --------------------------------------------------------------------------


# -- claims ----------------------------------------------------------------------------


def test_claim_of_new_id_returns_claimed_pending_run(store: Store, redis_client: redis.Redis) -> None:
    before = redis_now_us(redis_client)
    result = store.claim("fresh", name="Probe", run_id="run-1", input_json='{"n":1}')
    after = redis_now_us(redis_client)

    assert result.claimed is True
    assert result.status is RuntimeStatus.PENDING
    assert result.run_id == "run-1"
    assert before <= result.fence <= after
    record = store.read("fresh")
    assert record is not None
    assert record["name"] == "Probe"
    assert record["run"] == "run-1"
    assert record["status"] == "Pending"
    assert record["input"] == '{"n":1}'
    assert int(record["fence"]) == result.fence
    assert before <= int(record["created"]) == int(record["updated"]) <= after
    assert "output" not in record


def test_second_claim_while_pending_is_refused_with_the_holders_run_id(store: Store) -> None:
    first = claim(store, "one")
    second = store.claim("one", name="Probe", run_id="run-2", input_json='"other input"')

    assert second.claimed is False
    assert second.status is RuntimeStatus.PENDING
    assert second.run_id == first.run_id
    record = store.read("one")
    assert record["run"] == first.run_id
    assert record["input"] == '{"n":1}'
    assert int(record["fence"]) == first.fence


def test_second_claim_while_running_is_refused_with_running_status(store: Store) -> None:
    first = claim(store, "one")
    assert (
        store.begin_step("one", run_id=first.run_id, task_id="task-1", token="tok", lease_s=30).outcome
        == "run"
    )

    second = claim(store, "one")

    assert second.claimed is False
    assert second.status is RuntimeStatus.RUNNING
    assert second.run_id == first.run_id
    assert store.read("one")["run"] == first.run_id


@pytest.mark.parametrize("ending", ["Completed", "Failed", "Terminated"])
def test_claim_after_terminal_run_succeeds_with_strictly_greater_fence(store: Store, ending: str) -> None:
    first = claim(store, "one")
    if ending == "Terminated":
        assert store.terminate("one", reason_json='"stop"') == ("ok", "Pending")
    else:
        assert (
            store.end_run("one", run_id=first.run_id, status=RuntimeStatus(ending), output_json='"out"')
            is True
        )

    second = store.claim("one", name="Probe", run_id="run-2", input_json='{"n":2}')

    assert second.claimed is True
    assert second.fence > first.fence
    record = store.read("one")
    assert record["status"] == "Pending"
    assert record["run"] == "run-2"
    assert record["input"] == '{"n":2}'
    assert "output" not in record
    assert int(record["fence"]) == second.fence


def test_fence_keeps_growing_across_purge(store: Store) -> None:
    first = claim(store, "one")
    assert store.end_run("one", run_id=first.run_id, status=RuntimeStatus.COMPLETED, output_json="1")
    second = claim(store, "one")
    assert store.end_run("one", run_id=second.run_id, status=RuntimeStatus.COMPLETED, output_json="2")
    assert store.purge("one") == ("ok", "Completed")
    assert store.read("one") is None

    third = claim(store, "one")

    assert third.claimed is True
    assert first.fence < second.fence < third.fence


# -- ending a run ----------------------------------------------------------------------


def test_end_run_moves_the_current_run_to_its_terminal_status(store: Store) -> None:
    run = claim(store, "one")

    assert (
        store.end_run("one", run_id=run.run_id, status=RuntimeStatus.COMPLETED, output_json='{"result":3}')
        is True
    )

    record = store.read("one")
    assert record["status"] == "Completed"
    assert record["output"] == '{"result":3}'
    assert int(record["updated"]) >= int(record["created"])


def test_end_run_with_stale_run_id_returns_false_and_does_not_change_the_record(store: Store) -> None:
    claim(store, "one")
    before = store.read("one")

    assert (
        store.end_run("one", run_id="not-the-run", status=RuntimeStatus.COMPLETED, output_json='"x"') is False
    )

    assert store.read("one") == before


def test_end_run_of_an_already_terminal_run_returns_false(store: Store) -> None:
    run = claim(store, "one")
    assert store.end_run("one", run_id=run.run_id, status=RuntimeStatus.FAILED, output_json='"boom"') is True
    before = store.read("one")

    assert (
        store.end_run("one", run_id=run.run_id, status=RuntimeStatus.COMPLETED, output_json='"late"') is False
    )

    assert store.read("one") == before


def test_end_run_of_a_missing_record_returns_false_and_creates_nothing(
    store: Store, redis_client: redis.Redis, prefix: str
) -> None:
    assert store.end_run("ghost", run_id="run", status=RuntimeStatus.COMPLETED, output_json='"x"') is False
    assert store.read("ghost") is None
    assert keys_of(redis_client, prefix) == set()


# -- step gate -------------------------------------------------------------------------


def test_begin_step_runs_and_moves_pending_to_running(store: Store) -> None:
    run = claim(store, "one")

    gate = store.begin_step("one", run_id=run.run_id, task_id="task-1", token="tok-a", lease_s=30)

    assert (gate.outcome, gate.detail) == ("run", "Pending")
    assert store.read("one")["status"] == "Running"
    second = store.begin_step("one", run_id=run.run_id, task_id="task-2", token="tok-b", lease_s=30)
    assert (second.outcome, second.detail) == ("run", "Running")


def test_begin_step_is_busy_while_another_tokens_lease_is_valid(store: Store) -> None:
    run = claim(store, "one")
    assert (
        store.begin_step("one", run_id=run.run_id, task_id="task-1", token="tok-a", lease_s=30).outcome
        == "run"
    )

    gate = store.begin_step("one", run_id=run.run_id, task_id="task-1", token="tok-b", lease_s=30)

    assert gate.outcome == "busy"
    assert 0 < int(gate.detail) <= 30_000_000


def test_begin_step_runs_again_once_the_other_lease_expired(store: Store) -> None:
    run = claim(store, "one")
    assert (
        store.begin_step("one", run_id=run.run_id, task_id="task-1", token="tok-a", lease_s=0.2).outcome
        == "run"
    )
    assert (
        store.begin_step("one", run_id=run.run_id, task_id="task-1", token="tok-b", lease_s=30).outcome
        == "busy"
    )

    gate = poll(
        lambda: (
            (
                g := store.begin_step("one", run_id=run.run_id, task_id="task-1", token="tok-b", lease_s=30)
            ).outcome
            == "run"
            and g
        ),
        timeout=3,
        what="the 0.2 s lease to expire",
    )

    assert (gate.outcome, gate.detail) == ("run", "Running")
    # The lease is now tok-b's: tok-a can no longer mark the step, tok-b can.
    assert (
        store.complete_step("one", run_id=run.run_id, task_id="task-1", token="tok-a", result_json='"a"')
        is False
    )
    assert (
        store.complete_step("one", run_id=run.run_id, task_id="task-1", token="tok-b", result_json='"b"')
        is True
    )
    assert (
        store.begin_step("one", run_id=run.run_id, task_id="task-1", token="tok-c", lease_s=30).detail
        == '"b"'
    )


def test_begin_step_is_done_with_the_json_result_after_complete_step(store: Store) -> None:
    run = claim(store, "one")
    assert (
        store.begin_step("one", run_id=run.run_id, task_id="task-1", token="tok-a", lease_s=30).outcome
        == "run"
    )
    result = json.dumps({"greetings": ["Hello Tokyo!"], "n": 2})
    assert (
        store.complete_step("one", run_id=run.run_id, task_id="task-1", token="tok-a", result_json=result)
        is True
    )

    for token in ("tok-a", "tok-b"):
        gate = store.begin_step("one", run_id=run.run_id, task_id="task-1", token=token, lease_s=30)
        assert (gate.outcome, gate.detail) == ("done", result)


def test_begin_step_with_wrong_run_id_is_stale_and_takes_no_lease(store: Store) -> None:
    run = claim(store, "one")

    gate = store.begin_step("one", run_id="other-run", task_id="task-1", token="tok-a", lease_s=30)

    assert (gate.outcome, gate.detail) == ("stale", "Pending")
    assert store.read("one")["status"] == "Pending"
    assert (
        store.begin_step("one", run_id=run.run_id, task_id="task-1", token="tok-b", lease_s=30).outcome
        == "run"
    )


def test_begin_step_after_terminate_is_stale(store: Store) -> None:
    run = claim(store, "one")
    assert (
        store.begin_step("one", run_id=run.run_id, task_id="task-1", token="tok-a", lease_s=30).outcome
        == "run"
    )
    assert store.terminate("one", reason_json='"enough"') == ("ok", "Running")

    gate = store.begin_step("one", run_id=run.run_id, task_id="task-2", token="tok-b", lease_s=30)

    assert (gate.outcome, gate.detail) == ("stale", "Terminated")
    assert store.read("one")["status"] == "Terminated"


def test_begin_step_of_a_missing_record_is_stale(
    store: Store, redis_client: redis.Redis, prefix: str
) -> None:
    gate = store.begin_step("ghost", run_id="run", task_id="task-1", token="tok", lease_s=30)

    assert (gate.outcome, gate.detail) == ("stale", "")
    assert keys_of(redis_client, prefix) == set()


def test_a_step_mark_with_the_wrong_token_returns_false_and_keeps_the_lease(store: Store) -> None:
    run = claim(store, "one")
    assert (
        store.begin_step("one", run_id=run.run_id, task_id="task-1", token="tok-a", lease_s=30).outcome
        == "run"
    )

    assert (
        store.complete_step("one", run_id=run.run_id, task_id="task-1", token="tok-x", result_json='"x"')
        is False
    )
    assert store.release_step("one", run_id=run.run_id, task_id="task-1", token="tok-x") is False
    assert (
        store.complete_step("one", run_id="other-run", task_id="task-1", token="tok-a", result_json='"x"')
        is False
    )
    assert (
        store.complete_step(
            "one", run_id=run.run_id, task_id="task-unknown", token="tok-a", result_json='"x"'
        )
        is False
    )

    assert (
        store.begin_step("one", run_id=run.run_id, task_id="task-1", token="tok-b", lease_s=30).outcome
        == "busy"
    )


def test_release_step_lets_another_delivery_run_at_once(store: Store) -> None:
    run = claim(store, "one")
    assert (
        store.begin_step("one", run_id=run.run_id, task_id="task-1", token="tok-a", lease_s=30).outcome
        == "run"
    )

    assert store.release_step("one", run_id=run.run_id, task_id="task-1", token="tok-a") is True

    assert (
        store.begin_step("one", run_id=run.run_id, task_id="task-1", token="tok-b", lease_s=30).outcome
        == "run"
    )


def test_renew_step_extends_the_lease(store: Store) -> None:
    run = claim(store, "one")
    assert (
        store.begin_step("one", run_id=run.run_id, task_id="task-1", token="tok-a", lease_s=1).outcome
        == "run"
    )

    assert store.renew_step("one", run_id=run.run_id, task_id="task-1", token="tok-a", lease_s=30) is True

    gate = store.begin_step("one", run_id=run.run_id, task_id="task-1", token="tok-b", lease_s=30)
    assert gate.outcome == "busy"
    assert 20_000_000 < int(gate.detail) <= 30_000_000


def test_complete_step_after_the_run_ended_returns_false(store: Store) -> None:
    run = claim(store, "one")
    assert (
        store.begin_step("one", run_id=run.run_id, task_id="task-1", token="tok-a", lease_s=30).outcome
        == "run"
    )
    assert store.end_run("one", run_id=run.run_id, status=RuntimeStatus.COMPLETED, output_json="null")

    assert (
        store.complete_step("one", run_id=run.run_id, task_id="task-1", token="tok-a", result_json='"late"')
        is False
    )


# -- terminate and purge ---------------------------------------------------------------


def test_terminate_of_a_missing_instance_is_missing(
    store: Store, redis_client: redis.Redis, prefix: str
) -> None:
    assert store.terminate("ghost", reason_json='"why"') == ("missing", "")
    assert keys_of(redis_client, prefix) == set()


@pytest.mark.parametrize("running", [False, True])
def test_terminate_of_a_live_run_is_ok_and_records_the_reason(store: Store, running: bool) -> None:
    run = claim(store, "one")
    if running:
        assert (
            store.begin_step("one", run_id=run.run_id, task_id="task-1", token="tok", lease_s=30).outcome
            == "run"
        )

    outcome = store.terminate("one", reason_json='"operator said so"')

    assert outcome == ("ok", "Running" if running else "Pending")
    record = store.read("one")
    assert record["status"] == "Terminated"
    assert record["output"] == '"operator said so"'
    assert record["run"] == run.run_id


@pytest.mark.parametrize("ending", [RuntimeStatus.COMPLETED, RuntimeStatus.FAILED])
def test_terminate_of_a_finished_run_is_terminal_and_changes_nothing(
    store: Store, ending: RuntimeStatus
) -> None:
    run = claim(store, "one")
    assert store.end_run("one", run_id=run.run_id, status=ending, output_json='"out"')
    before = store.read("one")

    assert store.terminate("one", reason_json='"too late"') == ("terminal", ending.value)

    assert store.read("one") == before


def test_terminate_twice_reports_terminal_the_second_time(store: Store) -> None:
    claim(store, "one")
    assert store.terminate("one", reason_json='"first"') == ("ok", "Pending")

    assert store.terminate("one", reason_json='"second"') == ("terminal", "Terminated")

    assert store.read("one")["output"] == '"first"'


def test_purge_of_a_missing_instance_is_missing(store: Store) -> None:
    assert store.purge("ghost") == ("missing", "")


@pytest.mark.parametrize("running", [False, True])
def test_purge_of_a_live_instance_is_refused_and_keeps_the_record(store: Store, running: bool) -> None:
    run = claim(store, "one")
    if running:
        assert (
            store.begin_step("one", run_id=run.run_id, task_id="task-1", token="tok", lease_s=30).outcome
            == "run"
        )
    before = store.read("one")

    assert store.purge("one") == ("live", "Running" if running else "Pending")

    assert store.read("one") == before
    assert "one" in indexed_ids(store)


def test_purge_of_a_finished_instance_deletes_record_and_index_entries(
    store: Store, redis_client: redis.Redis, prefix: str
) -> None:
    run = claim(store, "one")
    assert store.end_run("one", run_id=run.run_id, status=RuntimeStatus.COMPLETED, output_json='"done"')

    assert store.purge("one") == ("ok", "Completed")

    assert store.read("one") is None
    assert "one" not in indexed_ids(store)
    assert redis_client.zscore(shard_key(prefix, "one", "expiring"), "one") is None
    assert store.purge("one") == ("missing", "")


# -- undo_claim ------------------------------------------------------------------------


def test_reclaiming_a_finished_id_keeps_the_replaced_record_for_five_minutes_only(
    store: Store, redis_client: redis.Redis, prefix: str
) -> None:
    first = claim(store, "one")
    assert store.end_run("one", run_id=first.run_id, status=RuntimeStatus.COMPLETED, output_json='"old"')
    claim(store, "one")
    backup = shard_key(prefix, "one", "prev:one")
    assert redis_client.hget(backup, "output") == b'"old"'
    assert 0 < redis_client.pttl(backup) <= 300_000
    # A fresh ID keeps no backup, so an undo cannot restore a stale one.
    assert store.purge("one")[0] == "live"
    store.terminate("one", reason_json='"x"')
    store.purge("one")
    claim(store, "one")
    assert redis_client.exists(backup) == 0


def test_undo_claim_on_a_fresh_id_removes_the_record_and_its_index_entry(store: Store) -> None:
    result = claim(store, "one")
    assert "one" in indexed_ids(store)

    assert store.undo_claim("one", run_id=result.run_id) is True

    assert store.read("one") is None
    assert "one" not in indexed_ids(store)


def test_undo_claim_after_reclaiming_a_completed_id_restores_the_previous_record(
    store: Store, redis_client: redis.Redis, prefix: str
) -> None:
    first = claim(store, "one")
    assert store.end_run(
        "one", run_id=first.run_id, status=RuntimeStatus.COMPLETED, output_json='{"old":"output"}'
    )
    old = store.read("one")
    second = store.claim("one", name="Probe", run_id="run-2", input_json='"new input"')
    assert second.claimed and second.fence > first.fence

    assert store.undo_claim("one", run_id=second.run_id) is True

    restored = store.read("one")
    assert restored["status"] == "Completed"
    assert restored["output"] == '{"old":"output"}'
    assert restored["run"] == first.run_id
    assert restored["input"] == old["input"]
    assert restored["created"] == old["created"]
    assert restored["updated"] == old["updated"]
    assert int(restored["fence"]) == second.fence
    index = dict(store.index_page(INF, oldest_us=-INF, count=100)[shard_of("one")])
    assert index["one"] == int(old["created"])
    expires = redis_client.zscore(shard_key(prefix, "one", "expiring"), "one")
    assert expires == pytest.approx(int(old["updated"]) + RETENTION_S * 1_000_000)
    assert 0 < redis_client.pttl(inst_key(prefix, "one")) <= RETENTION_S * 1000
    # The ID is free again, and the next claim's fence is above the undone one.
    third = claim(store, "one")
    assert third.claimed and third.fence > second.fence


def test_undo_claim_does_nothing_once_the_run_is_running(store: Store) -> None:
    result = claim(store, "one")
    assert (
        store.begin_step("one", run_id=result.run_id, task_id="task-1", token="tok", lease_s=30).outcome
        == "run"
    )
    before = store.read("one")

    assert store.undo_claim("one", run_id=result.run_id) is False

    assert store.read("one") == before
    assert "one" in indexed_ids(store)


def test_undo_claim_does_nothing_once_the_run_is_no_longer_ours(store: Store) -> None:
    first = claim(store, "one")
    assert store.end_run("one", run_id=first.run_id, status=RuntimeStatus.COMPLETED, output_json='"1"')
    second = claim(store, "one")
    before = store.read("one")

    assert store.undo_claim("one", run_id=first.run_id) is False

    assert store.read("one") == before
    assert store.read("one")["run"] == second.run_id


def test_undo_claim_does_nothing_after_the_run_ended(store: Store) -> None:
    result = claim(store, "one")
    assert store.end_run("one", run_id=result.run_id, status=RuntimeStatus.FAILED, output_json='"boom"')
    before = store.read("one")

    assert store.undo_claim("one", run_id=result.run_id) is False

    assert store.read("one") == before


# -- retention -------------------------------------------------------------------------


@pytest.mark.parametrize("ending", ["end_run", "terminate"])
def test_terminal_records_get_a_ttl_close_to_the_retention(
    store: Store, redis_client: redis.Redis, prefix: str, ending: str
) -> None:
    run = claim(store, "one")
    assert redis_client.pttl(inst_key(prefix, "one")) == -1
    assert (
        store.begin_step("one", run_id=run.run_id, task_id="task-1", token="tok", lease_s=30).outcome == "run"
    )
    assert redis_client.pttl(inst_key(prefix, "one")) == -1

    if ending == "end_run":
        assert store.end_run("one", run_id=run.run_id, status=RuntimeStatus.COMPLETED, output_json='"x"')
    else:
        assert store.terminate("one", reason_json='"x"')[0] == "ok"

    ttl_ms = redis_client.pttl(inst_key(prefix, "one"))
    assert RETENTION_S * 1000 - 2000 < ttl_ms <= RETENTION_S * 1000
    record = store.read("one")
    expires = redis_client.zscore(shard_key(prefix, "one", "expiring"), "one")
    assert expires == int(record["updated"]) + RETENTION_S * 1_000_000
    # The run's step markers go with the run.
    assert redis_client.exists(f"{prefix}:{{{shard_of('one'):x}}}:steps:one") == 0


def test_live_records_have_no_ttl(store: Store, redis_client: redis.Redis, prefix: str) -> None:
    first = claim(store, "one")
    assert store.end_run("one", run_id=first.run_id, status=RuntimeStatus.COMPLETED, output_json='"x"')
    assert redis_client.pttl(inst_key(prefix, "one")) > 0

    claim(store, "one")

    assert redis_client.pttl(inst_key(prefix, "one")) == -1
    assert redis_client.zscore(shard_key(prefix, "one", "expiring"), "one") is None


def test_expired_records_leave_the_index_on_a_later_claim_in_the_same_shard(
    make_store: Callable[..., Store],
) -> None:
    store = make_store(retention_s=0.2)
    old, new = ids_in_one_shard(2, "sweep")
    run = claim(store, old)
    assert store.end_run(old, run_id=run.run_id, status=RuntimeStatus.COMPLETED, output_json='"x"')

    poll(lambda: store.read(old) is None, timeout=5, what="the record to expire")
    assert old in indexed_ids(store), "the index entry outlives the record until a claim sweeps it"

    claim(store, new)

    assert indexed_ids(store) == {new}


def test_a_claim_in_another_shard_does_not_sweep_this_shard(make_store: Callable[..., Store]) -> None:
    store = make_store(retention_s=0.2)
    old = "sweep-a"
    other = next(f"sweep-b{n}" for n in range(1000) if shard_of(f"sweep-b{n}") != shard_of(old))
    run = claim(store, old)
    assert store.end_run(old, run_id=run.run_id, status=RuntimeStatus.COMPLETED, output_json='"x"')
    poll(lambda: store.read(old) is None, timeout=5, what="the record to expire")

    claim(store, other)

    assert old in indexed_ids(store)


# -- keys ------------------------------------------------------------------------------


def test_all_keys_of_a_claim_start_with_the_prefix_and_share_one_hash_tag(
    store: Store, redis_client: redis.Redis, prefix: str
) -> None:
    run = claim(store, "tagged")
    assert (
        store.begin_step("tagged", run_id=run.run_id, task_id="task-1", token="tok", lease_s=30).outcome
        == "run"
    )
    live_keys = keys_of(redis_client, prefix)
    # The final step ends the run itself: its own lease does not drain.
    assert store.end_run(
        "tagged", run_id=run.run_id, status=RuntimeStatus.COMPLETED, output_json='"x"', task_id="task-1"
    )
    ended_keys = keys_of(redis_client, prefix)

    tag = f"{{{shard_of('tagged'):x}}}"
    base = f"{prefix}:{tag}"
    assert live_keys == {f"{base}:i:tagged", f"{base}:steps:tagged", f"{base}:created", f"{base}:alive"}
    assert ended_keys == {f"{base}:i:tagged", f"{base}:h:tagged", f"{base}:created", f"{base}:expiring"}
    for key in live_keys | ended_keys:
        assert key.startswith(f"{prefix}:")
        assert re.findall(r"\{[^}]*\}", key)[0] == tag


WEIRD_IDS = ["a}:created", "{0}:i:victim", "x:steps:victim", "}", "{", "{}", "::", ":i:", "}{:expiring"]


def test_instance_ids_with_braces_or_colons_only_touch_their_own_keys(
    store: Store, redis_client: redis.Redis, prefix: str
) -> None:
    victim = claim(store, "victim")
    assert (
        store.begin_step("victim", run_id=victim.run_id, task_id="task-1", token="tok", lease_s=30).outcome
        == "run"
    )
    victim_record = store.read("victim")

    for instance_id in WEIRD_IDS:
        run = claim(store, instance_id)
        assert run.claimed, instance_id
        assert (
            store.begin_step(
                instance_id, run_id=run.run_id, task_id="task-1", token="tok", lease_s=30
            ).outcome
            == "run"
        )
        assert store.end_run(
            instance_id,
            run_id=run.run_id,
            status=RuntimeStatus.COMPLETED,
            output_json=json.dumps(instance_id),
            task_id="task-1",
        )

    assert store.read("victim") == victim_record
    assert (
        store.begin_step("victim", run_id=victim.run_id, task_id="task-1", token="tok-2", lease_s=30).outcome
        == "busy"
    )
    everything = ["victim", *WEIRD_IDS]
    expected = {inst_key(prefix, i) for i in everything}
    expected |= {f"{prefix}:{{{shard_of('victim'):x}}}:steps:victim"}
    expected |= {shard_key(prefix, i, "created") for i in everything}
    expected |= {shard_key(prefix, i, "expiring") for i in WEIRD_IDS}
    expected |= {shard_key(prefix, "victim", "alive")}
    expected |= {shard_key(prefix, i, f"h:{i}") for i in WEIRD_IDS}
    assert keys_of(redis_client, prefix) == expected
    # The scripts read the instance ID back out of the record's key: only the victim is live.
    assert redis_client.zrange(shard_key(prefix, "victim", "alive"), 0, -1) == [b"victim"]
    for instance_id in WEIRD_IDS:
        key = inst_key(prefix, instance_id)
        assert redis_client.type(key) == b"hash"
        assert re.findall(r"\{[^}]*\}", key)[0] == f"{{{shard_of(instance_id):x}}}"
        assert store.read(instance_id)["output"] == json.dumps(instance_id)
    for shard in {shard_of(i) for i in everything}:
        members = {m.decode() for m in redis_client.zrange(f"{prefix}:{{{shard:x}}}:created", 0, -1)}
        assert members == {i for i in everything if shard_of(i) == shard}


@pytest.mark.parametrize("bad_prefix", ["with{brace", "with}brace", "{x}"])
def test_store_rejects_a_prefix_containing_a_brace(redis_client: redis.Redis, bad_prefix: str) -> None:
    with pytest.raises(ValueError, match="must not contain"):
        Store(redis_client, prefix=bad_prefix, retention_s=RETENTION_S)


# -- unreachable Redis -----------------------------------------------------------------


@pytest.fixture(scope="module")
def unreachable_store() -> Iterator[Store]:
    # No retries: redis-py's default retry with backoff would only make the test slow.
    client = redis.Redis(
        host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0)
    )
    yield Store(client, prefix="st-unreachable", retention_s=RETENTION_S)
    client.close()


@pytest.mark.parametrize(
    "operation",
    [
        lambda s: s.claim("one", name="Probe", run_id="run", input_json="null"),
        lambda s: s.undo_claim("one", run_id="run"),
        lambda s: s.begin_step("one", run_id="run", task_id="task", token="tok", lease_s=1),
        lambda s: s.renew_step("one", run_id="run", task_id="task", token="tok", lease_s=1),
        lambda s: s.complete_step("one", run_id="run", task_id="task", token="tok", result_json="1"),
        lambda s: s.release_step("one", run_id="run", task_id="task", token="tok"),
        lambda s: s.end_run("one", run_id="run", status=RuntimeStatus.COMPLETED, output_json="null"),
        lambda s: s.terminate("one", reason_json="null"),
        lambda s: s.purge("one"),
        lambda s: s.read("one"),
        lambda s: s.index_page(INF, oldest_us=-INF, count=10),
    ],
    ids=[
        "claim", "undo_claim", "begin_step", "renew_step", "complete_step", "release_step", "end_run",
        "terminate", "purge", "read", "index",
    ],
)
def test_unreachable_redis_raises_service_unavailable(
    unreachable_store: Store, operation: Callable[[Store], Any]
) -> None:
    with pytest.raises(ServiceUnavailable, match="The record store is unreachable") as caught:
        operation(unreachable_store)
    assert isinstance(caught.value.__cause__, redis.ConnectionError)


# -- the store of an app -----------------------------------------------------------------
def test_the_store_of_an_app_uses_its_result_backends_server_with_a_bounded_waiting_pool(
    redis_server: Any, prefix: str
) -> None:
    app = Celery("store-test", set_as_current=False, backend=redis_server.url)
    settings = Settings(key_prefix=prefix, max_connections=2, connection_wait=0.2)
    store = Store.from_app(app, settings)
    assert claim(store, "one").claimed and store.read("one")["status"] == "Pending"
    pool = store._redis.connection_pool
    assert isinstance(pool, redis.BlockingConnectionPool)
    assert pool.connection_kwargs["port"] == app.backend.client.connection_pool.connection_kwargs["port"]
    held = [pool.get_connection() for _ in range(2)]
    try:
        # Every connection is busy: a call waits `connection_wait`, then says so.
        started = time.monotonic()
        with pytest.raises(ServiceUnavailable):
            store.read("one")
        assert time.monotonic() - started >= 0.2
    finally:
        for connection in held:
            pool.release(connection)
    assert store.read("one")["status"] == "Pending"
    pool.disconnect()
