"""Periodic singleton starts under a real ``celery beat`` (1-second ticks) and a real worker.

Where ticks must find the previous run live, its step is held until every tick was
decided (tests/probe.py ``Held``). Each run's steps record their start and end times and
their run ID.
"""

from __future__ import annotations

from collections import defaultdict
from itertools import pairwise

import pytest

from singleton.runtime import runtime
from singleton.schedules import START_TASK, singleton_entry
from tests.probe import events, release
from tests.services import Beat, both_brokers
from tests.workers import wait_until

pytestmark = [pytest.mark.usefixtures("broker"), both_brokers]
TICKS = 7

PROJ_BEAT = """
from proj import app
from singleton.schedules import singleton_entry
from tests.services import Limited

app.conf.beat_schedule = {{"tick": singleton_entry({name!r}, {id!r}, schedule=Limited(1.0, {ticks}),
                                                  input={input!r}, overlap={overlap!r})}}
"""

# An app without the singleton layer: beat cannot import the starter, so it uses send_task.
BARE_BEAT = """
from celery import Celery
import singleton.logs
from singleton.schedules import singleton_entry
from tests.services import Limited

singleton.logs.install()  # the configured log formats print the run's identity
app = Celery("bare")
app.config_from_object("celeryconfig")
app.conf.beat_schedule = {{"tick": singleton_entry({name!r}, {id!r}, schedule=Limited(1.0, {ticks}),
                                                  input={input!r}, overlap={overlap!r})}}
"""


def run_beats(app, tmp_path, uid: str, modules: list[str], ticks: int = TICKS) -> dict[str, int]:
    """Run one beat per module source until all their ticks were sent and decided.

    Each beat sends `ticks` ticks (tests.services.Limited), then none: beat is stopped
    only after every tick it logged has ended, started or skipped.
    """
    beats = [Beat(tmp_path, source, name=f"beat{n}").start() for n, source in enumerate(modules)]
    try:
        wait_until(lambda: all(b.ticks_sent() == ticks for b in beats), 30, f"{ticks} ticks per beat")
        return wait_decided(app, uid, ticks * len(beats))
    finally:
        for beat in beats:
            beat.stop()


def wait_decided(app, uid: str, ticks: int) -> dict[str, int]:
    """Wait until `ticks` ticks of the instance ended (started or skipped); return the counts."""
    store = runtime(app).store

    def decided():
        counts = store.tick_counts(uid)
        return counts if counts.get("started", 0) + counts.get("skipped", 0) == ticks else None

    try:
        return wait_until(decided, 30, "every tick to end")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {ticks} ticks, counts {store.tick_counts(uid)}") from None


def spans(redis_client, key: str) -> dict[str, dict]:
    """Return each run's first start, last end and step count, by run ID."""
    runs: dict[str, dict] = defaultdict(lambda: {"start": float("inf"), "end": 0.0, "steps": 0})
    for event in events(redis_client, key):
        run = runs[event["run"]]
        if event["event"] == "start":
            run["start"] = min(run["start"], event["t"])
            run["steps"] += 1
        else:
            run["end"] = max(run["end"], event["t"])
    return dict(sorted(runs.items(), key=lambda item: item[1]["start"]))


def assert_never_overlap(runs: dict[str, dict]) -> None:
    ordered = list(runs.values())
    for before, after in pairwise(ordered):
        assert after["start"] >= before["end"], f"runs overlap: {before} and {after}"


def entry_source(template: str, uid: str, overlap: str, ticks: int = TICKS, name: str = "Held",
                 **input) -> str:
    return template.format(name=name, id=uid, input={"key": uid, **input}, overlap=overlap, ticks=ticks)


def test_ticks_during_a_live_run_are_skipped_logged_and_counted(app, client, redis_client, worker, uid,
                                                                tmp_path):
    counts = run_beats(app, tmp_path, uid, [entry_source(PROJ_BEAT, uid, "skip")])
    release(redis_client, uid)
    client.wait_for_completion(uid, timeout=30)

    assert len(spans(redis_client, uid)) == 1
    assert counts == {"started": 1, "skipped": TICKS - 1}
    skipped_lines = [line for line in worker.log.read_text().splitlines() if f"{uid}' skipped" in line]
    assert len(skipped_lines) == counts["skipped"]
    assert all("INFO" in line for line in skipped_lines)


