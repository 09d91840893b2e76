"""Terminate, then start again: the new run starts as soon as the old run's step ends,
whether a terminate, a ``terminate_existing`` start or a ``terminate_other`` beat tick
replaced the run."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from singleton import IfLive
from singleton.schedules import START_TASK
from tests.durability import SHIPPED_DEFAULTS, worker_factory
from tests.probe import events
from tests.workers import wait_until

GAP_S = 2.0
OLD = {"seconds": 4}  # the old run's one step: still running when it is replaced
NEW = {"seconds": 0.5}


@pytest.fixture
def workers(tmp_path):
    """Start workers for one test (``workers(env=...)``), stopped when it ends."""
    yield from worker_factory(tmp_path)


def steps_of(redis_client, key: str, run: str, event: str) -> list[dict]:
    return [e for e in events(redis_client, key) if e["event"] == event and e["run"] == run]


def gap_after_replacing(client, uid: str, redis_client, replace: Callable[[], None]) -> float | None:
    """Start a one-step run, replace it while its step runs; return the seconds from the
    old step's end to the new run's first step (None: not within GAP_S + 1 s)."""
    client.start_new("Timed", uid, {**OLD, "key": uid})
    first = client.get_status(uid).run_id
    wait_until(lambda: steps_of(redis_client, uid, first, "start"), 20, "the old run's step to start")
    replace()
    second = wait_until(lambda: (run := client.get_status(uid).run_id) != first and run, 20,
                        "the new run to be claimed")
    ended = wait_until(lambda: steps_of(redis_client, uid, first, "end"), 20, "the old step to end")
    old_end = ended[0]["t"]
    try:
        started = wait_until(lambda: steps_of(redis_client, uid, second, "start"), GAP_S + 1,
                             "the new run's step to start")
        gap = started[0]["t"] - old_end
    except AssertionError:
        gap = None
    client.terminate(uid)
    return gap


def assert_started_promptly(gap: float | None) -> None:
    assert gap is not None and gap <= GAP_S, (
        f"the new run's first step had not started {GAP_S + 1:.0f} s after the old step ended "
        "(it answers busy until the old step's 60 s lease runs out)" if gap is None
        else f"the new run's first step started {gap:.1f} s after the old step ended")


def test_after_terminate_the_new_runs_first_step_starts_within_2_s_of_the_old_steps_end(
    client, uid, redis_client, workers
):
    workers(env=SHIPPED_DEFAULTS)  # the shipped 60 s step lease

    def terminate_then_start() -> None:
        client.terminate(uid)
        client.start_new("Timed", uid, {**NEW, "key": uid})

    assert_started_promptly(gap_after_replacing(client, uid, redis_client, terminate_then_start))


def test_after_a_terminate_existing_start_the_new_runs_first_step_starts_within_2_s(
    client, uid, redis_client, workers
):
    workers(env=SHIPPED_DEFAULTS)

    def start_over() -> None:
        client.start_new("Timed", uid, {**NEW, "key": uid}, if_live=IfLive.TERMINATE_EXISTING)

    assert_started_promptly(gap_after_replacing(client, uid, redis_client, start_over))


def test_after_a_terminate_other_beat_tick_the_new_runs_first_step_starts_within_2_s(
    app, client, uid, redis_client, workers
):
    workers(env=SHIPPED_DEFAULTS)

    def tick() -> None:
        # What beat sends for a terminate_other entry when it cannot import the starter.
        app.send_task(START_TASK, args=["Timed", uid],
                      kwargs={"input": {**NEW, "key": uid}, "overlap": "terminate_other"})

    assert_started_promptly(gap_after_replacing(client, uid, redis_client, tick))
