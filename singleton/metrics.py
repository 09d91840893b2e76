"""Prometheus metrics of the singleton layer, fed by its signals.

``install()`` (called by ``singleton.init_app``) connects the handlers in every
process that imports the app: API workers count starts and terminations, Celery
pool processes count gate verdicts, step durations, run endings, ticks and
reconciler passes. ``exposition()`` renders one scrape, adding the live-run gauge
read from Redis at that moment.

Under gunicorn or prefork Celery each process holds its own counts: set
``PROMETHEUS_MULTIPROC_DIR`` (an empty directory, the same for the API and the
workers of one host) before the processes start, and each scrape adds up every
process's files (prometheus_client's multiprocess mode). Labels are only the
orchestrator, outcome, status, task and verdict: never an instance or run ID.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any

from celery import Celery
from celery.signals import worker_process_shutdown
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily

from . import signals
from .errors import ServiceUnavailable
from .status import LIVE_STATUSES

logger = logging.getLogger(__name__)

# prometheus_client picks its storage when a metric is created, from this variable.
MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
CONTENT_TYPE = CONTENT_TYPE_LATEST
# The live-run gauge reads at most this many records per scrape.
LIVE_RUNS_SAMPLE = 1024


@dataclass(frozen=True)
class MetricInfo:
    """One metric as documented: its exposed name, type, labels and meaning."""

    name: str
    type: str
    labels: tuple[str, ...]
    help: str


METRICS = (
    MetricInfo("singleton_starts_total", "counter", ("orchestrator", "outcome"),
               "Starts by outcome: started, refused_live, refused_policy, replayed, invalid, unavailable."),
    MetricInfo("singleton_runs_ended_total", "counter", ("orchestrator", "status"),
               "Runs that reached a terminal status: Completed, Failed, Terminated, Lost, TimedOut."),
    MetricInfo("singleton_step_duration_seconds", "histogram", ("task",),
               "Execution time of user steps (deliveries that passed the step gate)."),
    MetricInfo("singleton_gate_verdicts_total", "counter", ("verdict",),
               "Step gate verdicts: run, stale, busy, done, parked, suspended, continued."),
    MetricInfo("singleton_reconciled_total", "counter", ("outcome",),
               "Overdue runs the reconciler examined, by outcome: lost, timed_out, parked, alive, gone."),
    MetricInfo("singleton_beat_ticks_total", "counter", ("orchestrator", "outcome"),
               "Ticks of the starter task (beat, Flower) by outcome: started, skipped, buffered."),
    MetricInfo("singleton_live_runs", "gauge", ("status",),
               "Live runs by status, read from Redis at scrape time."),
    MetricInfo("singleton_claim_seconds", "histogram", (),
               "Round trip of the claim script, as the client sees it."),
)
_INFO = {m.name: m for m in METRICS}
# Multiprocess mode has no *_created series; neither has the single-process mode then.
disable_created_metrics()


def markdown_table() -> str:
    """Return the metrics as the README's table (a test keeps the two equal)."""
    rows = ["| metric | type | labels | meaning |", "|---|---|---|---|"]
    for m in METRICS:
        labels = ", ".join(f"`{label}`" for label in m.labels) or "-"
        rows.append(f"| `{m.name}` | {m.type} | {labels} | {m.help} |")
    return "\n".join(rows) + "\n"


def _counter(name: str) -> Counter:
    info = _INFO[name]
    return Counter(name.removesuffix("_total"), info.help, info.labels)


def _histogram(name: str, buckets: tuple[float, ...]) -> Histogram:
    info = _INFO[name]
    return Histogram(name, info.help, info.labels, buckets=buckets)


starts = _counter("singleton_starts_total")
runs_ended = _counter("singleton_runs_ended_total")
gate_verdicts = _counter("singleton_gate_verdicts_total")
reconciled = _counter("singleton_reconciled_total")
beat_ticks = _counter("singleton_beat_ticks_total")
step_duration = _histogram(
    "singleton_step_duration_seconds",
    (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, float("inf")),
)
claim_seconds = _histogram(
    "singleton_claim_seconds",
    (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, float("inf")),
)

# Step start times by task id, in the pool process running the step.
_started: dict[str, float] = {}


