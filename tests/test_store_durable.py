"""The durable scripts of the store (policies, parking, events, continue-as-new), no worker."""

from __future__ import annotations

import json
import time
import uuid

import redis

from singleton import RuntimeStatus
from singleton.recovery import reconcile
from singleton.store import Store
from tests.test_store import claim, keys_of
from tests.workers import wait_until


def run_of(store: Store, instance_id: str) -> str:
    return store.read(instance_id)["run"]


def begin(store: Store, instance_id: str, task_id: str = "t1", name: str = "step"):
    return store.begin_step(
        instance_id,
        run_id=run_of(store, instance_id),
        task_id=task_id,
        token=uuid.uuid4().hex,
        lease_s=30,
        name=name,
    )


def park_for(store: Store, instance_id: str, event: str, task_id: str = "t1", **options):
    run = run_of(store, instance_id)
    park = json.dumps({"kind": "event", "run": run, "chain": []})
    return store.park(instance_id, run_id=run, task_id=task_id, park_json=park, event=event, **options)


# -- claims with policies -----------------------------------------------------------------
def test_claim_terminate_existing_ends_the_live_run_in_the_same_script(store: Store) -> None:
    first = claim(store, "a")
    second = store.claim("a", name="Probe", run_id="run-2", input_json="null", if_live="terminate_existing")
    assert second.claimed and run_of(store, "a") == "run-2"
    assert first.run_id != "run-2"
    assert not store.end_run("a", run_id=first.run_id, status=RuntimeStatus.COMPLETED, output_json="1")


def test_undo_of_a_terminate_existing_claim_restores_the_old_run_as_terminated(store: Store) -> None:
    claim(store, "a")
    second = store.claim("a", name="Probe", run_id="run-2", input_json="null", if_live="terminate_existing")
    assert store.undo_claim("a", run_id=second.run_id)
    assert store.read("a")["status"] == "Terminated"


def test_claim_with_the_same_request_id_answers_existing_with_the_run_on_record(store: Store) -> None:
    first = store.claim("a", name="Probe", run_id="run-1", input_json="null", request_id="r")
    again = store.claim("a", name="Probe", run_id="run-2", input_json="null", request_id="r")
    assert (first.outcome, again.outcome, again.run_id) == ("claimed", "existing", "run-1")


def test_claim_reject_refuses_while_a_finished_record_exists(store: Store) -> None:
    first = claim(store, "a")
    store.end_run("a", run_id=first.run_id, status=RuntimeStatus.FAILED, output_json='"x"')
    refused = store.claim("a", name="Probe", run_id="run-2", input_json="null", if_finished="reject")
    assert (refused.outcome, refused.status) == ("rejected", RuntimeStatus.FAILED)


# -- parking and events ------------------------------------------------------------------
def test_an_event_buffered_before_the_wait_is_taken_by_the_park(store: Store) -> None:
    claim(store, "a")
    begin(store, "a")
    assert store.raise_event("a", name="Go", data_json='"early"').outcome == "buffered"
    gate = park_for(store, "a", "Go")
    assert (gate.outcome, gate.detail) == ("event", '"early"')


def test_a_parked_wait_is_released_once_with_the_event(store: Store) -> None:
    claim(store, "a")
    begin(store, "a")
    assert park_for(store, "a", "Go").outcome == "parked"
    release = store.raise_event("a", name="Go", data_json='{"n": 1}')
    assert (release.outcome, release.value) == ("release", '{"n": 1}')
    assert json.loads(release.park)["kind"] == "event"
    # The next event finds nothing waiting: it is buffered, not released twice.
    assert store.raise_event("a", name="Go", data_json='{"n": 2}').outcome == "buffered"


def test_a_redelivered_wait_step_stays_parked(store: Store) -> None:
    claim(store, "a")
    begin(store, "a")
    park_for(store, "a", "Go")
    assert begin(store, "a").outcome == "parked"


def test_an_event_name_cannot_reach_another_instances_keys(
    store: Store, redis_client: redis.Redis, prefix: str
) -> None:
    claim(store, "a")
    claim(store, "a:ev:b")
    store.raise_event("a", name="b:x", data_json='"data"')
    assert store.raise_event("a:ev:b", name="x", data_json='"other"').outcome == "buffered"
    begin(store, "a:ev:b")
    assert park_for(store, "a:ev:b", "x").detail == '"other"'
    # Event names are hash fields: only the two instances' own keys exist.
    allowed = {key for instance_id in ("a", "a:ev:b") for key in store.keys(instance_id)}
    assert keys_of(redis_client, prefix) <= allowed


