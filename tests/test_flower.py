"""A real Flower process, fed by a real worker's events: what operators see and can do."""

from __future__ import annotations

import ast
import urllib.parse

import pytest

from singleton.runtime import runtime
from singleton.schedules import START_TASK
from tests.probe import events
from tests.services import Flower
from tests.workers import wait_until


@pytest.fixture(scope="module")
def flower(tmp_path_factory, app, worker):
    f = Flower(tmp_path_factory.mktemp("flower") / "flower.log").start()
    # Flower answers before its event receiver listens: wait until it sees a task arrive.
    wait_until(lambda: _sees_a_task(f, app), 30, "Flower to receive task events", interval=0.5)
    yield f
    f.stop()


def _sees_a_task(flower: Flower, app) -> bool:
    app.send_task("proj.tasks.prepare", args=["warm-up"])
    tasks = flower.api("GET", "/api/tasks?taskname=proj.tasks.prepare")[1]
    return any(task.get("received") for task in tasks.values())


def flower_tasks(flower: Flower, search: str) -> dict[str, dict]:
    status, tasks = flower.api("GET", "/api/tasks?search=" + urllib.parse.quote(search))
    assert status == 200, tasks
    return tasks


def test_every_task_of_a_run_shows_its_instance_and_orchestrator(flower, client, uid):
    client.start_new("HelloSequence", uid)
    client.wait_for_completion(uid, timeout=30)

    def three_succeeded():
        tasks = flower_tasks(flower, f"kwargs:singleton_instance={uid}")
        return tasks if [t["state"] for t in tasks.values()] == ["SUCCESS"] * 3 else None

    tasks = wait_until(three_succeeded, 20, "Flower to see the run's three steps succeed")
    run_id = client.get_status(uid).run_id
    for task in tasks.values():
        assert task["name"] == "proj.tasks.say_hello"
        shown = ast.literal_eval(task["kwargs"])
        assert shown == {"singleton_instance": uid, "singleton_orchestrator": "HelloSequence",
                         "singleton_run": run_id}
    # The bare ID as free text finds the same tasks.
    assert flower_tasks(flower, uid).keys() == tasks.keys()


def test_a_duplicate_start_through_flower_is_refused(flower, app, client, redis_client, uid):
    body = {"args": ["Timed", uid], "kwargs": {"input": {"key": uid, "seconds": 2}}}
    for endpoint in ("send-task", "async-apply", "send-task"):
        status, reply = flower.api("POST", f"/api/task/{endpoint}/{START_TASK}", body)
        assert status == 200, reply
    store = runtime(app).store
    wait_until(lambda: sum(store.tick_counts(uid).values()) == 3, 20, "the three starts to be decided")
    client.wait_for_completion(uid, timeout=30)

    assert store.tick_counts(uid) == {"started": 1, "skipped": 2}
    assert [e["event"] for e in events(redis_client, uid)] == ["start", "end"]


def test_flower_with_basic_auth_refuses_anonymous_calls(tmp_path):
    locked = Flower(tmp_path / "flower.log", basic_auth="ops:s3cret").start()
    try:
        assert locked.api("GET", "/api/tasks")[0] == 200
        locked.auth = None
        assert locked.api("GET", "/api/tasks")[0] == 401
    finally:
        locked.stop()
