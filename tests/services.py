"""Real beat and Flower processes for tests, and a way to read JSON over HTTP."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from celery.schedules import schedstate, schedule

from proj.redis_server import free_port
from tests.workers import REPO, wait_until


class Service:
    """A subprocess in its own process group, logging to a file, stopped warmly."""

    def __init__(self, log: Path, env: dict[str, str] | None = None) -> None:
        self.log = Path(log)
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen | None = None

    def spawn(self, args: list[str]) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                args, cwd=REPO, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def died(self) -> bool:
        return self.process.poll() is not None

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the process group; SIGKILL it if it does not stop in time."""
        if self.process is None or self.died():
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


class Beat(Service):
    """``celery -A <module> beat`` with a private schedule file.

    `schedule_module` is Python source defining ``app`` and its ``beat_schedule``;
    it is written next to the schedule file and imported from there.
    """

    def __init__(self, directory: Path, schedule_module: str, name: str = "beatapp") -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"{name}.py").write_text(schedule_module)
        path = os.pathsep.join([str(directory), str(REPO), os.environ.get("PYTHONPATH", "")])
        super().__init__(directory / f"{name}.log", {"PYTHONPATH": path})
        self.module = name
        self.schedule = directory / f"{name}-schedule"

    def start(self, timeout: float = 30.0) -> Beat:
        self.spawn([sys.executable, "-m", "celery", "-A", self.module, "beat", "-s", str(self.schedule),
                    "--loglevel=INFO"])
        wait_until(lambda: "beat: Starting" in self.text() or self.died(), timeout, "beat to start")
        assert not self.died(), f"beat exited early:\n{self.text()}"
        return self

    def ticks_sent(self) -> int:
        return self.text().count("Scheduler: Sending due task")


class Limited(schedule):
    """A beat schedule that is due every `seconds`, `times` times, then never again.

    A test stops beat only after its last tick reached the worker, so no tick is cut
    off half-sent and every tick beat logged can be accounted for.
    """

    def __init__(self, seconds: float, times: int) -> None:
        super().__init__(seconds)
        self.times = times

    def is_due(self, last_run_at: Any) -> schedstate:
        if self.times <= 0:
            return schedstate(False, 5.0)
        state = super().is_due(last_run_at)
        self.times -= state.is_due
        return state

    def __reduce__(self) -> tuple:
        return self.__class__, (self.run_every.total_seconds(), self.times)


class Flower(Service):
    """``celery -A proj flower`` on a free loopback port, optionally with basic auth."""

    def __init__(self, log: Path, basic_auth: str | None = None) -> None:
        env = {"FLOWER_BASIC_AUTH": basic_auth} if basic_auth else {"FLOWER_UNAUTHENTICATED_API": "true"}
        super().__init__(log, env)
        self.port = free_port()
        self.auth = basic_auth

    def start(self, timeout: float = 60.0) -> Flower:
        self.spawn([sys.executable, "-m", "celery", "-A", "proj", "flower", "--address=127.0.0.1",
                    f"--port={self.port}"])
        wait_until(lambda: self._healthy() or self.died(), timeout, "Flower to answer")
        assert not self.died(), f"Flower exited early:\n{self.text()}"
        return self

    def _healthy(self) -> bool:
        try:
            return http_json("GET", f"http://127.0.0.1:{self.port}/healthcheck", raw=True)[0] == 200
        except OSError:
            return False

    def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return http_json(method, f"http://127.0.0.1:{self.port}{path}", body, auth=self.auth)


def http_json(
    method: str, url: str, body: Any = None, *, auth: str | None = None, raw: bool = False
) -> tuple[int, Any]:
    """Send one request; return the status and the decoded JSON body (text when `raw`)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            status, payload = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, payload = exc.code, exc.read()
    text = payload.decode(errors="replace")
    if raw:
        return status, text
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text