def test_an_event_timeout_without_a_default_fails_the_run(store: Store) -> None:
    claim(store, "a")
    begin(store, "a")
    park_for(store, "a", "Go")
    outcome = store.event_timeout("a", run_id=run_of(store, "a"), task_id="t1", failure_json='"EventTimeout"')
    assert outcome.outcome == "failed"
    assert store.read("a")["status"] == "Failed"


def test_an_event_timeout_after_the_event_does_nothing(store: Store) -> None:
    claim(store, "a")
    begin(store, "a")
    park_for(store, "a", "Go")
    run = run_of(store, "a")
    store.raise_event("a", name="Go", data_json="1")
    assert (
        store.event_timeout("a", run_id=run, task_id="t1", failure_json='"EventTimeout"').outcome == "stale"
    )


# -- kept messages ------------------------------------------------------------------------
def test_a_delivery_whose_parent_is_the_step_itself_keeps_its_message(store: Store, redis_client) -> None:
    # A busy wait re-publishes the step from inside its own task, so Celery names the
    # step itself as the delivery's parent: its start must not drop the message it keeps.
    claim(store, "a")
    gate = store.begin_step("a", run_id=run_of(store, "a"), task_id="t1", token="x", lease_s=30,
                            message_json='{"task": "step"}', parent_id="t1")
    assert gate.outcome == "run"
    assert redis_client.hget(store.keys("a").steps, "m:t1") == b'{"task": "step"}'


# -- kept timers ----------------------------------------------------------------------------
TIMER = "timer:t1"  # an event timeout's timer: its wait step's task id, prefixed


def keep_timer(store: Store, instance_id: str, message: str, wait_s: float) -> bool:
    return store.keep_published(instance_id, run_id=run_of(store, instance_id), task_id=TIMER,
                                message_json=message, wait_s=wait_s, replace=True)


def test_a_kept_timer_is_sent_again_when_due_and_dropped_when_it_fires(store: Store, redis_client) -> None:
    claim(store, "a")
    begin(store, "a")
    park_for(store, "a", "Go", default_json='"late"')
    run = run_of(store, "a")
    assert keep_timer(store, "a", '{"task": "singleton.timer"}', wait_s=0.2)
    sent: list[str] = []
    # Its worker died holding it: a step lease (0.2 s here) after it was due, it goes again.
    resent = wait_until(lambda: reconcile(store, send=sent.append).get("resent"), 5, "the timer sent again")
    assert resent == 1
    assert sent == ['{"task": "singleton.timer"}']
    fired = store.event_timeout("a", run_id=run, task_id="t1", failure_json='"EventTimeout"', timer_id=TIMER)
    assert (fired.outcome, fired.value) == ("release", '"late"')
    assert not {TIMER, f"m:{TIMER}"} & set(redis_client.hkeys(store.keys("a").steps))
    # The broker's own redelivery, an hour on, or a second reconciler's: harmless.
    again = store.event_timeout("a", run_id=run, task_id="t1", failure_json='"EventTimeout"', timer_id=TIMER)
    assert again.outcome == "stale"
    assert store.read("a")["status"] == "Running"


def test_a_timers_hop_keeps_its_next_message_over_its_last(store: Store, redis_client) -> None:
    claim(store, "a")
    begin(store, "a")
    park_for(store, "a", "Go")
    assert keep_timer(store, "a", '{"hop": 1}', wait_s=30)
    assert keep_timer(store, "a", '{"hop": 2}', wait_s=60)
    assert redis_client.hget(store.keys("a").steps, f"m:{TIMER}") == b'{"hop": 2}'
    # A step is kept once: published again, its gates answer for it.
    assert not store.keep_published("a", run_id=run_of(store, "a"), task_id=TIMER, message_json="{}",
                                    wait_s=1)


def test_a_kept_timer_does_not_keep_a_run_with_nothing_running_alive(store: Store) -> None:
    run = store.claim("quiet", name="Probe", run_id=uuid.uuid4().hex, input_json="null", lease_s=0.2)
    assert store.keep_published("quiet", run_id=run.run_id, task_id=TIMER, message_json="{}", wait_s=30,
                                replace=True)
    # Its wait is over (or never parked) and its messages are gone: lost after its lease.
    assert wait_until(lambda: reconcile(store).get("lost"), 5, "the run to be failed as lost") == 1
    assert store.read("quiet")["status"] == "Failed"


