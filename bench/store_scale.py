"""Section 5, scale of the record store: read latency with 1k, 10k and 100k records.

Each size gets its own Redis database, filled with terminal (Completed) records
through the Store API (claim, then end_run: what a finished run leaves), by a few
processes in parallel. Then status reads and list pages are timed on every size,
the sizes taking turns within each repetition. Memory per record is the growth of
``used_memory`` over the largest fill divided by its records (record hash, its TTL
and both index entries), next to the sum of ``MEMORY USAGE`` over every key of the
database per record, and ``MEMORY USAGE`` of sampled record hashes alone.
"""

from __future__ import annotations

import multiprocessing
import random
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import redis
from celery import Celery

from .measure import Spread, percentile, rotated

SMALL_INPUT = '{"city":"Tokyo"}'
SMALL_OUTPUT = '["Hello Tokyo!","Hello Seattle!","Hello London!"]'
FILL_THREADS = 4
MEMORY_SAMPLES = 200
# used_memory moving less than this in half a second counts as settled.
SETTLED_BYTES = 16 * 1024


def db_url(server_url: str, db: int) -> str:
    """Return `server_url` pointed at database `db`."""
    return f"{server_url.rsplit('/', 1)[0]}/{db}"


def scale_app(url: str) -> Celery:
    """Return a product app (the singleton layer on it) whose broker and store are `url`."""
    import singleton

    app = Celery(f"bench-scale-{url.rsplit('/', 1)[1]}", set_as_current=False)
    app.config_from_object("celeryconfig")
    app.conf.update(broker_url=url, result_backend=url)
    singleton.init_app(app)
    return app


