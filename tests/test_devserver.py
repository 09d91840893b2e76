"""``make run`` (python -m proj.devserver) as a subprocess: up, a 202, down with no orphans.

It runs its own embedded Redis with its data in a temporary RUN_DIR, so the second
run below must find the first run's instance (persistence).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from proj.redis_server import free_port
from tests.services import http_json
from tests.workers import REPO, wait_until


class DevServer:
    def __init__(self, run_dir: Path, log: Path) -> None:
        self.port, self.flower_port = free_port(), free_port()
        self.env = {**os.environ, "RUN_DIR": str(run_dir), "PORT": str(self.port),
                    "FLOWER_PORT": str(self.flower_port), "WEB_CONCURRENCY": "1",
                    "WORKER_CONCURRENCY": "1"}
        for name in ("REDIS_URL", "API_KEYS", "API_AUTH", "FLOWER_BASIC_AUTH"):
            self.env.pop(name, None)
        self.log = log
        self.process: subprocess.Popen | None = None

    def start(self) -> DevServer:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen([sys.executable, "-m", "proj.devserver"], cwd=REPO, env=self.env,
                                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        wait_until(lambda: "Everything is up." in self.text() or self.process.poll() is not None, 150,
                   "make run to come up", interval=0.5)
        assert self.process.poll() is None, self.text()
        return self

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def api(self, method: str, path: str) -> tuple[int, object]:
        return http_json(method, f"http://127.0.0.1:{self.port}{path}")

    def descendants(self) -> set[int]:
        found, todo = set(), [self.process.pid]
        while todo:
            pid = todo.pop()
            for task in Path(f"/proc/{pid}/task").glob("*"):
                children = {int(c) for c in (task / "children").read_text().split()}
                todo += children - found
                found |= children
        return found

    def stop(self, sig: signal.Signals, group: bool) -> int:
        """Send `sig` (to the process group when `group`, like a terminal's Ctrl-C)."""
        os.killpg(self.process.pid, sig) if group else self.process.send_signal(sig)
        try:
            return self.process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            raise


def alive(pids: set[int]) -> set[int]:
    def running(pid: int) -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
        except (FileNotFoundError, IndexError):
            return False

    return {pid for pid in pids if running(pid)}


def test_make_run_serves_starts_stops_clean_and_keeps_records(tmp_path):
    status_path = "/runtime/webhooks/durabletask/instances/hello-1"
    first = DevServer(tmp_path / "var", tmp_path / "first.log").start()
    try:
        assert f"http://127.0.0.1:{first.flower_port}" in first.text()
        assert first.api("POST", "/api/orchestrators/HelloSequence/hello-1")[0] == 202
        assert first.api("POST", "/api/orchestrators/HelloSequence/hello-1")[0] in (202, 409)
        wait_until(lambda: first.api("GET", status_path)[0] == 200, 30, "hello-1 to complete")
        processes = first.descendants()
        assert len(processes) >= 6  # honcho, web, worker, beat, flower, redis, ...
    finally:
        first.stop(signal.SIGINT, group=True)  # Ctrl-C
    assert not alive(processes), first.text()[-3000:]

    second = DevServer(tmp_path / "var", tmp_path / "second.log").start()
    try:
        status, body = second.api("GET", status_path)
        assert (status, body["runtimeStatus"], body["output"][-1]) == (200, "Completed", "Hello London!")
        processes = second.descendants()
    finally:
        second.stop(signal.SIGTERM, group=False)
    assert not alive(processes), second.text()[-3000:]


def test_the_procfile_flower_refuses_to_start_without_a_login(tmp_path):
    lines = (REPO / "Procfile").read_text().splitlines()
    line = next(entry for entry in lines if entry.startswith("flower:"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWER_")}
    done = subprocess.run(["sh", "-c", line.removeprefix("flower:")], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stderr.strip()) == (1, "flower: set FLOWER_BASIC_AUTH=user:password")
