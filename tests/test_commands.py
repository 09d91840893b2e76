"""What a start costs in Redis commands, next to a plain chain.apply_async."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from devtools.redis_commands import sent_during
from singleton.store.scripts import NAMES, source
from tests.workers import REPO

# Sent once per new connection (a pool that grows), not per call.
CONNECTION_SETUP = {"hello", "client", "auth", "select", "ping"}
RUNS = 10
SCRIPT_NAMES = {hashlib.sha1(source(name).encode()).hexdigest(): name for name in NAMES}
PER_RUN_SCRIPTS = {f"evalsha {name}" for name in NAMES if name not in ("reap", "relay", "tick")}
# Measured 49.1 (plain chain 73.6; 52.6 while a start sent its LPUSH and PUBLISH itself,
# 61.5 while later steps still wrote Celery results), of which about 3 are the worker's
# idle BRPOPs and a few the caller's status polls: a bound a little above, to catch a
# new round trip.
COMMANDS_PER_RUN_AT_MOST = 52
# One compact stamp (instance, run, orchestrator, how the run ends) on the first step
# only, the worker stamping each next step: 1.08x measured (1683 B against 1560; 1.35x
# with the stamp and ignore_result in every step, 1.74x with four stamps per task).
MESSAGE_RATIO_AT_MOST = 1.15


def test_a_start_is_one_round_trip_where_the_broker_is_the_store():
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}  # a private, idle server
    out = subprocess.run(
        [sys.executable, "-m", "tests.count_commands"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=True,
    ).stdout
    counts = json.loads(out)
    plain, ours = counts["plain"], counts["start_new"]
    print(f"commands sent per call: plain {plain['sent']} / start_new {ours['sent']}")
    # The claim script alone: it pushes the message onto the queue and publishes the
    # task-sent event itself, what a plain chain sends as two commands of its own
    # (and it subscribes to the result channel, which a start does not need).
    assert {name: n for name, n in ours["sent"].items() if name not in CONNECTION_SETUP} == {"evalsha": 1.0}
    assert plain["sent"].get("lpush") == 1.0 and plain["sent"].get("publish") == 1.0
    assert ours["executed"].get("lpush") == 1.0 and ours["executed"].get("publish") == 1.0
    assert ours["sent_total"] < plain["sent_total"]


def _script_name(command: str) -> str:
    # "evalsha <sha1>" -> "evalsha <the script's name>"
    if not command.startswith("evalsha "):
        return command
    name = SCRIPT_NAMES.get(command.removeprefix("evalsha "))
    return command if name is None else f"evalsha {name}"


def _three_step_runs(runs: int, start: Callable[[], Any]) -> None:
    for _ in range(runs):
        start()


@pytest.mark.usefixtures("worker")
def test_a_three_step_run_on_a_live_worker_costs_fewer_commands_than_a_plain_chain(app, client):
    from celery import chain

    from proj.tasks import say_hello

    redis_client = app.backend.client

    def ours() -> None:
        instance_id = client.start_new("HelloSequence")
        assert client.wait_for_completion(instance_id, timeout=30).output[-1] == "Hello London!"

    def plain() -> None:
        result = chain(say_hello.s([], "Tokyo"), say_hello.s("Seattle"), say_hello.s("London")).apply_async()
        assert result.get(timeout=30) == ["Hello Tokyo!", "Hello Seattle!", "Hello London!"]

    ours(), plain()  # warm up: connections, scripts loaded in the worker's children
    counts = {}
    for label, fn in (("start_new", ours), ("plain", plain)):
        sent = sent_during(redis_client, lambda fn=fn: _three_step_runs(RUNS, fn), by_script=True)
        counts[label] = {_script_name(name): n / RUNS for name, n in sent.items()
                         if name not in CONNECTION_SETUP}
    totals = {label: sum(c.values()) for label, c in counts.items()}
    print(f"commands per 3-step run: {counts}; totals {totals}")
    # Exact: the scripts a run costs: the claim, a gate per step, a mark for each step
    # that hands on and the run's end for the last (the worker's periodic passes are
    # other scripts and may fall in the window).
    # What the layer itself sends does not depend on timing; the worker's idle polls
    # (BRPOP every second) and the caller's status polls do, so the total is a bound.
    assert {name: n for name, n in counts["start_new"].items() if name in PER_RUN_SCRIPTS} == {
        "evalsha claim": 1.0, "evalsha begin_step": 3.0, "evalsha step_mark": 2.0, "evalsha end_run": 1.0,
    }
    assert totals["start_new"] <= COMMANDS_PER_RUN_AT_MOST
    # No step writes a Celery result nobody asked for (a plain chain writes three); one
    # write from outside the runs may fall in the window.
    assert counts["start_new"].get("setex", 0) <= 1 / RUNS
    assert totals["start_new"] < totals["plain"]


def test_the_first_message_of_a_run_stays_close_to_a_plain_chains():
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}  # a private, idle server
    out = subprocess.run(
        [sys.executable, "-m", "tests.count_commands", "--message-bytes"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=True,
    ).stdout
    sizes = json.loads(out)
    ratio = sizes["start_new"] / sizes["plain"]
    print(f"first message bytes: start_new {sizes['start_new']} / plain {sizes['plain']} = {ratio:.3f}")
    assert ratio <= MESSAGE_RATIO_AT_MOST
