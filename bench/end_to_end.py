"""Section 4, end to end: a live `celery -A proj worker` runs orchestrations and chains.

Per repetition and kind (interleaved), `runs` runs are started back to back, then
polled (one pipelined read of the oldest unfinished runs per poll) until every run
has finished. The figure
is runs completed per second, from the first start to the last completion. Both
kinds run the same three say_hello steps on the same worker; the orchestrations
add the singleton claim, the step fences and the record updates.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from celery import Celery, chain

from devtools.processes import DeadlinePassed, ManagedProcess, ProcessFailed

from .measure import Spread, rotated

ROOT = Path(__file__).resolve().parent.parent
ORCHESTRATIONS = "HelloSequence orchestrations"
CHAINS = "plain 3-step chains"
POLL_INTERVAL_S = 0.05
POLL_BATCH = 50


class BenchWorker(ManagedProcess):
    """``celery -A proj worker`` in its own process group, ready once it answers a ping."""

    def __init__(self, log: Path, env: dict[str, str], *, concurrency: int) -> None:
        self.node = f"bench-{uuid.uuid4().hex[:6]}@localhost"
        self.concurrency = concurrency
        args = [
            sys.executable, "-m", "celery", "-A", "proj", "worker", "-n", self.node,
            "-c", str(concurrency), "--loglevel=WARNING",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]
        super().__init__(args, log=log, env=env, cwd=ROOT, name="bench worker")

    def start(self, app: Celery, timeout: float = 60.0) -> BenchWorker:
        """Start the worker; wait until it answers a ping on `app`'s broker."""
        super().start()
        try:
            self.wait_ready(lambda: app.control.ping(destination=[self.node], timeout=0.5),
                            timeout=timeout, what="the bench worker to answer a ping")
        except (ProcessFailed, DeadlinePassed):
            self.stop()
            raise RuntimeError(f"the bench worker did not start; see {self.log}") from None
        return self


def _orchestrations(app: Celery) -> tuple[Callable[[], str], Callable[[list[str]], list[bool]]]:
    from singleton import OrchestrationClient, RuntimeStatus
    from singleton.runtime import runtime

    client = OrchestrationClient(app)
    store = runtime(app).store
    finished = {s.value for s in RuntimeStatus if s.is_terminal}

    def start() -> str:
        return client.start_new("HelloSequence")

    def done(ids: list[str]) -> list[bool]:
        return [bool(r and r["status"] in finished) for r in store.read_many(ids)]

    return start, done


def _chains(app: Celery) -> tuple[Callable[[], str], Callable[[list[str]], list[bool]]]:
    from proj.tasks import say_hello

    backend = app.backend

    def start() -> str:
        steps = chain(say_hello.s([], "Tokyo"), say_hello.s("Seattle"), say_hello.s("London"))
        return steps.apply_async().id  # the last step's id

    def done(ids: list[str]) -> list[bool]:
        pipe = backend.client.pipeline(transaction=False)
        for task_id in ids:
            pipe.exists(backend.get_key_for_task(task_id))
        return [bool(n) for n in pipe.execute()]

    return start, done


def one_batch(start: Callable[[], str], done: Callable[[list[str]], list[bool]], runs: int,
              timeout: float) -> dict[str, float]:
    """Start `runs` runs, wait until all finished; return throughput and timings.

    Each poll reads at most POLL_BATCH of the oldest unfinished runs (runs finish
    roughly in order), so that polling takes little CPU from the worker.
    """
    began = time.perf_counter()
    pending = [start() for _ in range(runs)]
    submitted = time.perf_counter() - began
    deadline = time.monotonic() + timeout
    while pending:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(pending)} of {runs} runs unfinished after {timeout:.0f} s")
        batch = pending[:POLL_BATCH]
        still = [run_id for run_id, finished in zip(batch, done(batch), strict=True) if not finished]
        if len(still) == len(batch):
            time.sleep(POLL_INTERVAL_S)
        pending = still + pending[POLL_BATCH:]
    elapsed = time.perf_counter() - began
    return {"rate": runs / elapsed, "seconds": elapsed, "submit_seconds": submitted}


def run(
    app: Celery,
    worker_env: dict[str, str],
    log_dir: Path,
    *,
    runs: int,
    repetitions: int,
    concurrency: int,
    timeout: float,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Start a worker, run interleaved batches of both kinds; return rates per kind."""
    kinds = {ORCHESTRATIONS: _orchestrations(app), CHAINS: _chains(app)}
    worker = BenchWorker(log_dir / "worker.log", worker_env, concurrency=concurrency).start(app)
    try:
        for start, done in kinds.values():  # warm the worker's pool children
            one_batch(start, done, max(10, runs // 20), timeout)
        batches: dict[str, list[dict[str, float]]] = {name: [] for name in kinds}
        for rep in range(repetitions):
            for name in rotated(list(kinds), rep):
                b = one_batch(*kinds[name], runs, timeout)
                batches[name].append(b)
                log(f"end to end rep {rep + 1} {name:28s} {b['rate']:7.1f} runs/s "
                    f"({runs} in {b['seconds']:.2f} s, submitted in {b['submit_seconds']:.2f} s)")
    finally:
        worker.stop()
    return {
        name: {
            "rate": Spread.of(b["rate"] for b in bs),
            "seconds": Spread.of(b["seconds"] for b in bs),
        }
        for name, bs in batches.items()
    }


def profile(
    app: Celery, worker_env: dict[str, str], log_dir: Path, *, runs: int, concurrency: int,
    timeout: float,
) -> dict[str, Any]:
    """Sample a worker's processes with py-spy while it runs a batch of orchestrations."""
    from .profile import profile_process

    start, done = _orchestrations(app)
    worker = BenchWorker(log_dir / "worker-profiled.log", worker_env, concurrency=concurrency).start(app)
    try:
        one_batch(start, done, max(10, runs // 20), timeout)  # warm
        return profile_process(worker.pid, lambda: one_batch(start, done, runs, timeout))
    finally:
        worker.stop()
