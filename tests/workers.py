"""Real Celery worker processes for tests: start, wait until ready, kill, stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Worker:
    """``celery -A proj worker`` as a subprocess in its own process group."""

    def __init__(
        self, log: Path, *, concurrency: int = 2, env: dict[str, str] | None = None,
        imports: tuple[str, ...] = ("tests.probe",),
    ) -> None:
        self.log = Path(log)
        self.imports = imports
        self.name = f"test-{uuid.uuid4().hex[:6]}@localhost"
        self.concurrency = concurrency
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> Worker:
        """Start the worker and wait until it logs that it is ready."""
        args = [
            sys.executable, "-m", "celery", "-A", "proj", "worker", "-n", self.name,
            "-I", ",".join(self.imports), "-c", str(self.concurrency), "--loglevel=INFO",
            "--without-gossip", "--without-mingle",
        ]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                args, cwd=REPO, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_until(lambda: self.ready_count() > 0 or self._died(), timeout, "the worker to be ready")
        assert not self._died(), f"worker exited early; see {self.log}"
        return self

    def ready_count(self) -> int:
        return self.log.read_text(errors="replace").count(" ready.")

    def _died(self) -> bool:
        return self.process.poll() is not None

    def pool_children(self) -> list[int]:
        """Return the pids of the worker's pool processes."""
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(p) for p in path.read_text().split()] if path.exists() else []

    def kill(self) -> None:
        """SIGKILL the whole worker (main process and pool) at once."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self, timeout: float = 20.0) -> None:
        """Stop the worker warmly; kill it if it does not stop in time."""
        if self.process is None or self._died():
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
