"""``celery -A proj instances ...`` as a real subprocess, against a live worker."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from api import create_app
from api.errors import HTTP_STATUS
from singleton.cli import (
    EXIT_BAD_INPUT,
    EXIT_CODES,
    EXIT_CONFLICT,
    EXIT_FAILED,
    EXIT_LIMITED,
    EXIT_NOT_FOUND,
    EXIT_UNAVAILABLE,
)
from singleton.errors import ErrorCategory
from tests.workers import REPO

WEBHOOK = "/runtime/webhooks/durabletask"
# What an HTTP status means, as an exit code: the two surfaces read one category.
SAME_MEANING = {400: EXIT_BAD_INPUT, 404: EXIT_NOT_FOUND, 409: EXIT_CONFLICT, 410: EXIT_CONFLICT,
                412: EXIT_CONFLICT, 413: EXIT_BAD_INPUT, 429: EXIT_LIMITED,
                503: EXIT_UNAVAILABLE, 500: EXIT_FAILED, 504: EXIT_FAILED}


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "celery", "-A", "proj", "instances", *args],
                          cwd=REPO, capture_output=True, text=True, timeout=60)


def cli_json(*args: str) -> object:
    done = cli(*args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def assert_refused(done: subprocess.CompletedProcess, code: int, words: str) -> None:
    assert done.returncode == code, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], done.stderr


def test_an_instance_from_start_to_purge(worker, uid):
    delay = json.dumps({"seconds": 30, "value": 1})
    assert cli_json("start", "Delay", uid, "--input", delay) == {"instanceId": uid, "name": "Delay"}
    assert_refused(cli("start", "Delay", uid, "--input", delay), EXIT_CONFLICT, "already exists")
    assert cli_json("status", uid)["runtimeStatus"] in ("Pending", "Running")
    assert_refused(cli("purge", uid), EXIT_CONFLICT, "still")

    done = cli("terminate", uid, "--reason", "not needed")
    assert (done.returncode, done.stdout.strip()) == (0, f"Terminated {uid}")
    table = cli("status", uid).stdout
    assert "runtimeStatus    Terminated" in table and "output           not needed" in table
    assert_refused(cli("terminate", uid), EXIT_CONFLICT, "already Terminated")

    assert cli("purge", uid).returncode == 0
    assert_refused(cli("status", uid), EXIT_NOT_FOUND, "No instance")
    refused = cli("purge", uid, "--json")
    assert refused.returncode == EXIT_NOT_FOUND
    assert json.loads(refused.stdout)["error"] == "instance_not_found"


def test_list_filters_by_status_and_prefix(client, worker, uid):
    for n in range(2):
        client.start_new("HelloSequence", f"{uid}-{n}")
        client.wait_for_completion(f"{uid}-{n}", timeout=30)
    client.start_new("Delay", f"{uid}-live", input={"seconds": 30})

    completed = cli_json("list", "--prefix", uid, "--status", "Completed")
    assert sorted(s["instanceId"] for s in completed) == [f"{uid}-0", f"{uid}-1"]
    every = cli_json("list", "--prefix", uid, "--limit", "2")
    assert [s["instanceId"] for s in every] == [f"{uid}-live", f"{uid}-1"]  # newest first

    table = cli("list", "--prefix", uid).stdout.splitlines()
    assert table[0].split() == ["INSTANCE", "NAME", "STATUS", "CREATED", "UPDATED"]
    assert [line.split()[0] for line in table[1:]] == [f"{uid}-live", f"{uid}-1", f"{uid}-0"]
    client.terminate(f"{uid}-live")


def test_bad_input_is_refused_with_one_line(uid):
    assert_refused(cli("start", "Delay", uid, "--input", "{not json"), EXIT_BAD_INPUT, "not JSON")
    assert_refused(cli("start", "Delay", uid, "--input", '{"seconds": -1}'), EXIT_BAD_INPUT, "between")
    assert_refused(cli("status", "@bad"), EXIT_BAD_INPUT, "Invalid instance ID")


def test_suspend_resume_and_raise_event(client, worker, uid):
    client.start_new("WaitLast", uid)
    assert cli("suspend", uid, "--reason", "maintenance").returncode == 0
    assert cli_json("status", uid)["runtimeStatus"] == "Suspended"
    assert_refused(cli("suspend", uid), EXIT_CONFLICT, "")
    assert cli("resume", uid).stdout.strip() == f"Resumed {uid}"

    assert_refused(cli("raise-event", uid, "Done", "--data", "Paris"), EXIT_BAD_INPUT, "not JSON")
    assert cli_json("raise-event", uid, "Done", "--data", '"Paris"') == {"instanceId": uid, "event": "Done"}
    assert client.wait_for_completion(uid, timeout=30).output == "Paris"
    assert_refused(cli("raise-event", f"{uid}-unknown", "Done"), EXIT_NOT_FOUND, "No instance")


def test_an_unknown_orchestrator_is_not_found_as_in_the_http_api(uid):
    assert_refused(cli("start", "NoSuchOrchestrator", uid), EXIT_NOT_FOUND, "does not exist")


@pytest.mark.parametrize("category", list(ErrorCategory))
def test_every_error_category_has_an_exit_code_meaning_its_http_status(category):
    assert EXIT_CODES[category] == SAME_MEANING[HTTP_STATUS[category]]


def test_status_json_is_the_http_apis_status_json(app, client, worker, uid):
    client.start_new("HelloSequence", uid, input={"who": "cli"})
    client.wait_for_completion(uid, timeout=30)
    http = create_app({"API_AUTH": "anonymous"}, celery_app=app).test_client()
    over_http = http.get(f"{WEBHOOK}/instances/{uid}").get_json()
    assert cli_json("status", uid) == over_http
    assert over_http["createdTime"].endswith("Z") and over_http["input"] == {"who": "cli"}


def test_list_json_shows_each_records_input_and_times_as_the_http_api_does(app, client, worker, uid):
    client.start_new("HelloSequence", f"{uid}-a", input={"n": 1})
    client.wait_for_completion(f"{uid}-a", timeout=30)
    listed = cli_json("list", "--prefix", uid)
    http = create_app({"API_AUTH": "anonymous"}, celery_app=app).test_client()
    over_http = http.get(f"{WEBHOOK}/instances?instanceIdPrefix={uid}").get_json()
    assert listed == over_http
    assert listed[0]["input"] == {"n": 1} and listed[0]["createdTime"].endswith("Z")


def test_list_reads_the_status_filter_in_any_case_as_the_http_api_does(client, worker, uid):
    client.start_new("HelloSequence", uid)
    client.wait_for_completion(uid, timeout=30)
    for spelling in ("completed", "COMPLETED", "Completed"):
        assert [s["instanceId"] for s in cli_json("list", "--prefix", uid, "--status", spelling)] == [uid]
    assert cli_json("list", "--prefix", uid, "--status", "running") == []