def _on_start_decided(sender: Any = None, orchestrator: str = "", outcome: str = "",
                      seconds: float | None = None, **_: Any) -> None:
    starts.labels(orchestrator, outcome).inc()
    if seconds is not None:
        claim_seconds.observe(seconds)


def _on_gate_decided(sender: Any = None, verdict: str = "", **_: Any) -> None:
    gate_verdicts.labels(verdict).inc()


def _on_step_started(sender: Any = None, task_id: str = "", **_: Any) -> None:
    _started[task_id] = time.perf_counter()


def _on_step_finished(sender: Any = None, task_id: str = "", **_: Any) -> None:
    began = _started.pop(task_id, None)
    if began is not None:
        step_duration.labels(sender.name).observe(time.perf_counter() - began)


def _on_run_ended(sender: Any = None, store: Any = None, instance_id: str = "",
                  orchestrator: str = "", status: str = "", **_: Any) -> None:
    if not orchestrator:
        orchestrator = _names(store, [instance_id])[0]
    runs_ended.labels(orchestrator, status).inc()


def _on_reconciled(sender: Any = None, instance_ids: Any = (), outcomes: Any = (), **_: Any) -> None:
    ended = []
    for instance_id, outcome in zip(instance_ids, outcomes, strict=True):
        reconciled.labels(outcome).inc()
        if outcome in ("lost", "timed_out"):
            ended.append((instance_id, "Lost" if outcome == "lost" else "TimedOut"))
    if ended:
        names = _names(sender, [instance_id for instance_id, _ in ended])
        for name, (_, status) in zip(names, ended, strict=True):
            runs_ended.labels(name, status).inc()


def _on_tick_decided(sender: Any = None, orchestrator: str = "", outcome: str = "", **_: Any) -> None:
    beat_ticks.labels(orchestrator, outcome).inc()


def _names(store: Any, instance_ids: list[str]) -> list[str]:
    # The orchestrator of runs whose caller knew only the ID (terminal records keep it).
    try:
        records = store.read_many(instance_ids)
    except ServiceUnavailable:
        records = [None] * len(instance_ids)
    return [(record or {}).get("name", "") for record in records]


def _on_process_shutdown(pid: int | None = None, **_: Any) -> None:
    if MULTIPROCESS:
        multiprocess.mark_process_dead(pid or os.getpid())


_HANDLERS = (
    (signals.start_decided, _on_start_decided),
    (signals.gate_decided, _on_gate_decided),
    (signals.step_started, _on_step_started),
    (signals.step_finished, _on_step_finished),
    (signals.run_ended, _on_run_ended),
    (signals.reconciled, _on_reconciled),
    (signals.tick_decided, _on_tick_decided),
    (worker_process_shutdown, _on_process_shutdown),
)


def install(app: Celery | None = None) -> None:
    """Count the layer's decisions in this process (idempotent)."""
    for signal, handler in _HANDLERS:
        signal.connect(handler, weak=False, dispatch_uid=f"singleton.metrics.{handler.__name__}")


class LiveRunsCollector:
    """The ``singleton_live_runs`` gauge, read from the store when collected."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def collect(self) -> Any:
        """Yield the gauge; nothing when Redis cannot be read (the scrape still works)."""
        try:
            counts = self.store.live_runs(LIVE_RUNS_SAMPLE)
        except ServiceUnavailable:
            logger.warning("Could not read the live runs for a metrics scrape.")
            return
        gauge = GaugeMetricFamily("singleton_live_runs", _INFO["singleton_live_runs"].help,
                                  labels=["status"])
        for status in sorted(s.value for s in LIVE_STATUSES):
            gauge.add_metric([status], round(counts.get(status, 0.0)))
        yield gauge


def exposition(store: Any) -> bytes:
    """Render one scrape: every process's metrics (multiprocess mode) and the live runs."""
    live = CollectorRegistry(auto_describe=False)
    live.register(LiveRunsCollector(store))
    if MULTIPROCESS:
        # A registry per scrape, as prometheus_client's multiprocess mode requires.
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry) + generate_latest(live)
    return generate_latest(REGISTRY) + generate_latest(live)
