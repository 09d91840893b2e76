"""Real Celery worker processes for tests: start, wait until ready, kill, stop."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

from celery import Celery

from devtools.processes import REPO, ManagedProcess, wait_until

__all__ = ["REPO", "Worker", "ping", "wait_until"]


def ping(broker_url: str, node: str, timeout: float = 1.0) -> bool:
    """Return True if the worker named `node` answers a ping on `broker_url`."""
    probe = Celery("tests-ping", broker=broker_url)
    try:
        return bool(probe.control.ping(destination=[node], timeout=timeout))
    except Exception:  # the broker is not up yet
        return False
    finally:
        probe.close()


class Worker(ManagedProcess):
    """``celery -A proj worker`` in its own process group, ready once it answers a ping."""

    def __init__(
        self, log: Path, *, concurrency: int = 2, env: dict[str, str] | None = None,
        imports: tuple[str, ...] = ("tests.probe",),
    ) -> None:
        self.node = f"test-{uuid.uuid4().hex[:6]}@localhost"
        self.concurrency = concurrency
        super().__init__(
            [
                sys.executable, "-m", "celery", "-A", "proj", "worker", "-n", self.node,
                "-I", ",".join(imports), "-c", str(self.concurrency), "--loglevel=INFO",
                "--without-gossip", "--without-mingle",
            ],
            log=log, env={**os.environ, **(env or {})}, name="worker",
        )

    def start(self, timeout: float = 60.0) -> Worker:
        """Start the worker and wait until it answers a ping by its node name."""
        super().start()
        broker = self.env.get("CELERY_BROKER_URL") or self.env["REDIS_URL"]
        self.wait_ready(lambda: ping(broker, self.node), timeout=timeout, what="the worker to be ready")
        return self

    def pool_children(self) -> list[int]:
        """Return the pids of the worker's pool processes."""
        return self.children()
