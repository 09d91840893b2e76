"""The run a step executes in: ``current_run()`` and the fence that fences its side effects."""

from __future__ import annotations

import json
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from celery import Task, chain, chord
from celery.canvas import Signature

from singleton import CurrentRun, NotInRun, RuntimeStatus, current_run
from singleton.runs import (
    COMPLETE_TASK,
    STAMP,
    RunIdentity,
    broker_countdown,
    hand_on,
    run_canvas,
    run_message,
)
from singleton.runtime import runtime
from tests.durability import module_worker
from tests.holds import ledger_write
from tests.probe import NESTED_SHAPES, events, nested_canvas, probe_step, release_all, seen
from tests.workers import wait_until

IDENTITY = RunIdentity("nightly", "ab" * 16, "Report")


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


@pytest.mark.parametrize("instance_id", ["nightly", "a:b|c 12:x", "ünï", "9"])
@pytest.mark.parametrize("plain", [True, False])
def test_a_run_identity_survives_its_compact_stamp(instance_id: str, plain: bool) -> None:
    identity = RunIdentity(instance_id, "5f0c" * 8, "Report:v2", plain=plain)
    stamps = identity.stamps()
    assert list(stamps) == [STAMP]
    assert RunIdentity.from_stamps(stamps) == identity


def test_a_stamp_that_is_not_a_run_identity_names_no_run() -> None:
    for value in ("", "x", "p", "p3:ab", "q2:ab1:Nx", "pz:ab"):
        assert RunIdentity.from_stamps({STAMP: value}) is None
    assert RunIdentity.from_stamps({}) is None


def test_the_last_step_of_a_plain_chain_is_final_and_no_other_task_is() -> None:
    stamps = RunIdentity("nightly", "ab" * 16, "Report").stamps()
    last = SimpleNamespace(id="t3", stamps=stamps, chain=[], group=None, chord=None)
    middle = SimpleNamespace(id="t2", stamps=stamps, chain=[{"task": "next"}], group=None, chord=None)
    member = SimpleNamespace(id="t4", stamps=stamps, chain=None, group="g1", chord=None)
    assert RunIdentity.from_request(last).is_final("t3")
    assert not RunIdentity.from_request(middle).is_final("t2")
    assert not RunIdentity.from_request(member).is_final("t4")
    ends_with_completion = RunIdentity("nightly", "ab" * 16, "Report", plain=False).stamps()
    assert not RunIdentity.from_request(SimpleNamespace(id="t5", stamps=ends_with_completion)).is_final("t5")


def test_countdowns_on_quorum_queues_are_whole_seconds_of_at_least_one() -> None:
    # Native delayed delivery refuses less than a second and truncates the rest, so a
    # short wait (a busy gate's) or a timer hop is rounded up there, and only there.
    classic = SimpleNamespace(conf=SimpleNamespace(task_default_queue_type="classic"))
    quorum = SimpleNamespace(conf=SimpleNamespace(task_default_queue_type="quorum"))
    assert [broker_countdown(classic, c) for c in (0.3, 1.5, 0)] == [0.3, 1.5, 0]
    assert [broker_countdown(quorum, c) for c in (0.3, 1.5, 0)] == [1.0, 2.0, 0]


