"""``make run`` (python -m proj.devserver) as a subprocess, each run from a fresh RUN_DIR.

The embedded runs keep their data in a temporary RUN_DIR, so a second run there must
find the first run's instance (persistence). The REDIS_URL runs use a private
redis-server on a free port, never the machine's own.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devtools.processes import ManagedProcess
from proj.redis_server import RedisServer, free_port
from tests.services import http_json
from tests.workers import REPO, Worker, wait_until

STATUS = "/runtime/webhooks/durabletask/instances/hello-1"
# make run's worker has one pool process here (WORKER_CONCURRENCY=1), which beat's demo
# SyncInventory may hold when hello-1 arrives: up to 400 changes at 0.1 s each.
FIRST_RUN_S = 60
UP = "Everything is up."


class DevServer(ManagedProcess):
    """``make run`` in its own session, as a terminal's foreground job would be."""

    def __init__(self, log: Path, *, run_dir: Path | None = None, cwd: Path = REPO, **env: str) -> None:
        self.port, self.flower_port = free_port(), free_port()
        environment = {**os.environ, "PORT": str(self.port), "FLOWER_PORT": str(self.flower_port),
                       "WEB_CONCURRENCY": "1", "WORKER_CONCURRENCY": "1"}
        for name in ("REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "RUN_DIR", "API_KEYS",
                     "API_AUTH", "FLOWER_BASIC_AUTH"):
            environment.pop(name, None)
        if run_dir is not None:
            environment["RUN_DIR"] = str(run_dir)
        super().__init__([sys.executable, "-m", "proj.devserver"], log=log, cwd=cwd,
                         env={**environment, **env}, name="make run")

    def start(self) -> DevServer:
        """Start make run and wait until it says everything is up."""
        self.launch()
        wait_until(lambda: UP in self.text() or self.died(), 150, "make run to come up", interval=0.5)
        assert not self.died(), self.text()[-3000:]
        return self

    def launch(self) -> DevServer:
        """Start make run without waiting for it."""
        super().start()
        return self

    def api(self, method: str, path: str) -> tuple[int, object]:
        return http_json(method, f"http://127.0.0.1:{self.port}{path}")

    def descendants(self) -> set[int]:
        found, todo = set(), [self.pid]
        while todo:
            pid = todo.pop()
            for task in Path(f"/proc/{pid}/task").glob("*"):
                try:
                    children = {int(c) for c in (task / "children").read_text().split()}
                except OSError:
                    continue
                todo += children - found
                found |= children
        return found

    def interrupt(self, sig: signal.Signals, *, group: bool) -> int:
        """Send `sig` (to the process group when `group`, like a terminal's Ctrl-C); wait."""
        self.signal_group(sig) if group else self.process.send_signal(sig)
        try:
            return self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.kill()
            raise


def running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def alive(pids: set[int]) -> set[int]:
    return {pid for pid in pids if running(pid)}


def is_redis(pid: int) -> bool:
    try:
        return b"redis-server" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


@pytest.fixture
def private_redis(tmp_path: Path):
    """A redis-server of this test's own on a free port, for REDIS_URL runs."""
    server = RedisServer(tmp_path / "redis", appendonly=False).start()
    yield server
    server.stop()


def test_make_run_serves_starts_stops_clean_and_keeps_records(tmp_path):
    first = DevServer(tmp_path / "first.log", run_dir=tmp_path / "var").start()
    try:
        assert f"http://127.0.0.1:{first.flower_port}" in first.text()
        assert first.api("POST", "/api/orchestrators/HelloSequence/hello-1")[0] == 202
        assert first.api("POST", "/api/orchestrators/HelloSequence/hello-1")[0] in (202, 409)
        wait_until(lambda: first.api("GET", STATUS)[0] == 200, FIRST_RUN_S, "hello-1 to complete")
        processes = first.descendants()
        assert len(processes) >= 6  # honcho, web, worker, beat, flower, redis, ...
    finally:
        first.interrupt(signal.SIGINT, group=True)  # Ctrl-C
    assert not alive(processes), first.text()[-3000:]

    second = DevServer(tmp_path / "second.log", run_dir=tmp_path / "var").start()
    try:
        status, body = second.api("GET", STATUS)
        assert (status, body["runtimeStatus"], body["output"][-1]) == (200, "Completed", "Hello London!")
        processes = second.descendants()
    finally:
        second.interrupt(signal.SIGTERM, group=False)
    assert not alive(processes), second.text()[-3000:]


