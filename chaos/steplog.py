"""Worker-side execution log: one JSON line per step start and end, per process.

Workers load this module with ``-I chaos.steplog``; lines go to
``$CHAOS_LOG_DIR/steps-<pid>.jsonl`` (append, one write per line, flushed at once),
so a SIGKILLed process loses nothing it wrote. Each execution has its own id
(``exec``), written on its start and its end: the checker pairs them by that id, never
by process id, which the system reuses after a kill. Beat's starter ticks are logged
too (``tick`` lines with their outcome: started, skipped, buffered), so the runs beat
started are accounted for beside the driver's. A user task that runs with no run's
stamps (so no gate fenced it) is logged as ``unfenced``.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from typing import Any

from celery.signals import task_prerun, task_success

from singleton import step_finished, step_started
from singleton.runs import RunIdentity
from singleton.schedules import START_TASK

# Tasks of Celery and of the layer itself, which carry no run's stamps by design.
_INTERNAL = ("celery.", "singleton.")

_DIRECTORY = os.environ.get("CHAOS_LOG_DIR", "")
# The execution in progress per task id, in this process (a pool process runs one step
# at a time; a step's end is sent by the process that sent its start).
_RUNNING: dict[str, str] = {}


def _write(event: str, sender: Any, instance_id: str, run_id: str, task_id: str, **extra: Any) -> None:
    _append({"event": event, "instance": instance_id, "run": run_id, "task": task_id,
             "name": sender.name, "t": time.time(), "pid": os.getpid(), **extra})


def _append(entry: dict[str, Any]) -> None:
    line = json.dumps(entry)
    fd = os.open(os.path.join(_DIRECTORY, f"steps-{os.getpid()}.jsonl"),
                 os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def _started(sender: Any = None, signal: Any = None, **fields: Any) -> None:
    if not _DIRECTORY:
        return
    execution = _RUNNING[fields["task_id"]] = uuid.uuid4().hex
    _write("start", sender, exec=execution, **fields)


def _finished(sender: Any = None, signal: Any = None, failed: bool = False, **fields: Any) -> None:
    if not _DIRECTORY:
        return
    execution = _RUNNING.pop(fields["task_id"], "")
    _write("end", sender, exec=execution, failed=failed, **fields)


def _ticked(sender: Any = None, result: Any = None, **_: Any) -> None:
    if not _DIRECTORY or sender is None or sender.name != START_TASK or not isinstance(result, dict):
        return
    _append({"event": "tick", "instance": result.get("instance_id"), "outcome": result.get("outcome"),
             "task": sender.request.id, "t": time.time(), "pid": os.getpid()})


def _unfenced(sender: Any = None, task_id: str = "", task: Any = None, **_: Any) -> None:
    # A user task that runs without a run's stamps passed no gate: nothing fences it.
    if not _DIRECTORY or task is None or task.name.startswith(_INTERNAL):
        return
    if RunIdentity.from_request(task.request) is None:
        _append({"event": "unfenced", "name": task.name, "task": task_id, "t": time.time(),
                 "pid": os.getpid()})


step_started.connect(_started, weak=False)
task_prerun.connect(_unfenced, weak=False)
task_success.connect(_ticked, weak=False)
step_finished.connect(_finished, weak=False)
