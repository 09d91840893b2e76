"""Where the broker is the store's database, a start's claim pushes the message kombu would send."""

from __future__ import annotations

import json

import pytest
from celery.utils import uuid

from proj.tasks import say_hello
from singleton import InstanceAlreadyExists
from singleton.runs import RunIdentity
from singleton.runtime import runtime
from singleton.store import Recorders

QUEUE = "celery"  # where HelloSequence's first step goes


@pytest.fixture
def recorder(app):
    found = Recorders(app, store_kwargs=runtime(app).store.connection_kwargs()).get()
    assert found is not None, "the test broker is the store's database"
    return found


def _without_tag(payload: bytes | str) -> dict:
    message = json.loads(payload)
    del message["properties"]["delivery_tag"]  # kombu makes a new one per publish
    return message


@pytest.mark.parametrize("priority", [None, 5])
def test_a_recorded_publish_is_what_kombu_sends_to_the_same_list(app, redis_client, recorder, uid, priority):
    queue = f"test-queue-{uid}"
    step = say_hello.si([], "Tokyo").set(task_id=uuid(), queue=queue)
    if priority is not None:
        step = step.set(priority=priority)
    recorded = recorder.record(lambda producer: step.apply_async(producer=producer, ignore_result=True))
    assert redis_client.keys(f"{queue}*") == []  # recording sends nothing
    step.apply_async(ignore_result=True)
    (key,) = redis_client.keys(f"{queue}*")
    try:
        ((recorded_key, payload),) = recorded.pushes
        assert recorded_key == key.decode()  # the priority picks kombu's own list
        assert _without_tag(payload) == _without_tag(redis_client.lindex(key, 0))
        # The task-sent event goes where kombu publishes the app's events.
        assert [topic for topic, _ in recorded.events] == ["/0.celeryev/task.sent"]
    finally:
        redis_client.delete(key)


def test_a_start_pushes_its_first_message_with_the_claim_and_keeps_it_in_the_outbox(
    app, client, redis_client, uid
):
    before = redis_client.llen(QUEUE)
    run = client.start_run("HelloSequence", uid)
    assert redis_client.llen(QUEUE) == before + 1
    message = json.loads(redis_client.lindex(QUEUE, 0))
    kept = json.loads(redis_client.hget(runtime(app).store.keys(uid).out, "start"))
    # The outbox entry is the same run (same task ids), for the reconciler's re-send.
    assert message["headers"]["id"] == kept["first"]["options"]["task_id"]
    assert RunIdentity.from_stamps(message["headers"]["stamps"]).run_id == run.run_id
    assert client.get_status(uid).run_id == run.run_id


def test_a_refused_start_pushes_nothing(client, redis_client, uid):
    client.start_new("HelloSequence", uid)
    before = redis_client.llen(QUEUE)
    with pytest.raises(InstanceAlreadyExists):
        client.start_new("HelloSequence", uid)
    assert redis_client.llen(QUEUE) == before


def test_terminate_existing_pushes_the_new_runs_message(client, redis_client, uid):
    first = client.start_run("HelloSequence", uid)
    before = redis_client.llen(QUEUE)
    second = client.start_run("HelloSequence", uid, if_live="terminate_existing")
    assert second.run_id != first.run_id
    assert redis_client.llen(QUEUE) == before + 1
    pushed = json.loads(redis_client.lindex(QUEUE, 0))
    assert RunIdentity.from_stamps(pushed["headers"]["stamps"]).run_id == second.run_id


def _sent_in_order(redis_client, call) -> list[str]:
    # The command names every client sent while `call` ran, in order (MONITOR).
    sentinel = f"test-queue-done-{uuid()}"
    names = []
    with redis_client.monitor() as monitor:
        call()
        redis_client.echo(sentinel)
        while (command := monitor.next_command())["command"] != f"ECHO {sentinel}":
            if command["client_type"] != "lua":
                names.append(command["command"].split(" ", 1)[0].lower())
    return names


def test_a_plain_chains_start_is_the_claim_alone(client, redis_client, uid):
    sent = _sent_in_order(redis_client, lambda: client.start_new("HelloSequence", uid))
    assert [name for name in sent if name in ("evalsha", "lpush", "publish")] == ["evalsha"]


def test_a_canvas_with_a_chord_is_published_after_its_claim(client, redis_client, uid):
    # Celery's chain.run does not pass a producer on, so such a canvas is not recorded:
    # it must not reach the queue before its claim (a worker would find no run yet).
    sent = _sent_in_order(redis_client, lambda: client.start_new("FanOutFanIn", uid, input={"seconds": 0}))
    assert "lpush" in sent and sent.index("evalsha") < sent.index("lpush")