def test_ctrl_c_stops_the_embedded_redis_after_every_other_process(tmp_path):
    server = DevServer(tmp_path / "make-run.log", run_dir=tmp_path / "var").start()
    try:
        processes = server.descendants()
    except BaseException:
        server.stop()
        raise
    (redis_pid,) = {pid for pid in processes if is_redis(pid)}
    others = processes - {redis_pid}
    server.signal_group(signal.SIGINT)  # what a terminal sends its foreground job
    last_seen: dict[int, float] = {}
    deadline = time.monotonic() + 60
    while alive(processes) and time.monotonic() < deadline:
        now = time.monotonic()
        last_seen.update(dict.fromkeys(alive(processes), now))
        time.sleep(0.01)
    server.process.wait(30)
    assert not alive(processes), server.text()[-3000:]
    assert last_seen[redis_pid] >= max(last_seen.get(pid, 0.0) for pid in others), server.text()[-3000:]
    assert "Embedded Redis stopped" in server.text()
    redis_log = (tmp_path / "var" / "redis" / "redis.log").read_text()
    assert "Received SIGTERM" in redis_log and "Received SIGINT" not in redis_log


def test_make_run_on_redis_url_from_a_fresh_checkout_whose_path_has_a_space(tmp_path, private_redis):
    checkout = tmp_path / "a checkout" / "repo"
    shutil.copytree(REPO, checkout, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv*", "var", "__pycache__", ".pytest_cache", ".ruff_cache"))
    assert not (checkout / "var").exists()

    server = DevServer(tmp_path / "make-run.log", cwd=checkout, REDIS_URL=private_redis.url).start()
    try:
        assert "Embedded Redis" not in server.text()
        assert server.api("POST", "/api/orchestrators/HelloSequence/hello-1")[0] == 202
        _, body = wait_until(lambda: (r := server.api("GET", STATUS))[0] == 200 and r, FIRST_RUN_S,
                             "hello-1 to complete")
        assert body["output"][-1] == "Hello London!"
        assert list((checkout / "var").glob("celerybeat-schedule*"))
    finally:
        server.interrupt(signal.SIGINT, group=True)


def test_a_space_in_run_dir_does_not_break_beat(tmp_path):
    run_dir = tmp_path / "run dir" / "var"
    server = DevServer(tmp_path / "make-run.log", run_dir=run_dir).start()
    try:
        assert "make run: beat is up" in server.text()
        assert list(run_dir.glob("celerybeat-schedule*"))
    finally:
        server.interrupt(signal.SIGINT, group=True)


def test_another_worker_on_the_same_broker_does_not_pass_for_make_runs_own(tmp_path, private_redis):
    unrelated = Worker(tmp_path / "unrelated.log", concurrency=1,
                       env={"REDIS_URL": private_redis.url}).start()
    try:
        # This run's own worker cannot start (a bad pool size): make run must not say it is up.
        (tmp_path / "var").mkdir()  # not what this test is about
        server = DevServer(tmp_path / "make-run.log", run_dir=tmp_path / "var",
                           REDIS_URL=private_redis.url, WORKER_CONCURRENCY="not-a-number").launch()
        try:
            assert server.process.wait(120) != 0
        finally:
            server.stop()
    finally:
        unrelated.stop()
    assert "make run: worker is up" not in server.text()
    assert "a process exited; stopping" in server.text()


def test_the_worker_check_pings_the_broker_in_use_not_redis_url(tmp_path, private_redis):
    broker = RedisServer(tmp_path / "broker", appendonly=False).start()
    (tmp_path / "var").mkdir()  # not what this test is about
    try:
        server = DevServer(tmp_path / "make-run.log", run_dir=tmp_path / "var",
                           REDIS_URL=private_redis.url, CELERY_BROKER_URL=broker.url).start()
        try:
            assert "make run: worker is up" in server.text()
            assert server.api("POST", "/api/orchestrators/HelloSequence/hello-1")[0] == 202
            wait_until(lambda: server.api("GET", STATUS)[0] == 200, FIRST_RUN_S, "hello-1 to complete")
        finally:
            server.interrupt(signal.SIGINT, group=True)
    finally:
        broker.stop()


def test_a_second_make_run_on_one_run_dir_refuses_and_says_why(tmp_path):
    run_dir = tmp_path / "var"
    first = DevServer(tmp_path / "first.log", run_dir=run_dir).start()
    try:
        second = DevServer(tmp_path / "second.log", run_dir=run_dir).launch()
        try:
            wait_until(second.died, 60, "the second make run to exit")
        finally:
            second.stop()
        assert second.process.returncode == 1
        assert f"another make run (pid {first.pid}) is using {run_dir.resolve()}" in second.text()
        assert "Embedded Redis on" not in second.text()
        # The first one still serves, on its own Redis.
        assert first.api("GET", STATUS)[0] == 404
        assert len({pid for pid in first.descendants() if is_redis(pid)}) == 1
    finally:
        first.interrupt(signal.SIGINT, group=True)


def test_the_procfile_flower_refuses_to_start_without_a_login(tmp_path):
    lines = (REPO / "Procfile").read_text().splitlines()
    line = next(entry for entry in lines if entry.startswith("flower:"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWER_")}
    done = subprocess.run(["sh", "-c", line.removeprefix("flower:")], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stderr.strip()) == (1, "flower: set FLOWER_BASIC_AUTH=user:password")
