"""The invariant checker: reads the execution log, the driver's record and the store.

Violations (each must be 0):
- empty_log: the run left no execution to check (a checker with nothing to read
  must not pass);
- overlaps: executions of two different runs of one instance ID that overlap in time;
- double_executions: two executions of one step (same task id) that overlap in time;
- unfinished: executions that never ended, whose process was never killed after they
  started, and that have been open longer than the load's longest step (a hung step,
  or a lost end);
- stuck: runs still live after the quiet period with no sign of life for longer than
  their lease and the reconciler's interval;
- wedged: runs still Suspended or parked after the driver settled every run;
- lost_or_timed_out: runs failed as Lost or TimedOut (on record, or in the
  reconciler's log lines): the only trouble in a chaos run is dead processes;
- lost_records: records lost or gone back between the two snapshots taken around a
  Redis restart with writes paused (a live run replaced counts, whatever its fence);
  after the crash (SIGKILL) only, a record last written within CRASH_LOSS_WINDOW_S
  before the crash may be lost: it is counted apart (``lost_in_crash_window``, in
  the report, not a violation), and one last written earlier is a violation;
- duplicate_202s: starts (in a burst or alone) answered 202 beyond what the ID allowed
  (none while a run that stayed the same was live before and after, at most one
  otherwise);
- unfenced: user tasks that ran with no run's stamps (a canvas part the layer did not
  stamp), so no gate fenced them and the step log could not see them;
- failed_claims: starts answered 5xx or not at all (timeout, reset), outside the
  Redis restart's window.

Executions are paired by the execution id the step log writes, never by process id.
"""

from __future__ import annotations

import json
import re
from bisect import bisect_left
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

LIVE = ("Pending", "Running", "Suspended", "ContinuedAsNew")
# The longest step of the chaos load (SyncInventory applies up to 400 changes, 0.1 s each).
LONGEST_STEP_S = 60.0
# How long after a Redis restart a start may still be answered 503 (clients reconnect).
RESTART_MARGIN_S = 5.0
# What a Redis crash may lose under appendfsync everysec: the writes of about the last
# second, and up to 2 s while a slow fsync makes Redis postpone its writes (Redis waits
# at most 2 s before writing anyway). A record written earlier than this before the
# crash must survive it.
CRASH_LOSS_WINDOW_S = 2.0
# The reconciler's warning when it fails a run (singleton.recovery).
_RECONCILER_FAILED = re.compile(r"Failed instance '(?P<instance>[^']*)': (?P<outcome>lost|timed out)\.")


def executions(log_dir: Path, faults: list[dict[str, Any]], stopped_at: float) -> list[dict[str, Any]]:
    """Return every step execution with its start ``t`` and ``end``.

    One cut short by a kill of its process (after it started) ends at the kill, with
    ``cut``; one that never ended and was never killed has ``end`` None.
    """
    kills: dict[int, list[float]] = defaultdict(list)
    for fault in faults:
        for pid in fault.get("pids", []):
            kills[pid].append(fault["t"])
    for times in kills.values():
        times.sort()
    started: dict[str, dict[str, Any]] = {}
    ends: dict[str, float] = {}
    for path in sorted(log_dir.glob("steps-*.jsonl")):
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            entry = json.loads(line)
            if entry["event"] == "start":
                started[entry["exec"]] = entry
            elif entry["event"] == "end" and entry.get("exec"):
                ends[entry["exec"]] = entry["t"]
    found = []
    for execution, entry in started.items():
        if execution in ends:
            found.append({**entry, "end": ends[execution]})
            continue
        times = kills.get(entry["pid"], [])
        after = bisect_left(times, entry["t"])
        if after < len(times):
            found.append({**entry, "end": times[after], "cut": True})
        else:
            found.append({**entry, "end": None})
    return found


