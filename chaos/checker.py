"""The invariant checker: reads the execution log, the driver's record and the store.

Violations (each must be 0):
- overlaps: executions of two different runs of one instance ID that overlap in time;
- stuck: runs still live after the quiet period with no sign of life for longer than
  their lease and the reconciler's interval (parked and suspended runs excepted);
- lost_records: instances whose record vanished or went back across the Redis restart;
- duplicate_202s: 202s in a burst beyond what the ID allowed (none while a run that
  stayed the same was live before and after, at most one otherwise).
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any


def executions(log_dir: Path, faults: list[dict[str, Any]], stopped_at: float) -> list[dict[str, Any]]:
    """Return every step execution with start and end; one cut short ends at its kill."""
    killed_at = {pid: f["t"] for f in faults for pid in f.get("pids", [])}
    open_runs: dict[tuple[int, str], dict[str, Any]] = {}
    done: list[dict[str, Any]] = []
    for path in sorted(log_dir.glob("steps-*.jsonl")):
        for line in path.read_text().splitlines():
            entry = json.loads(line)
            key = (entry["pid"], entry["task"])
            if entry["event"] == "start":
                open_runs[key] = {**entry, "end": None}
            elif key in open_runs:
                done.append({**open_runs.pop(key), "end": entry["t"]})
    for (pid, _), entry in open_runs.items():
        done.append({**entry, "end": killed_at.get(pid, stopped_at), "cut": True})
    return done


def overlaps(execs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return pairs of executions of different runs of one instance that overlap."""
    by_instance: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in execs:
        by_instance[e["instance"]].append(e)
    found = []
    for instance_id, items in by_instance.items():
        items.sort(key=lambda e: e["t"])
        for i, a in enumerate(items):
            for b in items[i + 1:]:
                if b["t"] >= a["end"]:
                    continue
                if a["run"] != b["run"]:
                    found.append({"instance": instance_id, "a": a, "b": b})
    return found


def stuck(client: Any, execs: list[dict[str, Any]], grace: float) -> list[dict[str, Any]]:
    """Return live runs with no sign of life for longer than `grace` seconds."""
    from singleton.runtime import runtime

    last: dict[str, float] = defaultdict(float)
    for e in execs:
        last[e["run"]] = max(last[e["run"]], e["end"], e["t"])
    now = time.time()
    statuses = [s for s in client.get_status_all(show_input=False) if s.runtime_status.is_live]
    rows = runtime(client._app).store.read_many(s.instance_id for s in statuses)
    found = []
    for status, row in zip(statuses, rows, strict=True):
        if row is None or row.get("park") or row.get("status") == "Suspended":
            continue
        seen = max(last.get(status.run_id, 0.0), status.last_updated_time.timestamp())
        if now - seen > grace:
            found.append({"instance": status.instance_id, "status": status.runtime_status.value,
                          "silent_for": round(now - seen, 1)})
    return found


def duplicate_202s(bursts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return bursts that got more 202s than the ID allowed."""
    found = []
    for burst in bursts:
        before, after = burst["before"] or {}, burst["after"] or {}
        held = before.get("status") in ("Pending", "Running") and before.get("run") == after.get("run")
        allowed = 0 if held else 1
        if burst["codes"].get("202", burst["codes"].get(202, 0)) > allowed:
            found.append(burst)
    return found


def check(driver: Any, log_dir: Path, stopped_at: float, grace: float) -> dict[str, Any]:
    """Return the report: counts of what happened and every violation found."""
    execs = executions(log_dir, driver.faults, stopped_at)
    violations = {
        "overlaps": overlaps(execs),
        "stuck": stuck(driver.client, execs, grace),
        "lost_records": driver.redis_check.get("lost", []),
        "duplicate_202s": duplicate_202s(driver.bursts),
        "driver_errors": [f for f in driver.faults if f["fault"] == "driver-error"],
    }
    burst_codes: dict[str, int] = defaultdict(int)
    for burst in driver.bursts:
        for code, n in burst["codes"].items():
            burst_codes[str(code)] += n
    faults = defaultdict(int)
    for fault in driver.faults:
        faults[fault["fault"]] += 1
    return {
        "runs_started": sum(n for op, n in driver.codes.items() if op == "start 202") + burst_codes["202"],
        "requests": dict(driver.codes),
        "executions": len(execs),
        "runs_executed": len({e["run"] for e in execs}),
        "faults": dict(faults),
        "bursts": len(driver.bursts),
        "duplicate_starts_refused": burst_codes["409"],
        "burst_codes": dict(burst_codes),
        "redis_restart": driver.redis_check,
        "violations": {name: len(items) for name, items in violations.items()},
        "details": violations,
    }