# -- suspend and resume -------------------------------------------------------------------
def test_a_step_of_a_suspended_run_is_told_to_park(store: Store) -> None:
    claim(store, "a")
    assert store.suspend("a") == ("ok", "Pending")
    assert begin(store, "a").outcome == "suspended"
    run = run_of(store, "a")
    park = json.dumps({"kind": "suspend", "run": run, "sig": {}})
    assert store.park("a", run_id=run, task_id="t1", park_json=park).outcome == "parked"
    release = store.resume("a")
    assert release.outcome == "release" and [json.loads(s)["kind"] for s in release.steps] == ["suspend"]
    assert store.read("a")["status"] == "Running"


def suspend_park(store: Store, instance_id: str, task_id: str):
    run = run_of(store, instance_id)
    park = json.dumps({"kind": "suspend", "run": run, "task": task_id, "sig": {}})
    return store.park(instance_id, run_id=run, task_id=task_id, park_json=park)


def test_every_member_of_a_group_parks_under_its_own_task_id_and_resume_hands_back_all(
    store: Store,
) -> None:
    claim(store, "a")
    store.suspend("a")
    for member in ("m1", "m2", "m3"):
        assert begin(store, "a", member).outcome == "suspended"
        assert suspend_park(store, "a", member).outcome == "parked"
    assert suspend_park(store, "a", "m2").outcome == "parked"  # a redelivery parks once
    release = store.resume("a")
    assert sorted(json.loads(s)["task"] for s in release.steps) == ["m1", "m2", "m3"]
    store.suspend("a")
    assert store.resume("a").steps == ()  # handed back once


def test_a_redelivery_during_a_suspend_finds_the_step_running_or_done(store: Store) -> None:
    claim(store, "a")
    run = run_of(store, "a")
    for task in ("running", "finished"):
        gate = store.begin_step("a", run_id=run, task_id=task, token=task, lease_s=30, name="step")
        assert gate.outcome == "run"
    assert store.complete_step("a", run_id=run, task_id="finished", token="finished", result_json='"r"')
    store.suspend("a")
    assert begin(store, "a", "running").outcome == "busy"
    assert (begin(store, "a", "finished").outcome, begin(store, "a", "finished").detail) == ("done", '"r"')
    assert begin(store, "a", "next").outcome == "suspended"
    # Parking the next step keeps the running step's marker: its lease still holds.
    assert suspend_park(store, "a", "next").outcome == "parked"
    assert store.resume("a").steps != ()
    assert begin(store, "a", "running").outcome == "busy"
    assert store.complete_step("a", run_id=run, task_id="running", token="running", result_json="1")


def test_a_suspend_accepted_while_continuing_as_new_holds_for_the_new_run(store: Store) -> None:
    first = claim(store, "a")
    begin(store, "a", "can")
    store.suspend("a")
    store.continue_as_new("a", run_id=first.run_id, new_run_id="run-2", input_json="null", task_id="can")
    assert begin(store, "a", "first-of-run-2").outcome == "suspended"  # published before confirmed
    assert suspend_park(store, "a", "first-of-run-2").outcome == "parked"
    assert store.continued("a", run_id="run-2")
    assert store.read("a")["status"] == "Suspended"
    release = store.resume("a")
    assert [json.loads(s)["task"] for s in release.steps] == ["first-of-run-2"]
    assert store.read("a")["status"] == "Running"


def test_a_suspend_between_continue_and_its_confirmation_holds_and_resume_cancels_it(
    store: Store,
) -> None:
    first = claim(store, "a")
    begin(store, "a", "can")
    store.continue_as_new("a", run_id=first.run_id, new_run_id="run-2", input_json="null", task_id="can")
    assert store.suspend("a") == ("ok", "ContinuedAsNew")
    assert store.suspend("a").outcome == "conflict"
    assert store.resume("a").outcome == "ok"
    assert store.continued("a", run_id="run-2")
    assert store.read("a")["status"] == "Running"


def test_park_after_a_resume_tells_the_step_to_run(store: Store) -> None:
    claim(store, "a")
    store.suspend("a")
    begin(store, "a")
    store.resume("a")
    run = run_of(store, "a")
    assert store.park("a", run_id=run, task_id="t1", park_json="{}").outcome == "resumed"


