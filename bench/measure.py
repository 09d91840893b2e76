"""Measuring helpers shared by the benchmark sections: spreads, percentiles, the machine.

Redis command counts live in ``devtools.redis_commands`` (the tests use them too).
"""

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
