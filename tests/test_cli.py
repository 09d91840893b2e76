"""``celery -A proj instances ...`` as a real subprocess, against a live worker."""

from __future__ import annotations

import json
import subprocess
import sys

from singleton.cli import EXIT_BAD_INPUT, EXIT_CONFLICT, EXIT_NOT_FOUND
from tests.workers import REPO


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
    assert_refused(cli("start", "NoSuchOrchestrator", uid), EXIT_BAD_INPUT, "does not exist")
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
