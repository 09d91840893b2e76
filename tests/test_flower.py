"""A real Flower process, fed by a real worker's events: what operators see and can do."""

from __future__ import annotations

import ast
import re
import urllib.parse

import pytest

from proj.devserver import flower_link
from singleton.runtime import runtime
from singleton.schedules import START_TASK
from tests.browser import rendered_dom
from tests.probe import events, release
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
    body = {"args": ["Held", uid], "kwargs": {"input": {"key": uid}}}
    for endpoint in ("send-task", "async-apply", "send-task"):
        status, reply = flower.api("POST", f"/api/task/{endpoint}/{START_TASK}", body)
        assert status == 200, reply
    store = runtime(app).store
    wait_until(lambda: sum(store.tick_counts(uid).values()) == 3, 20, "the three starts to be decided")
    release(redis_client, uid)  # the run stayed live while the three were decided
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


def hello_run(flower: Flower, client, instance_id: str) -> set[str]:
    """Run HelloSequence as `instance_id`; return its steps' task ids once Flower has all three."""
    client.start_new("HelloSequence", instance_id)
    client.wait_for_completion(instance_id, timeout=30)

    def three_succeeded():
        tasks = flower_tasks(flower, f"kwargs:singleton_instance={instance_id}")
        return set(tasks) if [t["state"] for t in tasks.values()] == ["SUCCESS"] * 3 else None

    return wait_until(three_succeeded, 20, "Flower to see the run's three steps succeed")


def page_search(link: str) -> str:
    """The search Flower's tasks page starts with for `link` (flower.js: key:value per parameter)."""
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(link).query)
    return " ".join(f"{key}:{query[key][0]}" for key in ("state", "worker", "name") if key in query)


def test_make_runs_flower_link_lists_exactly_the_instances_steps(flower, client, uid):
    steps = hello_run(flower, client, uid)
    hello_run(flower, client, f"{uid}-other")
    link = flower_link(str(flower.port), "proj.tasks.say_hello", uid)
    body = {"draw": "1", "start": "0", "length": "50", "search[value]": page_search(link),
            "order[0][column]": "0", "order[0][dir]": "desc", "columns[0][data]": "received"}
    status, page = flower.form("/tasks/datatable", body)
    assert status == 200, page
    assert {row["uuid"] for row in page["data"]} == steps
    assert all(row["kwargs"].startswith(f"{{'singleton_instance': '{uid}'") for row in page["data"])


def test_flowers_task_list_shows_the_run_label_column(flower):
    status, html = flower.api("GET", "/tasks")
    assert status == 200
    columns = re.findall(r'<th data-column="([a-z_]+)">', html)
    assert columns[:4] == ["name", "uuid", "state", "kwargs"], columns


@pytest.mark.slow  # a browser
def test_make_runs_flower_link_opens_the_list_filtered_to_the_instance_in_a_browser(
    flower, client, uid, tmp_path
):
    steps = hello_run(flower, client, uid)
    hello_run(flower, client, f"{uid}-other")
    dom = rendered_dom(flower_link(str(flower.port), "proj.tasks.say_hello", uid), tmp_path / "profile")
    shown = set(re.findall(r'<tr id="([0-9a-f-]{36})"', dom))
    assert shown == steps, dom[-3000:]