def single_tasks(value: Any) -> Iterator[dict]:
    """Every single task in a canvas's message form (a signature is a dict with a ``task``)."""
    if isinstance(value, dict):
        if "task" in value and not value.get("subtask_type"):
            yield value
        for item in value.values():
            yield from single_tasks(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from single_tasks(item)


def unstamped_in_message(app, canvas: Signature) -> tuple[set[str], list[str]]:
    """Publish-ready `canvas` of a run: the names of its tasks, and those without the run's stamp."""
    published, identity = run_canvas(app, canvas, RunIdentity("nightly", "ab" * 16, "Nested"))
    message = json.loads(json.dumps(run_message(published)["canvas"]))
    tasks = [(t["kwargs"].get("name") or t["task"], t["options"]) for t in single_tasks(message)]
    unstamped = [name for name, options in tasks if options.get(STAMP) != identity.stamp_value()
                 or STAMP not in options.get("stamped_headers", ())]
    return {name for name, _ in tasks}, unstamped


@pytest.mark.parametrize("shape", list(NESTED_SHAPES))
def test_every_task_of_a_canvas_with_a_group_or_chord_carries_the_runs_stamp(app, shape) -> None:
    # What the message holds, wherever Celery nests it (a chord's body rides in each
    # header member's options too): no copy of a task may lack the stamp.
    names, unstamped = unstamped_in_message(app, nested_canvas("k", shape))
    assert names == {*NESTED_SHAPES[shape], COMPLETE_TASK}
    assert not unstamped


def test_a_link_of_a_chord_callback_carries_the_runs_stamp(app) -> None:
    callback = seen.s(key="k", name="callback")
    callback.link(seen.si(key="k", name="linked"))
    names, unstamped = unstamped_in_message(app, chord([seen.si(key="k", name="member")], callback))
    assert names == {"member", "callback", "linked", COMPLETE_TASK}
    assert not unstamped


@pytest.fixture(scope="module")
def unfenced_step(app) -> Task:
    """A task of a plain Celery class, which has no gate and stamps nothing."""

    @app.task(name="tests.test_runs.unfenced", base=Task, shared=False)
    def unfenced() -> None:
        """Do nothing."""

    return unfenced


def plain_message(app, canvas: Signature) -> tuple[dict, list[dict]]:
    """The first step and the rest of the chain as a plain run's first message sends them."""
    published, _ = run_canvas(app, canvas, IDENTITY)
    message = json.loads(json.dumps(run_message(published)))
    return message["first"], message["chain"]


def test_a_plain_chains_first_message_stamps_only_its_first_step(app) -> None:
    first, rest = plain_message(app, chain(*(probe_step.si(0, "k") for _ in range(3))))
    assert first["options"][STAMP] == IDENTITY.stamp_value()
    assert first["options"]["stamped_headers"] == [STAMP]
    # The later steps keep their preset ids (a second publish repeats them) and nothing else.
    assert [list(step["options"]) for step in rest] == [["task_id"], ["task_id"]]


def test_a_step_after_a_task_that_stamps_nothing_is_stamped_in_the_first_message(app, unfenced_step) -> None:
    unknown = app.signature("tests.test_runs.not_registered_here")
    canvas = chain(probe_step.si(0, "k"), unfenced_step.si(), unknown, probe_step.si(0, "k"))
    _, rest = plain_message(app, canvas)
    # The chain field lists the last step first: after unknown, after unfenced, after probe_step.
    stamped = IDENTITY.stamp_value()
    assert [step["options"].get(STAMP) for step in rest] == [stamped, stamped, None]
    assert [step["options"].get("ignore_result") for step in rest] == [True, True, None]


def test_handing_on_stamps_the_next_step_and_keeps_what_it_already_says() -> None:
    step = {"task": "next", "options": {"task_id": "t2"}}
    hand_on(step, IDENTITY)
    assert step["options"] == {"task_id": "t2", STAMP: IDENTITY.stamp_value(), "stamped_headers": [STAMP],
                               "ignore_result": True}
    # An explicit choice to keep the result stays; another stamp (tracing's) stays beside.
    step = {"task": "next", "options": {"ignore_result": False, "stamped_headers": ["singleton_trace"],
                                        "singleton_trace": "00-ab-cd-01"}}
    hand_on(step, IDENTITY)
    assert step["options"]["ignore_result"] is False
    assert step["options"]["stamped_headers"] == ["singleton_trace", STAMP]
    # A step stamped already (a replacement's, say) keeps its stamp.
    other = RunIdentity("nightly", "cd" * 16, "Report").stamp_value()
    step = {"task": "next", "options": {STAMP: other, "stamped_headers": [STAMP]}}
    hand_on(step, IDENTITY)
    assert step["options"][STAMP] == other
    # A group in the chain (a replacement's) is not a step to stamp: its tasks are.
    step = {"task": "celery.group", "subtask_type": "group", "options": {}}
    hand_on(step, IDENTITY)
    assert step["options"] == {}


def skipped_in_log(worker, task: str, instance_id: str) -> bool:
    """Return True once `worker` logged that a gate stopped a step `task` of `instance_id`."""
    lines = worker.text().splitlines()
    return any(f"Skipping {task}[" in line and repr(instance_id) in line for line in lines)


def test_a_later_step_of_a_run_started_from_its_first_message_alone_is_fenced(
    client, uid, redis_client, holds_worker
) -> None:
    # The first message stamps only the held step: the worker that runs it stamps the
    # probe step after it. Terminated in between, that step reaches its gate, which
    # stops it before any user code runs.
    client.start_new("HeldThenStep", uid, {"key": uid})
    try:
        wait_until(lambda: events(redis_client, uid), 20, "the first step to start")
        client.terminate(uid, reason="between steps")
    finally:
        release_all(redis_client, uid)
    wait_until(lambda: skipped_in_log(holds_worker, "tests.probe.probe_step", uid), 20,
               "the second step's gate to stop it")
    assert [e["event"] for e in events(redis_client, uid)] == ["start", "end"]
    assert client.get_status(uid).runtime_status is RuntimeStatus.TERMINATED