def beat_ticks(log_dir: Path) -> dict[str, int]:
    """Return how many of beat's starter ticks ended which way (started, skipped, ...)."""
    counts: dict[str, int] = defaultdict(int)
    for path in sorted(log_dir.glob("steps-*.jsonl")):
        for line in path.read_text().splitlines():
            if '"tick"' in line:
                entry = json.loads(line)
                if entry["event"] == "tick":
                    counts[str(entry["outcome"])] += 1
    return dict(counts)


def unfenced(log_dir: Path) -> list[dict[str, Any]]:
    """Return the user tasks that ran with no run's stamps: no gate fenced or logged them."""
    found = []
    for path in sorted(log_dir.glob("steps-*.jsonl")):
        for line in path.read_text().splitlines():
            if '"unfenced"' in line:
                entry = json.loads(line)
                if entry["event"] == "unfenced":
                    found.append(entry)
    return found


def _end(e: dict[str, Any]) -> float:
    return float("inf") if e["end"] is None else e["end"]


def _overlapping(execs: list[dict[str, Any]], same: Any) -> list[dict[str, Any]]:
    by_instance: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in execs:
        by_instance[e["instance"]].append(e)
    found = []
    for instance_id, items in by_instance.items():
        items.sort(key=lambda e: e["t"])
        for i, a in enumerate(items):
            for b in items[i + 1:]:
                if b["t"] >= _end(a):
                    continue
                if same(a, b):
                    found.append({"instance": instance_id, "a": a, "b": b})
    return found


