"""Long-running child processes (servers, workers, beat) for make run, tests, chaos and bench.

Each child runs in its own session, so its process group holds it and everything it
forks (a worker's pool, gunicorn's workers), and a terminal's Ctrl-C reaches only
the processes its owner means to signal. Stopping is warm first (SIGTERM to the
group), then SIGKILL to the group after a deadline. Readiness is a caller's check,
polled with a deadline, that fails at once when the child has exited.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
STOP_TIMEOUT_S = 20.0
KILL_WAIT_S = 10.0


class DeadlinePassed(AssertionError):
    """A polled condition did not hold in time.

    An AssertionError, so that a test waiting on it fails (rather than errors) with
    what it waited for.
    """

    def __init__(self, what: str, timeout: float) -> None:
        super().__init__(f"timed out after {timeout}s waiting for {what}")
        self.what = what
        self.timeout = timeout


class ProcessFailed(RuntimeError):
    """A child process exited before it was ready."""

    def __init__(self, name: str, log: Path | None, returncode: int | None) -> None:
        where = f"; see {log}" if log else ""
        super().__init__(f"{name} exited early (code {returncode}){where}")
        self.name = name
        self.log = log
        self.returncode = returncode


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll `predicate` until it returns something truthy, and return that.

    Raises:
        DeadlinePassed: `timeout` seconds passed first.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise DeadlinePassed(what, timeout)
        time.sleep(interval)


class ManagedProcess:
    """One command run as a child in its own session, its output appended to `log`."""

    def __init__(
        self,
        args: Sequence[str],
        *,
        log: Path | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path = REPO,
        name: str | None = None,
    ) -> None:
        """Describe the child; `env` is its whole environment (None: this process's)."""
        self.args = list(args)
        self.log = Path(log) if log is not None else None
        self.env = dict(os.environ if env is None else env)
        self.cwd = cwd
        self.name = name or Path(self.args[0]).name
        self.process: subprocess.Popen | None = None

    def start(self) -> ManagedProcess:
        """Start the child (not waiting for it to be ready)."""
        if self.log is None:
            self.process = subprocess.Popen(
                self.args, cwd=self.cwd, env=self.env, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True,
            )
            return self
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.args, cwd=self.cwd, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def wait_ready(self, check: Callable[[], Any], *, timeout: float, what: str = "") -> ManagedProcess:
        """Poll `check` until it holds; fail at once if the child exits first.

        Raises:
            ProcessFailed: the child exited before `check` held.
            DeadlinePassed: `timeout` seconds passed first (the child is left running).
        """
        wait_until(lambda: self.died() or check(), timeout, what or f"{self.name} to be ready")
        if self.died():
            raise ProcessFailed(self.name, self.log, self.process.returncode)
        return self

    @property
    def pid(self) -> int:
        """The child's pid, which is also its process group's id."""
        return self.process.pid

    def alive(self) -> bool:
        """Return True while the child runs."""
        return self.process is not None and self.process.poll() is None

    def died(self) -> bool:
        """Return True once the started child has exited."""
        return self.process is not None and self.process.poll() is not None

    def text(self) -> str:
        """Return what the child wrote to its log so far."""
        return self.log.read_text(errors="replace") if self.log and self.log.exists() else ""

    def children(self) -> list[int]:
        """Return the pids of the child's own children (a worker's pool processes)."""
        path = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        try:
            return [int(p) for p in path.read_text().split()]
        except OSError:
            return []

    def signal_group(self, sig: signal.Signals) -> None:
        """Send `sig` to the child's whole process group, if it still exists."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, sig)

    def kill(self) -> list[int]:
        """SIGKILL the whole process group at once; return the pids that were in it."""
        pids = [self.pid, *self.children()]
        self.signal_group(signal.SIGKILL)
        self.process.wait(KILL_WAIT_S)
        return pids

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Stop warmly (SIGTERM to the group); SIGKILL the group after `timeout` s."""
        if not self.alive():
            return
        self.signal_group(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
