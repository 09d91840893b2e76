"""Real beat and Flower processes for tests, and a way to read JSON over HTTP.

Both are ``devtools.processes.ManagedProcess``es: their own process group, a log,
ready by a check with a deadline, stopped warmly.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from celery.schedules import schedstate, schedule

from devtools.processes import REPO, ManagedProcess
from proj.redis_server import free_port


class Beat(ManagedProcess):
    """``celery -A <module> beat`` with a private schedule file.

    `schedule_module` is Python source defining ``app`` and its ``beat_schedule``;
    it is written next to the schedule file and imported from there.
    """

    def __init__(self, directory: Path, schedule_module: str, name: str = "beatapp") -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"{name}.py").write_text(schedule_module)
        path = os.pathsep.join([str(directory), str(REPO), os.environ.get("PYTHONPATH", "")])
        self.module = name
        self.schedule = directory / f"{name}-schedule"
        args = [sys.executable, "-m", "celery", "-A", name, "beat", "-s", str(self.schedule),
                "--loglevel=INFO"]
        super().__init__(args, log=directory / f"{name}.log", env={**os.environ, "PYTHONPATH": path},
                         name="beat")

    def start(self, timeout: float = 30.0) -> Beat:
        super().start()
        self.wait_ready(lambda: "beat: Starting" in self.text(), timeout=timeout, what="beat to start")
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


class Flower(ManagedProcess):
    """``celery -A proj flower`` on a free loopback port, optionally with basic auth."""

    def __init__(self, log: Path, basic_auth: str | None = None) -> None:
        env = {"FLOWER_BASIC_AUTH": basic_auth} if basic_auth else {"FLOWER_UNAUTHENTICATED_API": "true"}
        self.port = free_port()
        self.auth = basic_auth
        args = [sys.executable, "-m", "celery", "-A", "proj", "flower", "--address=127.0.0.1",
                f"--port={self.port}"]
        super().__init__(args, log=log, env={**os.environ, **env}, name="flower")

    def start(self, timeout: float = 60.0) -> Flower:
        super().start()
        self.wait_ready(self._healthy, timeout=timeout, what="Flower to answer")
        return self

    def _healthy(self) -> bool:
        try:
            return http_json("GET", f"http://127.0.0.1:{self.port}/healthcheck", raw=True)[0] == 200
        except OSError:
            return False

    def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return http_json(method, f"http://127.0.0.1:{self.port}{path}", body, auth=self.auth)

    def form(self, path: str, fields: dict[str, str]) -> tuple[int, Any]:
        """POST `fields` form-encoded, as the pages' scripts do; return status and JSON."""
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", method="POST",
                                         data=urllib.parse.urlencode(fields).encode())
        if self.auth:
            request.add_header("Authorization", "Basic " + base64.b64encode(self.auth.encode()).decode())
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, json.loads(response.read())


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


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def rendered_dom(url: str, profile: Path, *, budget_ms: int = 15000) -> str:
    """Load `url` in headless Chromium, run its scripts, and return the page's DOM."""
    assert CHROMIUM, "no chromium on PATH"
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}", "--dump-dom", url]
    done = subprocess.run(args, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout
