"""Measuring helpers shared by the benchmark sections: spreads, percentiles, Redis counts."""

from __future__ import annotations

import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

VERSIONED = ("celery", "kombu", "redis", "celery-singleton", "celery-once", "flask", "gunicorn")


@dataclass(frozen=True)
class Spread:
    """The median of repeated measurements, with their minimum and maximum."""

    median: float
    low: float
    high: float
    samples: tuple[float, ...]

    @classmethod
    def of(cls, samples: Iterable[float]) -> Spread:
        """Summarise `samples` (at least one)."""
        values = tuple(samples)
        return cls(statistics.median(values), min(values), max(values), values)


def percentile(values: Sequence[float], q: float) -> float:
    """Return the `q` quantile (0..1) of `values` by the nearest-rank rule; nan when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def rotated(names: Sequence[str], repetition: int) -> list[str]:
    """Return `names` rotated by `repetition`, so that no tool always goes first."""
    k = repetition % len(names)
    return [*names[k:], *names[:k]]


def time_calls(fn: Callable[[], Any], calls: int) -> float:
    """Call `fn` `calls` times; return the elapsed wall-clock seconds."""
    began = time.perf_counter()
    for _ in range(calls):
        fn()
    return time.perf_counter() - began


# -- Redis command counts ----------------------------------------------------------
def command_calls(client: Any) -> dict[str, int]:
    """Return Redis' cumulative per-command call counts (INFO commandstats)."""
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def executed_per_call(client: Any, fn: Callable[[], Any], calls: int) -> dict[str, float]:
    """Return the commands Redis executed per call of `fn`, script internals included.

    The server must be otherwise idle: INFO commandstats counts every client.
    """
    before = command_calls(client)
    for _ in range(calls):
        fn()
    after = command_calls(client)
    after.pop("info", None)
    delta = {k: (v - before.get(k, 0)) / calls for k, v in after.items()}
    return {k: v for k, v in sorted(delta.items()) if v}


def sent_per_call(client: Any, fn: Callable[[], Any], calls: int) -> dict[str, float]:
    """Return the commands clients sent per call of `fn` (MONITOR; a script counts once)."""
    sentinel = f"bench-commands-done-{time.monotonic_ns()}"
    counts: dict[str, int] = {}
    with client.monitor() as monitor:
        for _ in range(calls):
            fn()
        client.echo(sentinel)
        while True:
            command = monitor.next_command()
            if command["command"] == f"ECHO {sentinel}":
                break
            if command["client_type"] != "lua":
                name = command["command"].split(" ", 1)[0].lower()
                counts[name] = counts.get(name, 0) + 1
    return {k: v / calls for k, v in sorted(counts.items())}


# -- the machine -----------------------------------------------------------------
def cpu_model() -> str:
    """Return the CPU's model name (from /proc/cpuinfo where there is one)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine(redis_version: str) -> dict[str, str]:
    """Describe the machine and the software versions the figures were measured with."""
    versions = {}
    for name in VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return {
        "cpu": cpu_model(),
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "os": platform.platform(),
        "redis-server": redis_version,
        **versions,
    }