# -- continue-as-new ------------------------------------------------------------------------
def test_continue_as_new_keeps_the_id_live_and_refuses_claims(store: Store) -> None:
    first = claim(store, "a")
    begin(store, "a", "can")
    assert store.continue_as_new(
        "a", run_id=first.run_id, new_run_id="run-2", input_json='{"n": 2}', task_id="can"
    )
    record = store.read("a")
    assert (record["status"], record["run"], record["input"]) == ("ContinuedAsNew", "run-2", '{"n": 2}')
    assert claim(store, "a").outcome == "refused"
    assert store.continued("a", run_id="run-2")
    assert store.read("a")["status"] == "Running"


def test_the_redelivered_continue_step_may_publish_again_only_before_confirmation(store: Store) -> None:
    first = claim(store, "a")
    begin(store, "a", "can")
    store.continue_as_new("a", run_id=first.run_id, new_run_id="run-2", input_json="null", task_id="can")
    redelivered = store.begin_step(
        "a", run_id=first.run_id, task_id="can", token="tok", lease_s=30, name="continue"
    )
    assert (redelivered.outcome, redelivered.detail) == ("continued", "run-2")
    store.continued("a", run_id="run-2")
    assert (
        store.begin_step(
            "a", run_id=first.run_id, task_id="can", token="tok", lease_s=30, name="continue"
        ).outcome
        == "stale"
    )


def test_a_stale_run_cannot_continue_as_new_or_set_its_custom_status(store: Store) -> None:
    first = claim(store, "a")
    store.terminate("a", reason_json='"stop"')
    assert not store.continue_as_new(
        "a", run_id=first.run_id, new_run_id="run-2", input_json="null", task_id="can"
    )
    assert not store.set_custom_status("a", run_id=first.run_id, value_json='"x"')
    assert store.read("a")["status"] == "Terminated"


# -- draining: steps of an ended run still executing ---------------------------------------
def test_a_new_run_waits_while_a_step_of_the_terminated_run_still_executes(store: Store) -> None:
    old = claim(store, "a")
    store.begin_step("a", run_id=old.run_id, task_id="old-step", token="tok", lease_s=30, name="step")
    store.terminate("a", reason_json='"stop"')
    new = claim(store, "a")
    assert new.claimed
    gate = store.begin_step("a", run_id=new.run_id, task_id="new-step", token="tok2", lease_s=30, name="step")
    assert gate.outcome == "busy" and int(gate.detail) <= 1_000_000
    # The old step keeps its draining lease alive, then ends: the new run may go.
    assert not store.renew_step("a", run_id=old.run_id, task_id="old-step", token="tok", lease_s=30)
    assert (
        store.begin_step(
            "a", run_id=new.run_id, task_id="new-step", token="tok2", lease_s=30, name="step"
        ).outcome
        == "busy"
    )
    store.release_step("a", run_id=old.run_id, task_id="old-step", token="tok")
    assert (
        store.begin_step(
            "a", run_id=new.run_id, task_id="new-step", token="tok2", lease_s=30, name="step"
        ).outcome
        == "run"
    )


def test_a_draining_step_whose_lease_ran_out_no_longer_blocks(store: Store) -> None:
    old = claim(store, "a")
    store.begin_step("a", run_id=old.run_id, task_id="old-step", token="tok", lease_s=0.2, name="step")
    store.terminate("a", reason_json='"stop"')
    new = claim(store, "a")
    assert (
        store.begin_step("a", run_id=new.run_id, task_id="s", token="t", lease_s=30, name="step").outcome
        == "busy"
    )
    time.sleep(0.25)  # the dead step's lease (0.2 s) runs out; nothing renews it
    assert (
        store.begin_step("a", run_id=new.run_id, task_id="s", token="t", lease_s=30, name="step").outcome
        == "run"
    )


def test_the_step_that_ends_its_run_does_not_drain(store: Store) -> None:
    run = claim(store, "a")
    store.begin_step("a", run_id=run.run_id, task_id="last", token="tok", lease_s=30, name="step")
    store.end_run("a", run_id=run.run_id, status=RuntimeStatus.COMPLETED, output_json="1", task_id="last")
    new = claim(store, "a")
    assert (
        store.begin_step("a", run_id=new.run_id, task_id="s", token="t", lease_s=30, name="step").outcome
        == "run"
    )
