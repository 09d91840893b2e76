"""The chaos run, short (CI's version of `make chaos`): the real stack under kills, a
warm Redis restart and a Redis crash, duplicate bursts, terminates and restarts, fan-outs
suspended mid-group; no invariant may break."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.services import both_brokers
from tests.workers import REPO

pytestmark = [pytest.mark.timeout(400), pytest.mark.slow, both_brokers]

SECONDS = os.environ.get("CHAOS_SECONDS", "60")
RULES = ("empty_log", "overlaps", "double_executions", "unfinished", "stuck", "wedged",
         "lost_or_timed_out", "lost_records", "duplicate_202s", "failed_claims", "driver_errors",
         "unfenced")
# Known and not fixed yet (the layer's code, not the chaos tool's): the test xfails when
# only these are found, and fails on any other violation. Both stay on the open
# durability issue until fixed; RELIABILITY.md gives the evidence.
KNOWN = {"unfenced": "a chord's callback carries no run stamps, so no gate fences it",
         "lost_or_timed_out": "a run can still be failed as Lost after kills: a group member "
                              "whose message a killed worker took before it reached its gate "
                              "(kombu pops and records unacked in two steps), and one RabbitMQ "
                              "burst run not yet explained"}


def test_a_short_chaos_run_breaks_no_invariant(tmp_path, broker):
    # The run brings its own Redis; on RabbitMQ its broker is the module's vhost.
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CELERY_BROKER_URL")}
    on_rabbitmq = ["--broker", broker.url] if broker.kind == "rabbitmq" else []
    done = subprocess.run(
        [sys.executable, "-m", "chaos", "--seconds", SECONDS, "--seed", "7", "--out", str(tmp_path),
         *on_rabbitmq],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=360,
    )
    print(done.stdout[-3000:])
    report = json.loads((tmp_path / "report.json").read_text())
    assert set(report["violations"]) == set(RULES)
    found = {rule: items[:5] for rule, items in report["details"].items() if items}
    explained = {"unfenced": lambda item: True,
                 "lost_or_timed_out": lambda item: str(item.get("output", "")).startswith("Lost")}
    broken = {rule: n for rule, n in report["violations"].items()
              if n and not all(explained.get(rule, lambda _: False)(i) for i in report["details"][rule])}
    assert not broken, json.dumps(found, default=str)[:4000]
    # The run did what it claims: it started runs, executed steps and injected faults.
    assert report["runs_started"] > 50 and report["executions"] > 100
    assert report["faults"].get("kill-worker", 0) >= 1 and report["faults"].get("kill-child", 0) >= 1
    assert report["faults"].get("restart-redis") == 1 and report["faults"].get("crash-redis") == 1
    assert report["redis_restarts"]["warm"]["records_before"] > 0
    assert report["redis_restarts"]["crash"]["records_before"] > 0
    # The richer load ran: fan-outs (a group and a chord's callback) and suspends of them.
    steps = report["steps_by_name"]
    # A chord's callback is a step once stamped; until then it shows up as unfenced.
    callbacks = steps.get("proj.tasks.total", 0) + sum(
        1 for task in report["details"]["unfenced"] if task["name"] == "proj.tasks.total")
    assert steps.get("proj.tasks.part", 0) > 0 and callbacks > 0
    assert report["requests"].get("suspend 202", 0) > 0
    assert report["duplicate_starts_refused"] > 100
    known = {rule: n for rule, n in report["violations"].items() if n and rule in KNOWN}
    if known:
        pytest.xfail(f"known: {known}: " + "; ".join(KNOWN[rule] for rule in known))
    assert done.returncode == 0