def test_two_beat_processes_still_start_one_run_at_a_time(app, client, redis_client, worker, uid, tmp_path):
    # One beat imports the starter task (apply_async), the other cannot (send_task).
    sources = [entry_source(template, uid, "skip") for template in (PROJ_BEAT, BARE_BEAT)]
    counts = run_beats(app, tmp_path, uid, sources)
    release(redis_client, uid)
    client.wait_for_completion(uid, timeout=30)

    assert len(spans(redis_client, uid)) == 1
    assert counts == {"started": 1, "skipped": 2 * TICKS - 1}


def test_buffer_one_keeps_one_missed_tick_and_starts_it_when_the_run_ends(app, client, redis_client,
                                                                          worker, uid):
    # Three ticks at once: the first starts, the second is buffered, the third skipped.
    kwargs = {"input": {"key": uid}, "overlap": "buffer_one", "poll": 0.2}
    for _ in range(3):
        app.send_task(START_TASK, args=["Held", uid], kwargs=kwargs)
    store = runtime(app).store
    wait_until(lambda: store.tick_counts(uid) == {"started": 1, "buffered": 1, "skipped": 1}, 20,
               "one tick to start, one to be buffered, one skipped")
    release(redis_client, uid)
    wait_until(lambda: len(spans(redis_client, uid)) == 2, 20, "the buffered tick's run to start")
    counts = wait_decided(app, uid, 3)
    release(redis_client, uid)
    client.wait_for_completion(uid, timeout=30)

    first, second = spans(redis_client, uid).values()
    assert 0 <= second["start"] - first["end"] < 1.0  # started as soon as the first ended
    assert counts == {"started": 2, "buffered": 1, "skipped": 1}


def test_buffer_one_under_beat_runs_back_to_back_with_at_most_one_buffered(app, client, redis_client,
                                                                           worker, uid, tmp_path):
    # The first run is held through every tick: one tick is buffered, the rest skipped.
    store = runtime(app).store
    beat = Beat(tmp_path, entry_source(PROJ_BEAT, uid, "buffer_one"), name="beat0").start()
    try:
        wait_until(lambda: beat.ticks_sent() == TICKS, 30, f"{TICKS} ticks")
        wait_until(lambda: store.tick_counts(uid) == {"started": 1, "buffered": 1, "skipped": TICKS - 2},
                   30, "every tick but the buffered one to be decided")
    finally:
        beat.stop()
    release(redis_client, uid)
    counts = wait_decided(app, uid, TICKS)
    release(redis_client, uid)
    client.wait_for_completion(uid, timeout=30)

    runs = list(spans(redis_client, uid).values())
    assert_never_overlap(dict(enumerate(runs)))
    assert len(runs) == counts["started"] == 2
    for before, after in pairwise(runs):
        assert after["start"] - before["end"] < 2.0  # the buffered tick polls every second
    assert counts == {"started": 2, "buffered": 1, "skipped": TICKS - 2}


def test_terminate_other_replaces_the_live_run_on_every_tick(app, client, redis_client, worker, uid,
                                                             tmp_path):
    ticks = 4
    source = entry_source(PROJ_BEAT, uid, "terminate_other", ticks=ticks, name="Timed", seconds=1, steps=3)
    counts = run_beats(app, tmp_path, uid, [source], ticks=ticks)
    client.wait_for_completion(uid, timeout=30)

    assert counts == {"started": ticks}
    runs = list(spans(redis_client, uid).values())
    # Every tick started a run; a run replaced while still waiting for its predecessor's
    # step in flight (the drain) never executes, so some ticks' runs may leave no trace.
    assert 2 <= len(runs) <= ticks
    # The last run completes; each earlier one stopped before its third step.
    assert runs[-1]["steps"] == 3
    assert all(run["steps"] < 3 for run in runs[:-1])
    # Runs never execute at once: a replaced run's last step ended before the next began.
    assert all(before["end"] <= after["start"] for before, after in pairwise(runs))
    # No step of a replaced run started after its successor's first step.
    per_run = defaultdict(list)
    for event in events(redis_client, uid):
        if event["event"] == "start":
            per_run[event["run"]].append(event["t"])
    starts = sorted(sorted(times) for times in per_run.values())
    for before, after in pairwise(starts):
        assert max(before) < min(after)


def test_an_entry_with_an_unknown_policy_is_refused():
    with pytest.raises(ValueError, match="overlap must be one of"):
        singleton_entry("Timed", "x", schedule=1.0, overlap="queue_all")
