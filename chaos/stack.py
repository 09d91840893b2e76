"""The chaos run's stack: Redis (append-only), gunicorn, Celery workers and beat.

Each process runs in its own process group, logs to the run's directory, and can be
killed (SIGKILL, whole group or one pool child) and started again.
"""

from __future__ import annotations

import http.client
import os
import random
import sys
from pathlib import Path

from devtools.processes import DeadlinePassed, ManagedProcess, ProcessFailed
from proj.redis_server import RedisServer, free_port
from singleton.settings import REDIS_VISIBILITY_TIMEOUT, Settings, environ_conf

ROOT = Path(__file__).resolve().parent.parent

# What every chaos stack sets: its own key prefix, no task events, an open API.
SETTINGS = {
    "SINGLETON_KEY_PREFIX": "chaos",
    "TASK_EVENTS": "0",
    "TASK_SENT_EVENTS": "0",
    "API_AUTH": "anonymous",
}
# The timings a stack runs with: the library's shipped defaults (nothing set: step
# lease 60 s, run lease 300 s, reconciler every 30 s, Redis visibility timeout 1 h), or
# short ones, so that recovery happens within a short run (CI's version).
TIMINGS = {
    "defaults": {},
    "short": {
        "SINGLETON_STEP_LEASE": "4",
        # Above the longest wait for a first step the load makes (about 10 s measured on
        # RabbitMQ with a worker down): a run lease bounds that wait too, and a shorter
        # one fails runs still queued as Lost.
        "SINGLETON_RUN_LEASE": "30",
        "SINGLETON_RECONCILE_INTERVAL": "2",
        "SINGLETON_VISIBILITY_TIMEOUT": "10",
        "SINGLETON_MAX_COUNTDOWN": "4",
        "BROKER_RESTORE_INTERVAL": "1",
    },
}
# The variables a stack may set for its processes; the driver's process takes them too.
VARIABLES = (*SETTINGS, *TIMINGS["short"])


# The append-only file's fsync policy: "everysec", so a crash of the host may lose up
# to about a second of acknowledged writes (more while a slow fsync postpones writes).
APPENDFSYNC = "everysec"


class Process(ManagedProcess):
    """One long-running command of the stack, in its own process group."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log: Path) -> None:
        super().__init__(args, log=log, env=env, cwd=ROOT, name=name)


class Stack:
    """Redis, gunicorn (2 workers), two Celery workers (2 processes each) and beat.

    Redis is the broker too unless a broker URL is given (RabbitMQ, say).
    """

    def __init__(self, directory: Path, *, broker_url: str = "", timings: str = "defaults") -> None:
        """Lay out the stack in `directory`; `broker_url` (amqp://...) replaces its Redis broker.

        `timings` names an entry of ``TIMINGS``: the shipped defaults, or short ones.
        """
        self.directory = directory
        self.log_dir = directory / "steps"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        # Redis' default fsync policy, named: the crash restart's loss window follows from it.
        self.redis = RedisServer(directory / "redis", appendonly=True,
                                 extra_args=["--appendfsync", APPENDFSYNC])
        self.web_port = free_port()
        self.env = {**os.environ, **SETTINGS, **TIMINGS[timings], "REDIS_URL": self.redis.url,
                    "CHAOS_LOG_DIR": str(self.log_dir)}
        # Only the chosen timings: none inherited from the caller's environment.
        unset = [name for name in TIMINGS["short"] if name not in TIMINGS[timings]]
        for name in ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "API_KEYS", *unset):
            self.env.pop(name, None)
        if broker_url:
            self.env["CELERY_BROKER_URL"] = broker_url
        celery = [sys.executable, "-m", "celery", "-A", "proj"]
        self.web = Process("web", [sys.executable, "-m", "gunicorn", "-w", "2", "-b",
                                   f"127.0.0.1:{self.web_port}", "--log-level", "warning",
                                   "proj.web:app"], self.env, directory / "web.log")
        self.workers = [
            Process(f"worker{n}", [*celery, "worker", "-n", f"chaos{n}@%h", "-c", "2", "-I",
                                   "chaos.steplog", "--loglevel=INFO", "--without-gossip",
                                   "--without-mingle"], self.env, directory / f"worker{n}.log")
            for n in (1, 2)
        ]
        self.beat = Process("beat", [*celery, "beat", "--loglevel=INFO",
                                     f"--schedule={directory / 'beat-schedule'}"],
                            self.env, directory / "beat.log")

    def start(self) -> Stack:
        """Start everything and wait until the API answers."""
        self.redis.start()
        for process in (self.web, *self.workers, self.beat):
            process.start()
        try:
            self.web.wait_ready(self._web_answers, timeout=60, what="the API to answer")
        except (ProcessFailed, DeadlinePassed):
            raise RuntimeError(f"the API did not come up; see {self.directory / 'web.log'}") from None
        return self

    def settings(self) -> Settings:
        """Return the singleton layer's settings as the stack's processes read them."""
        return Settings.from_conf(environ_conf(self.env))

    def visibility_timeout(self) -> float:
        """Return the Redis broker's visibility timeout the stack's workers use (seconds)."""
        return float(self.env.get("SINGLETON_VISIBILITY_TIMEOUT", REDIS_VISIBILITY_TIMEOUT))

    def _web_answers(self) -> bool:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.web_port, timeout=2)
            conn.request("GET", "/api/openapi.json")
            return conn.getresponse().status == 200
        except OSError:
            return False

    def random_pool_child(self, rng: random.Random) -> tuple[Process, int] | None:
        """Return a live worker and one of its pool processes, if any."""
        candidates = [(w, pid) for w in self.workers if w.alive() for pid in w.children()]
        return rng.choice(candidates) if candidates else None

    def restart_redis(self) -> None:
        """Stop Redis warmly (it writes its append-only file) and start it on the same port."""
        self.redis.stop()
        self.redis.start()

    def crash_redis(self) -> None:
        """SIGKILL Redis (no shutdown, no final write) and start it on the same append-only file."""
        assert self.redis.process is not None
        self.redis.process.kill()
        self.redis.start()

    def stop(self) -> None:
        """Stop every process, Redis last."""
        for process in (self.beat, self.web, *self.workers):
            process.stop()
        self.redis.stop()
