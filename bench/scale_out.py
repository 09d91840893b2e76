"""Section 6, scale-out: RabbitMQ as the broker, and claims confirmed by a replica.

RabbitMQ: on a vhost of its own on the local RabbitMQ (127.0.0.1:5672, deleted
afterwards), start_new against the same chain's plain ``apply_async(ignore_result=
True)`` (one thread, no worker, unique IDs), then the end-to-end batches of section 4
with a worker on that vhost. Redis stays the result backend and record store.

Replicas: claims per second on a private master with one replica, with
``singleton_min_replicas`` 0 and 1 (the claim then waits with WAIT for the replica).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from celery import Celery, chain

from devtools.rabbitmq import RabbitVhost, point_app_at, rabbitmq_missing
from proj.redis_server import RedisServer

from . import end_to_end
from .measure import Spread, rotated, time_calls

ON_RABBITMQ = ("start_new", "plain, ignore_result")
WARM_UP_CALLS = 50


def run(app: Celery, worker_env: dict[str, str], workdir: Path, *, calls: int, runs: int,
        repetitions: int, concurrency: int, timeout: float, log: Callable[[str], None]) -> dict[str, Any]:
    """Measure both parts; the RabbitMQ part says why when it cannot run here."""
    results: dict[str, Any] = {"replicas": replicas(workdir, calls=calls, repetitions=repetitions, log=log)}
    missing = rabbitmq_missing()
    if missing:
        results["rabbitmq_missing"] = missing
        log(f"scale-out: RabbitMQ skipped: {missing}")
        return results
    vhost = RabbitVhost(f"singleton-bench-{uuid.uuid4().hex[:8]}").create()
    redis_url, redis_options = app.conf.broker_url, app.conf.broker_transport_options
    point_app_at(app, vhost.url, {"confirm_publish": True})
    try:
        results["start"] = _start_rates(app, calls=calls, repetitions=repetitions, log=log)
        # The starts measured above wait in the bench's own vhost: a worker that had to work
        # through them first would time out the end-to-end batches.
        with app.connection_for_write() as connection:
            connection.default_channel.queue_purge(app.conf.task_default_queue)
        env = {**worker_env, "CELERY_BROKER_URL": vhost.url}
        results["e2e"] = end_to_end.run(app, env, workdir, runs=runs, repetitions=repetitions,
                                        concurrency=concurrency, timeout=timeout, log=log)
    finally:
        point_app_at(app, redis_url, redis_options)
        vhost.delete()
    return results


def _start_rates(app: Celery, *, calls: int, repetitions: int,
                 log: Callable[[str], None]) -> dict[str, Spread]:
    from proj.tasks import say_hello
    from singleton import OrchestrationClient

    client = OrchestrationClient(app)

    def plain() -> Any:
        return chain(say_hello.s([], "Tokyo"), say_hello.s("Seattle"), say_hello.s("London")).apply_async(
            ignore_result=True)

    starts = {"start_new": lambda: client.start_new("HelloSequence", uuid.uuid4().hex),
              "plain, ignore_result": plain}
    for start in starts.values():
        time_calls(start, WARM_UP_CALLS)
    seconds: dict[str, list[float]] = {name: [] for name in starts}
    for rep in range(repetitions):
        for name in rotated(list(starts), rep):
            elapsed = time_calls(starts[name], calls)
            seconds[name].append(elapsed)
            log(f"rabbitmq start rep {rep + 1} {name:22s} {calls / elapsed:9.1f} calls/s")
    return {name: Spread.of(calls / s for s in spent) for name, spent in seconds.items()}


def replicas(workdir: Path, *, calls: int, repetitions: int, log: Callable[[str], None]) -> dict[int, Spread]:
    """Return claims/s on a master with one replica, for min_replicas 0 and 1."""
    from singleton import Settings
    from singleton.store import Store

    master = RedisServer(workdir / "replica-master", appendonly=False).start()
    replica = RedisServer(workdir / "replica", appendonly=False,
                          extra_args=["--replicaof", "127.0.0.1", str(master.port)]).start()
    try:
        bare = Celery("bench-replicas", set_as_current=False)
        stores = {n: Store.from_app(bare, Settings(key_prefix=f"bench-replicas-{n}", store_url=master.url,
                                                   min_replicas=n)) for n in (0, 1)}

        def claims(store: Store) -> Callable[[], Any]:
            return lambda: store.claim(uuid.uuid4().hex, name="HelloSequence", run_id=uuid.uuid4().hex,
                                       input_json="null")

        for store in stores.values():
            time_calls(claims(store), WARM_UP_CALLS)
        seconds: dict[int, list[float]] = {n: [] for n in stores}
        for rep in range(repetitions):
            for n in rotated(list(stores), rep):
                elapsed = time_calls(claims(stores[n]), calls)
                seconds[n].append(elapsed)
                log(f"replicas rep {rep + 1} min_replicas={n} {calls / elapsed:9.1f} claims/s")
        return {n: Spread.of(calls / s for s in spent) for n, spent in seconds.items()}
    finally:
        replica.stop()
        master.stop()


def section(results: dict[str, Any], spread: Callable[..., str],
            table: Callable[..., list[str]]) -> list[str]:
    """Return the section's markdown lines."""
    lines = ["## 6. Scale-out: RabbitMQ broker, replica-confirmed claims", ""]
    if "rabbitmq_missing" in results:
        lines += [f"RabbitMQ was not measured: {results['rabbitmq_missing']}.", ""]
    else:
        start, e2e = results["start"], results["e2e"]
        plain = start["plain, ignore_result"].median
        lines += table(["on RabbitMQ (one thread, no worker)", "starts/s", "vs plain"],
                       [[name, spread(s, "{:.0f}"), f"{s.median / plain:.2f}x"] for name, s in start.items()])
        chains = e2e[end_to_end.CHAINS]["rate"].median
        rows = [[name, spread(r["rate"]), f"{r['rate'].median / chains:.2f}x"] for name, r in e2e.items()]
        lines += table(["on RabbitMQ, end to end", "runs/s", "vs plain chains"], rows)
    reps = results["replicas"]
    lines += table(["claims on a master with one replica", "claims/s", "µs per claim"],
                   [[f"singleton_min_replicas={n}", spread(s, "{:.0f}"), f"{1e6 / s.median:.0f}"]
                    for n, s in reps.items()])
    lines += ["RabbitMQ runs on a vhost of its own with publisher confirms (`confirm_publish`, as "
              "celeryconfig sets on amqp), classic queues; Redis stays the result backend and store. "
              "With min_replicas=1 the claim and a `WAIT 1` share one pipeline (and redis-py checks the "
              "script's SHA with SCRIPT EXISTS first), on loopback.", ""]
    return lines
