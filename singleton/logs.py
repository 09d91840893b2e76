"""Log lines that name their run: every record logged inside a step carries its identity.

``install()`` wraps the process's log record factory, so that every record gets a
``singleton_run`` attribute: `` instance=<id> run=<run id>`` while a step of a run
executes (read from the current task's stamps), an empty string otherwise. The
worker log formats below print it, so ``grep <instance-id>`` over a worker log tells
one run's story, whichever logger a step uses (``get_task_logger`` or
``logging.getLogger``).
"""

from __future__ import annotations

import logging
from typing import Any

from celery import current_task

from .runs import RunIdentity

ATTRIBUTE = "singleton_run"
# Celery's default formats, with the run's identity after the task (or process).
WORKER_LOG_FORMAT = "[%(asctime)s: %(levelname)s/%(processName)s]%(singleton_run)s %(message)s"
WORKER_TASK_LOG_FORMAT = (
    "[%(asctime)s: %(levelname)s/%(processName)s] %(task_name)s[%(task_id)s]%(singleton_run)s: %(message)s"
)


def run_label() -> str:
    """Return `` instance=<id> run=<run id>`` inside a step of a run, else ``""``."""
    task = current_task._get_current_object()
    if task is None:
        return ""
    identity = RunIdentity.from_request(task.request)
    if identity is None:
        return ""
    return f" instance={identity.instance_id} run={identity.run_id}"


def install() -> None:
    """Give every log record of this process a ``singleton_run`` attribute (idempotent)."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "_singleton_run", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        setattr(record, ATTRIBUTE, run_label())
        return record

    factory._singleton_run = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
