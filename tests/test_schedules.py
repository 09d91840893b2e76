"""Periodic singleton starts under a real ``celery beat`` (1-second ticks) and a real worker.

Where ticks must find the previous run live, its step is held until every tick was
decided (tests/probe.py ``Held``). Each run's steps record their start and end times and
their run ID.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from itertools import pairwise

import pytest
from celery.schedules import crontab

from singleton.runtime import runtime
from singleton.schedules import START_TASK, Every, due_now, singleton_entry
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


# -- one tick per schedule slot -------------------------------------------------------
# The ticks below are sent as beat sends them: with the slot (schedule and due time) that
# beat stamps on each (singleton.schedules.due_now). Held runs stay live until released.
SLOT = {"schedule": "every 60s", "due": "2026-01-01T00:00:00Z"}

# Two beat processes on a 1-second schedule aligned to the epoch (as singleton_entry
# aligns every interval), each sending `ticks` ticks and then none.
ALIGNED_BEAT = """
from celery.schedules import schedstate
{app_source}
from singleton.schedules import Every, singleton_entry


class LimitedEvery(Every):
    # Beat may ask twice about one due time (its heap, then its tick): count each once.
    def __init__(self, seconds, times):
        super().__init__(seconds)
        self.times, self.counted = times, None

    def is_due(self, last_run_at):
        state = super().is_due(last_run_at)
        if not state.is_due or last_run_at == self.counted:
            return state
        if self.times <= 0:
            return schedstate(False, 5.0)
        self.times, self.counted = self.times - 1, last_run_at
        return state

    def __reduce__(self):
        return self.__class__, (self.run_every.total_seconds(), self.times)


app.conf.beat_schedule = {{"tick": singleton_entry("Timed", {id!r}, schedule=LimitedEvery(1.0, {ticks}),
                                                  input={input!r}, overlap={overlap!r})}}
