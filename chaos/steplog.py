"""Worker-side execution log: one JSON line per step start and end, per process.

Workers load this module with ``-I chaos.steplog``; lines go to
``$CHAOS_LOG_DIR/steps-<pid>.jsonl`` (append, one write per line, flushed at once),
so a SIGKILLed process loses nothing it wrote.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from singleton import step_finished, step_started

_DIRECTORY = os.environ.get("CHAOS_LOG_DIR", "")


def _write(event: str, sender: Any, instance_id: str, run_id: str, task_id: str, **extra: Any) -> None:
    if not _DIRECTORY:
        return
    line = json.dumps({"event": event, "instance": instance_id, "run": run_id, "task": task_id,
                       "name": sender.name, "t": time.time(), "pid": os.getpid(), **extra})
    fd = os.open(os.path.join(_DIRECTORY, f"steps-{os.getpid()}.jsonl"),
                 os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def _started(sender: Any = None, signal: Any = None, **fields: Any) -> None:
    _write("start", sender, **fields)


def _finished(sender: Any = None, signal: Any = None, failed: bool = False, **fields: Any) -> None:
    _write("end", sender, failed=failed, **fields)


step_started.connect(_started, weak=False)
step_finished.connect(_finished, weak=False)