def overlaps(execs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return pairs of executions of different runs of one instance that overlap."""
    return _overlapping(execs, lambda a, b: a["run"] != b["run"])


def double_executions(execs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return pairs of executions of one step (run and task id) that overlap."""
    return _overlapping(execs, lambda a, b: a["run"] == b["run"] and a["task"] == b["task"])


def unfinished(execs: list[dict[str, Any]], now: float, longest: float = LONGEST_STEP_S
               ) -> list[dict[str, Any]]:
    """Return executions that never ended, were not cut by a kill, and began over `longest` s ago."""
    return [e for e in execs if e["end"] is None and now - e["t"] > longest]


def empty_log(execs: list[dict[str, Any]], runs_started: int) -> list[dict[str, Any]]:
    """Return a violation when there is nothing to check: no execution, or no start."""
    if execs and runs_started:
        return []
    return [{"executions": len(execs), "runs_started": runs_started}]


def stuck(records: list[dict[str, Any]], execs: list[dict[str, Any]], now: float, grace: float,
          longest: float = LONGEST_STEP_S) -> list[dict[str, Any]]:
    """Return live, unparked runs with no sign of life for longer than `grace` seconds.

    `records` are the instances on record: ``instance``, ``run``, ``status``,
    ``updated`` (epoch seconds) and ``parked``. A step still executing is a sign of life
    until it has run longer than the longest step (then it is `unfinished`).
    """
    last: dict[str, float] = defaultdict(float)
    for e in execs:
        running = e["end"] is None and now - e["t"] <= longest
        last[e["run"]] = max(last[e["run"]], e["t"], now if running else e["end"] or 0.0)
    found = []
    for r in records:
        if r["status"] not in LIVE or r["status"] == "Suspended" or r["parked"]:
            continue  # those are `wedged`'s
        seen = max(last.get(r["run"], 0.0), r["updated"])
        if now - seen > grace:
            found.append({"instance": r["instance"], "status": r["status"],
                          "silent_for": round(now - seen, 1)})
    return found


def wedged(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return runs left Suspended or parked (waiting) after the driver settled them all."""
    return [{"instance": r["instance"], "status": r["status"], "parked": r["parked"]}
            for r in records if r["status"] in LIVE and (r["status"] == "Suspended" or r["parked"])]


def lost_or_timed_out(records: list[dict[str, Any]], worker_logs: list[str],
                      execs: list[dict[str, Any]] = ()) -> list[dict[str, Any]]:
    """Return runs failed as Lost or TimedOut: on record, or as the reconciler logged them.

    Each run on record comes with what tells its cause: when it was created and failed
    (epoch seconds) and the step executions it began (`execs`).
    """
    began: Counter[str] = Counter(e["run"] for e in execs)
    found = [{"instance": r["instance"], "run": r["run"], "output": r["output"][:120],
              "created": r.get("created"), "failed": r["updated"], "steps_began": began[r["run"]]}
             for r in records if r["status"] == "Failed"
             and str(r.get("output") or "").startswith(("Lost", "TimedOut"))]
    on_record = {(f["instance"], f["output"].split(":")[0]) for f in found}
    for text in worker_logs:
        for match in _RECONCILER_FAILED.finditer(text):
            kind = "Lost" if match["outcome"] == "lost" else "TimedOut"
            if (match["instance"], kind) not in on_record:
                found.append({"instance": match["instance"], "logged": match[0]})
    return found


def lost_records(before: dict[str, Any], after: dict[str, Any]) -> list[dict[str, Any]]:
    """Return instances whose record was lost or went back between the two snapshots.

    The snapshots are taken with writes paused, but a write may land in the moment
    between the new server answering and the pause: a record may have moved on (same
    run, a later status) or, if its run had ended, been claimed by a new run. Anything
    else (gone, a live run replaced, a status gone back) is a lost write.
    """
    return [{"instance": i, "before": was, "after": after.get(i)}
            for i, was in before.items() if not _moved_on(was, after.get(i))]


def lost_in_crash_window(before: dict[str, Any], after: dict[str, Any], crashed_at: float,
                         window: float = CRASH_LOSS_WINDOW_S) -> tuple[list[dict[str, Any]],
                                                                        list[dict[str, Any]]]:
    """Split the records lost in a Redis crash into (inside its loss window, outside it).

    A record is inside the window when its last write (``updated``, epoch seconds, the
    server's clock) was less than `window` seconds before `crashed_at`: appendfsync
    everysec may lose it. Every other loss is a violation, as after a warm restart.
    """
    inside, outside = [], []
    for lost in lost_records(before, after):
        written = float(lost["before"].get("updated", 0.0))
        (inside if crashed_at - written < window else outside).append(lost)
    return inside, outside


def restart_losses(snapshots: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Return (records lost inside a crash's loss window, records lost otherwise) over every restart."""
    allowed: list[dict[str, Any]] = []
    violations: list[dict[str, Any]] = []
    for snap in snapshots:
        if snap["kind"] == "crash":
            inside, outside = lost_in_crash_window(snap["before"], snap["after"], snap["at"])
        else:
            inside, outside = [], lost_records(snap["before"], snap["after"])
        allowed += [{**lost, "restart": snap["kind"]} for lost in inside]
        violations += [{**lost, "restart": snap["kind"]} for lost in outside]
    return allowed, violations


def _moved_on(was: dict[str, Any], now: dict[str, Any] | None) -> bool:
    if now is None:
        return False
    if now["run"] == was["run"] and now["fence"] == was["fence"]:
        return _STAGE[now["status"]] >= _STAGE[was["status"]]
    return was["status"] not in LIVE and int(now["fence"]) > int(was["fence"])


_STAGE = {"Pending": 0, "Running": 1, "Suspended": 1, "ContinuedAsNew": 1, "Completed": 2,
          "Failed": 2, "Terminated": 2}


def duplicate_202s(bursts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return bursts (or single starts) that got more 202s than the ID allowed."""
    found = []
    for burst in bursts:
        before, after = burst["before"] or {}, burst["after"] or {}
        held = before.get("status") in LIVE and before.get("run") == after.get("run")
        allowed = 0 if held else 1
        if burst["codes"].get("202", burst["codes"].get(202, 0)) > allowed:
            found.append(burst)
    return found


def failed_claims(starts: list[dict[str, Any]], windows: list[tuple[float, float]]
                  ) -> list[dict[str, Any]]:
    """Return starts answered 5xx or not at all, unless they overlap a Redis restart.

    Each start (or burst) has ``t0`` and ``t`` (sent, answered) and its ``codes``.
    """
    def in_restart(s: dict[str, Any]) -> bool:
        return any(s["t0"] <= end + RESTART_MARGIN_S and s["t"] >= begin for begin, end in windows)

    found = []
    for s in starts:
        bad = {code: n for code, n in s["codes"].items() if int(code) == 0 or int(code) >= 500}
        if bad and not in_restart(s):
            found.append({"instance": s["instance"], "t": s["t"], "codes": bad})
    return found


def records(client: Any) -> list[dict[str, Any]]:
    """Return every instance on record, in the shape the rules read."""
    from singleton.runtime import runtime

    statuses = client.get_status_all(show_input=False)
    rows = runtime(client._app).store.read_many(s.instance_id for s in statuses)
    return [{"instance": s.instance_id, "run": s.run_id, "status": s.runtime_status.value,
             "updated": s.last_updated_time.timestamp(), "created": s.created_time.timestamp(),
             "parked": bool((row or {}).get("park")),
             "output": s.output if isinstance(s.output, str) else json.dumps(s.output)}
            for s, row in zip(statuses, rows, strict=True) if row is not None]


def check(driver: Any, log_dir: Path, stopped_at: float, grace: float) -> dict[str, Any]:
    """Return the report: counts of what happened and every violation found."""
    execs = executions(log_dir, driver.faults, stopped_at)
    on_record = records(driver.client)
    worker_logs = [p.read_text(errors="replace") for p in sorted(log_dir.parent.glob("worker*.log"))]
    burst_codes: dict[str, int] = defaultdict(int)
    for burst in driver.bursts:
        for code, n in burst["codes"].items():
            burst_codes[str(code)] += n
    ticks = beat_ticks(log_dir)
    lost_inside, lost_outside = restart_losses(driver.redis_snapshots)
    runs_started = (sum(n for op, n in driver.codes.items() if op == "start 202") + burst_codes["202"]
                    + ticks.get("started", 0))
    violations = {
        "empty_log": empty_log(execs, runs_started),
        "overlaps": overlaps(execs),
        "double_executions": double_executions(execs),
        "unfinished": unfinished(execs, stopped_at),
        "stuck": stuck(on_record, execs, stopped_at, grace),
        "wedged": wedged(on_record),
        "lost_or_timed_out": lost_or_timed_out(on_record, worker_logs, execs),
        "lost_records": lost_outside,
        "duplicate_202s": duplicate_202s([*driver.bursts, *driver.starts]),
        "failed_claims": failed_claims([*driver.bursts, *driver.starts], driver.restart_windows),
        "driver_errors": [f for f in driver.faults if f["fault"] == "driver-error"],
        "unfenced": unfenced(log_dir),
    }
    faults: dict[str, int] = defaultdict(int)
    for fault in driver.faults:
        faults[fault["fault"]] += 1
    return {
        "runs_started": runs_started,
        "requests": dict(driver.codes),
        "executions": len(execs),
        "steps_by_name": dict(Counter(e["name"] for e in execs)),
        "runs_executed": len({e["run"] for e in execs}),
        "faults": dict(faults),
        "bursts": len(driver.bursts),
        "beat_ticks": ticks,
        "duplicate_starts_refused": burst_codes["409"],
        "burst_codes": dict(burst_codes),
        "redis_restarts": driver.redis_check,
        "lost_in_crash_window": lost_inside,
        "fault_log": driver.faults,
        # Every start and burst with the ID's status around it: how long a run waited for
        # its first step, read against the step log.
        "start_log": [*driver.starts, *driver.bursts],
        "violations": {name: len(items) for name, items in violations.items()},
        "details": violations,
    }
