"""The outbox: what a script decides must be published stays in Redis until it was."""

from __future__ import annotations

import json
import uuid

from singleton import RuntimeStatus
from singleton.store import START_ENTRY, ClaimVerdict, StepVerdict, Verdict
from tests.workers import wait_until

MESSAGE = json.dumps({"first": {"task": "t", "options": {"task_id": "step-1"}}, "chain": []})


def outbox(store, redis_client, instance_id: str) -> dict[str, str]:
    raw = redis_client.hgetall(store.keys(instance_id).out)
    return {k.decode(): v.decode() for k, v in raw.items()}


def claim(store, instance_id: str, run_id: str, request_id: str = ""):
    return store.claim(instance_id, name="Probe", run_id=run_id, input_json="null",
                       request_id=request_id, message_json=MESSAGE)


def test_a_claim_keeps_the_runs_first_message_until_its_first_step_arrives(store, redis_client, uid):
    run = uuid.uuid4().hex
    assert claim(store, uid, run, request_id="req").claimed
    assert outbox(store, redis_client, uid) == {START_ENTRY: MESSAGE}

    retried = claim(store, uid, uuid.uuid4().hex, request_id="req")
    assert (retried.outcome, retried.run_id, retried.message) == (ClaimVerdict.EXISTING, run, MESSAGE)

    store.begin_step(uid, run_id=run, task_id="step-1", token="tok", lease_s=30, name="t")
    assert outbox(store, redis_client, uid) == {}
    assert claim(store, uid, uuid.uuid4().hex, request_id="req").message == ""


def test_sent_clears_an_entry_only_if_it_still_holds_the_published_message(store, redis_client, uid):
    claim(store, uid, uuid.uuid4().hex)
    assert not store.sent(uid, entry=START_ENTRY, message_json=MESSAGE.replace("step-1", "other"))
    assert outbox(store, redis_client, uid) == {START_ENTRY: MESSAGE}
    assert store.sent(uid, entry=START_ENTRY, message_json=MESSAGE)
    assert outbox(store, redis_client, uid) == {}


def test_undoing_a_claim_or_ending_the_run_empties_the_outbox(store, redis_client, uid):
    run = uuid.uuid4().hex
    claim(store, uid, run)
    assert store.undo_claim(uid, run_id=run)
    assert outbox(store, redis_client, uid) == {}
    run = uuid.uuid4().hex
    claim(store, uid, run)
    store.end_run(uid, run_id=run, status=RuntimeStatus.TERMINATED, output_json="null")
    assert outbox(store, redis_client, uid) == {}


def test_a_release_is_due_for_a_resend_after_its_grace_and_then_once_per_grace(store, uid):
    run = uuid.uuid4().hex
    store.claim(uid, name="Probe", run_id=run, input_json="null")
    store.begin_step(uid, run_id=run, task_id="wait", token="tok", lease_s=30, name="wait")
    park = json.dumps({"kind": "event", "run": run, "chain": []})
    store.park(uid, run_id=run, task_id="wait", park_json=park, event="Go")
    release = store.raise_event(uid, name="Go", data_json='"data"')
    assert release.outcome is Verdict.RELEASE and release.entry.startswith(f"rel:{run}:")
    assert store.outbox_due(100) == {}  # its publisher is still at it

    due = wait_until(lambda: store.outbox_due(100), 10, "the grace to pass")
    [(entry, held)] = due[uid]
    assert entry == release.entry and json.loads(held) == {"park": park, "value": '"data"'}
    assert store.outbox_due(100) == {}  # put off by another grace period
    assert store.sent(uid, entry=entry, message_json="")
    assert store.outbox_due(100) == {}


def test_a_continued_run_is_owed_in_the_outbox_until_its_publish_is_confirmed(store, redis_client, uid):
    run, new = uuid.uuid4().hex, uuid.uuid4().hex
    store.claim(uid, name="Probe", run_id=run, input_json="null")
    store.begin_step(uid, run_id=run, task_id="cont", token="tok", lease_s=30, name="continue")
    assert store.continue_as_new(uid, run_id=run, new_run_id=new, input_json="1", task_id="cont")
    assert list(outbox(store, redis_client, uid)) == [f"cont:{new}"]
    assert store.continued(uid, run_id=new)
    assert outbox(store, redis_client, uid) == {}


def test_a_first_step_that_arrives_while_its_run_is_suspended_clears_the_first_message(
    store, redis_client, uid
):
    run = uuid.uuid4().hex
    claim(store, uid, run)
    store.suspend(uid)
    gate = store.begin_step(uid, run_id=run, task_id="step-1", token="tok", lease_s=30, name="t")
    assert gate.outcome is StepVerdict.SUSPENDED
    assert outbox(store, redis_client, uid) == {}


def test_a_resume_keeps_every_parked_delivery_in_one_entry_until_all_are_published(store, uid):
    run = uuid.uuid4().hex
    store.claim(uid, name="Probe", run_id=run, input_json="null")
    store.suspend(uid)
    parks = {}
    for member in ("m1", "m2", "m3"):
        parks[member] = json.dumps({"kind": "suspend", "run": run, "task": member, "sig": {}})
        store.begin_step(uid, run_id=run, task_id=member, token=member, lease_s=30, name="t")
        assert store.park(uid, run_id=run, task_id=member, park_json=parks[member]).outcome == "parked"
    release = store.resume(uid)
    assert release.outcome is Verdict.RELEASE and release.entry.startswith(f"rel:{run}:")
    assert (release.park, sorted(release.steps)) == ("", sorted(parks.values()))

    # Its publisher never confirmed it: the reconciler gets all of them back, in one entry.
    due = wait_until(lambda: store.outbox_due(100), 10, "the grace to pass")
    [(entry, held)] = due[uid]
    assert entry == release.entry
    assert sorted(json.loads(held)["steps"]) == sorted(parks.values())
    assert store.sent(uid, entry=entry, message_json="")
    assert store.resume(uid).outcome is Verdict.CONFLICT  # handed back once, and Running
