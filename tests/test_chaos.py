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


def test_a_short_chaos_run_breaks_no_invariant(tmp_path, broker):
    # The run brings its own Redis; on RabbitMQ its broker is the module's vhost.
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CELERY_BROKER_URL")}
    on_rabbitmq = ["--broker", broker.url] if broker.kind == "rabbitmq" else []
    done = subprocess.run(
        [sys.executable, "-m", "chaos", "--seconds", SECONDS, "--seed", "7", "--out", str(tmp_path),
         "--timings", "short",
         *on_rabbitmq],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=360,
    )
    print(done.stdout[-3000:])
    report = json.loads((tmp_path / "report.json").read_text())
    assert set(report["violations"]) == set(RULES)
    found = {rule: items[:5] for rule, items in report["details"].items() if items}
    broken = {rule: n for rule, n in report["violations"].items() if n}
    assert not broken, json.dumps(found, default=str)[:4000]
    # The run did what it claims: it started runs, executed steps and injected faults.
    assert report["runs_started"] > 50 and report["executions"] > 100
    assert report["faults"].get("kill-worker", 0) >= 1 and report["faults"].get("kill-child", 0) >= 1
    assert report["faults"].get("restart-redis") == 1 and report["faults"].get("crash-redis") == 1
    assert report["redis_restarts"]["warm"]["records_before"] > 0
    assert report["redis_restarts"]["crash"]["records_before"] > 0
    # The richer load ran: fan-outs (a group and a chord's callback) and suspends of them.
    steps = report["steps_by_name"]
    # A chord's callback is a step of its run, so it is counted with the steps.
    assert steps.get("proj.tasks.part", 0) > 0 and steps.get("proj.tasks.total", 0) > 0
    assert report["requests"].get("suspend 202", 0) > 0
    assert report["duplicate_starts_refused"] > 100
    assert done.returncode == 0