def _fill_share(url: str, first: int, last: int) -> None:
    from singleton import RuntimeStatus
    from singleton.runtime import runtime

    store = runtime(scale_app(url)).store

    def fill(ids: range) -> None:
        for n in ids:
            instance_id, run_id = f"rec-{n:07d}", uuid.uuid4().hex
            store.claim(instance_id, name="HelloSequence", run_id=run_id, input_json=SMALL_INPUT)
            store.end_run(
                instance_id, run_id=run_id, status=RuntimeStatus.COMPLETED, output_json=SMALL_OUTPUT
            )

    shares = [range(first + k, last, FILL_THREADS) for k in range(FILL_THREADS)]
    threads = [threading.Thread(target=fill, args=(share,)) for share in shares]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def fill(url: str, count: int, processes: int) -> float:
    """Write `count` Completed records into the database at `url`; return the seconds."""
    ctx = multiprocessing.get_context("spawn")
    bounds = [count * k // processes for k in range(processes + 1)]
    began = time.perf_counter()
    with ctx.Pool(processes) as pool:
        pool.starmap(_fill_share, [(url, bounds[k], bounds[k + 1]) for k in range(processes)])
    return time.perf_counter() - began


def record_memory(url: str) -> float:
    """Return the median MEMORY USAGE (bytes) of sampled record hashes in the database."""
    r = redis.Redis.from_url(url)
    sizes = []
    for _ in range(MEMORY_SAMPLES * 3):
        key = r.randomkey()
        if key is not None and r.type(key) == b"hash":
            sizes.append(r.memory_usage(key, samples=0))
        if len(sizes) == MEMORY_SAMPLES:
            break
    return float(statistics.median(sizes))


def keys_memory(url: str) -> int:
    """Return the sum of MEMORY USAGE over every key of the database (records and indexes)."""
    r = redis.Redis.from_url(url)
    total = 0
    batch: list[bytes] = []
    for key in r.scan_iter(count=1000):
        batch.append(key)
        if len(batch) == 1000:
            total += _usage(r, batch)
            batch = []
    return total + _usage(r, batch)


def _usage(r: redis.Redis, keys: list[bytes]) -> int:
    pipe = r.pipeline(transaction=False)
    for key in keys:
        pipe.memory_usage(key, samples=0)
    return sum(n or 0 for n in pipe.execute())


def settled_memory(admin: redis.Redis, timeout: float = 10.0) -> int:
    """Return used_memory once it stops moving (Redis shrinks idle clients' buffers lazily)."""
    deadline = time.monotonic() + timeout
    last = admin.info("memory")["used_memory"]
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = admin.info("memory")["used_memory"]
        if abs(now - last) < SETTLED_BYTES:
            return now
        last = now
    return last


def _timed(fn: Callable[[], Any], calls: int) -> list[float]:
    spent = []
    for _ in range(calls):
        began = time.perf_counter()
        fn()
        spent.append(time.perf_counter() - began)
    return spent


def read_latency(app: Celery, count: int, calls: int) -> dict[str, float]:
    """Time status reads and list pages on a filled database; return p50/p99 in ms."""
    from singleton import OrchestrationClient, RuntimeStatus

    client = OrchestrationClient(app)
    rng = random.Random(count)
    ids = [f"rec-{rng.randrange(count):07d}" for _ in range(calls)]
    it = iter(ids)
    status = _timed(lambda: client.get_status(next(it)), calls)
    page_calls = max(5, calls // 10)
    pages = _timed(lambda: client.get_status_by(page_size=100), page_calls)
    filtered = _timed(
        lambda: client.get_status_by(runtime_status=[RuntimeStatus.COMPLETED], page_size=100), page_calls
    )
    dashboard = _timed(dashboard_page(app, client), page_calls)
    figures = {}
    for name, spent in (("status", status), ("page", pages), ("filtered_page", filtered),
                        ("dashboard_page", dashboard)):
        figures[f"{name}_p50"] = 1000 * percentile(spent, 0.5)
        figures[f"{name}_p99"] = 1000 * percentile(spent, 0.99)
    return figures


_DASHBOARDS: dict[int, Any] = {}


def dashboard_page(app: Celery, client: Any) -> Callable[[], None]:
    """Return a call that renders the dashboard's list page (100 rows and the live summary)
    through a Flask app serving only the dashboard on `app` (built once per app, so its
    templates are compiled before the timed calls)."""
    from flask import Flask

    from api.dashboard import register_dashboard

    if id(app) not in _DASHBOARDS:
        web = Flask(f"bench-dashboard-{id(app)}")
        register_dashboard(web, client, celery_app=app, keys=(), config={})
        _DASHBOARDS[id(app)] = web.test_client()
    browser = _DASHBOARDS[id(app)]

    def render() -> None:
        response = browser.get("/dashboard/?top=100")
        assert response.status_code == 200 and response.data.count(b"<tr data-id=") == 100

    return render


def run(
    server_url: str,
    *,
    sizes: Sequence[int],
    first_db: int,
    calls: int,
    repetitions: int,
    processes: int,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Fill one database per size, then time reads interleaved; return figures by size."""
    admin = redis.Redis.from_url(server_url)
    apps, fills, memory = {}, {}, {}
    for k, size in enumerate(sizes):
        url = db_url(server_url, first_db + k)
        redis.Redis.from_url(url).flushdb()
        before = settled_memory(admin)
        fills[size] = fill(url, size, processes)
        grown = settled_memory(admin) - before
        memory[size] = {"per_record": grown / size, "keys_per_record": keys_memory(url) / size,
                        "hash": record_memory(url)}
        apps[size] = scale_app(url)
        log(f"store scale: {size} records in {fills[size]:.1f} s; used_memory grew {grown / size:.0f} B "
            f"per record; MEMORY USAGE of all keys {memory[size]['keys_per_record']:.0f} B per record, "
            f"of a record hash {memory[size]['hash']:.0f} B")
    samples: dict[int, list[dict[str, float]]] = {size: [] for size in sizes}
    for size, app in apps.items():
        read_latency(app, size, max(10, calls // 10))  # warm: connections, imports
    for rep in range(repetitions):
        for size in rotated(list(sizes), rep):
            figures = read_latency(apps[size], size, calls)
            samples[size].append(figures)
            log(f"store scale rep {rep + 1} {size:>7d} records: status p50 {figures['status_p50']:.3f} ms, "
                f"page p50 {figures['page_p50']:.2f} ms, "
                f"filtered page p50 {figures['filtered_page_p50']:.2f} ms, "
                f"dashboard list page p50 {figures['dashboard_page_p50']:.2f} ms")
    return {
        size: {
            "fill_seconds": fills[size],
            **memory[size],
            **{key: Spread.of(s[key] for s in samples[size]) for key in samples[size][0]},
        }
        for size in sizes
    }


def profile_page(url: str, calls: int, *, filtered: bool = False) -> dict[str, Any]:
    """Profile list pages (optionally filtered by status) on the database at `url` (pyinstrument)."""
    from singleton import OrchestrationClient, RuntimeStatus

    from .profile import profile_calls

    client = OrchestrationClient(scale_app(url))
    statuses = [RuntimeStatus.COMPLETED] if filtered else None
    return profile_calls(lambda: client.get_status_by(runtime_status=statuses, page_size=100), max(5, calls))