"""
PROJ_APP = "from proj import app"
BARE_APP = """
from celery import Celery
import singleton.logs
singleton.logs.install()  # the configured log formats print the run's identity
app = Celery("bare")
app.config_from_object("celeryconfig")
"""


def send_tick(app, uid: str, overlap: str, *, name: str = "Held", slot=SLOT, **options):
    kwargs = {"input": {"key": uid}, "overlap": overlap, "poll": 0.2, "slot": slot}
    return app.send_task(START_TASK, args=[name, uid], kwargs=kwargs, **options)


def final_counts(app, uid: str, ticks: int) -> dict[str, int]:
    """Wait until `ticks` ticks ended (started, skipped or failed); return the counts."""
    store = runtime(app).store

    def ended():
        counts = store.tick_counts(uid)
        return counts if sum(counts.get(o, 0) for o in ("started", "skipped", "failed")) >= ticks else None

    try:
        return wait_until(ended, 20, f"{ticks} ticks to end")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: counts {store.tick_counts(uid)}") from None


def log_lines(worker, text: str) -> int:
    return worker.log.read_text(errors="replace").count(text)


def sent_seconds(beat: Beat) -> list[str]:
    """The wall-clock second of every tick the beat logged sending ('YYYY-mm-dd HH:MM:SS')."""
    return [line[1:20] for line in beat.text().splitlines() if "Scheduler: Sending due task" in line]


def test_two_ticks_of_one_slot_start_one_run_under_buffer_one(app, client, redis_client, worker, uid):
    try:
        for _ in range(2):
            send_tick(app, uid, "buffer_one")
        assert final_counts(app, uid, 2) == {"started": 1, "skipped": 1}
    finally:
        release(redis_client, uid)
    client.wait_for_completion(uid, timeout=30)
    assert len([e for e in events(redis_client, uid) if e["event"] == "start"]) == 1


def test_a_second_tick_of_one_slot_does_not_terminate_the_run_under_terminate_other(app, client, redis_client,
                                                                                      worker, uid):
    try:
        first = send_tick(app, uid, "terminate_other")
        wait_until(lambda: runtime(app).store.tick_counts(uid).get("started"), 20, "the first tick to start")
        send_tick(app, uid, "terminate_other")
        assert final_counts(app, uid, 2) == {"started": 1, "skipped": 1}
        assert client.get_status(uid).runtime_status.is_live
    finally:
        release(redis_client, uid)
    status = client.wait_for_completion(uid, timeout=30)
    assert status.runtime_status == "Completed"
    assert runtime(app).store.read(uid)["request"] == first.id


def test_a_tick_older_than_the_latest_slot_taken_is_skipped(app, client, redis_client, worker, uid):
    try:
        send_tick(app, uid, "skip", slot={**SLOT, "due": "2026-01-01T00:01:00Z"})
        wait_until(lambda: runtime(app).store.tick_counts(uid).get("started"), 20, "the later slot to start")
        release(redis_client, uid)
        client.wait_for_completion(uid, timeout=30)
        send_tick(app, uid, "skip")  # the slot before: a backlogged tick, after the run ended
        assert final_counts(app, uid, 2) == {"started": 1, "skipped": 1}
    finally:
        release(redis_client, uid)
    assert len([e for e in events(redis_client, uid) if e["event"] == "start"]) == 1


def test_two_beat_processes_on_an_aligned_schedule_start_at_most_one_run_per_slot(app, client, redis_client,
                                                                                   worker, uid, tmp_path):
    # buffer_one: without one run per slot, each second beat's tick would be buffered
    # behind the first one's run and start a run of its own.
    ticks = 5
    sources = [ALIGNED_BEAT.format(app_source=source, id=uid, input={"key": uid, "seconds": 0},
                                   overlap="buffer_one", ticks=ticks) for source in (PROJ_APP, BARE_APP)]
    beats = [Beat(tmp_path, source, name=f"aligned{n}") for n, source in enumerate(sources)]
    try:
        for beat in beats:
            beat.start()
        wait_until(lambda: all(b.ticks_sent() == ticks for b in beats), 30, f"{ticks} ticks per beat")
        counts = final_counts(app, uid, 2 * ticks)
    finally:
        for beat in beats:
            beat.stop()
    client.wait_for_completion(uid, timeout=30)

    slots = set(sent_seconds(beats[0]) + sent_seconds(beats[1]))
    assert len(slots) < 2 * ticks  # the two beats ticked in the same seconds: one slot each
    runs = spans(redis_client, uid)
    assert len(runs) == counts["started"] <= len(slots)
    assert counts["skipped"] >= 2 * ticks - len(slots)


def test_a_buffered_tick_with_an_expiry_still_starts_when_the_run_ends(app, client, redis_client, worker,
                                                                     uid):
    # The tick expires 1 s after it was sent; its buffered wait outlasts that.
    client.start_new("Held", uid, {"key": uid})
    try:
        tick = send_tick(app, uid, "buffer_one", slot=None, expires=1)
        wait_until(lambda: runtime(app).store.tick_counts(uid).get("buffered"), 20, "the tick to be buffered")
        # Eight retries 0.2 s apart: the tick's expiry has passed while it waits.
        wait_until(lambda: log_lines(worker, f"singleton.start[{tick.id}] retry") >= 8, 20, "eight retries")
        release(redis_client, uid)
        wait_until(lambda: len([e for e in events(redis_client, uid) if e["event"] == "start"]) == 2, 20,
                   "the buffered tick's run to start")
    finally:
        release(redis_client, uid)
        release(redis_client, uid)
    client.wait_for_completion(uid, timeout=30)
    assert final_counts(app, uid, 1) == {"buffered": 1, "started": 1}


def test_a_redelivered_tick_is_counted_once(app, client, redis_client, worker, uid):
    tick_id = f"tick-{uid}"
    try:
        send_tick(app, uid, "skip", task_id=tick_id)
        wait_until(lambda: runtime(app).store.tick_counts(uid).get("started"), 20, "the tick to start")
        send_tick(app, uid, "skip", task_id=tick_id)  # the same message again
        wait_until(lambda: log_lines(worker, f"singleton.start[{tick_id}] succeeded") == 2, 20,
                   "the second delivery to end")
        assert runtime(app).store.tick_counts(uid) == {"started": 1}
    finally:
        release(redis_client, uid)
    client.wait_for_completion(uid, timeout=30)


def test_a_tick_that_raises_is_counted_as_failed(app, worker, uid):
    send_tick(app, uid, "skip", name="NoSuchOrchestrator")
    assert final_counts(app, uid, 1) == {"failed": 1}


def at(text: str):
    moment = datetime.fromisoformat(text)
    return lambda: moment


def test_an_interval_entry_is_aligned_to_the_epoch_and_names_its_due_time(app):
    every = singleton_entry("Timed", "x", schedule=30.0)["schedule"]
    assert isinstance(every, Every)
    every.nowfun = at("2026-01-01T12:00:47+00:00")
    assert due_now(every) == {"schedule": "every 30s", "due": "2026-01-01T12:00:30Z"}
    # A beat that sent at 12:00:31 is due again at 12:01:00 (not at 12:01:01).
    assert every.is_due(datetime.fromisoformat("2026-01-01T12:00:31+00:00")) == (False, 13.0)
    every.nowfun = at("2026-01-01T12:01:00.002+00:00")
    assert every.is_due(datetime.fromisoformat("2026-01-01T12:00:31+00:00"))[0]


def test_a_crontab_tick_names_the_latest_occurrence_even_when_beat_sends_it_late(app):
    nightly = crontab(minute=0, hour=2, app=app, nowfun=at("2026-01-01T02:00:00.010+00:00"))
    assert due_now(nightly) == {"schedule": "cron 0 2 * * *", "due": "2026-01-01T02:00:00Z"}
    nightly.nowfun = at("2026-01-01T03:10:00+00:00")  # a beat catching up after downtime
    assert due_now(nightly)["due"] == "2026-01-01T02:00:00Z"
    nightly.nowfun = at("2026-01-01T01:59:00+00:00")
    assert due_now(nightly)["due"] == "2025-12-31T02:00:00Z"
