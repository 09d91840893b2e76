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


# -- ratios from interleaved pairs -------------------------------------------------
MIN_PAIRS = 15


@dataclass(frozen=True)
class Ratio:
    """Ours over a baseline, from many short interleaved pairs: the median and the quartiles.

    One long run per tool cannot tell a regression from the machine's drift; the ratio
    of two short runs taken back to back can, and the quartiles of many such ratios say
    how far the figure is to be trusted.
    """

    median: float
    q1: float
    q3: float
    samples: tuple[float, ...]

    @classmethod
    def of(cls, samples: Iterable[float]) -> Ratio:
        """Summarise `samples` (at least one ratio)."""
        values = tuple(samples)
        return cls(statistics.median(values), percentile(values, 0.25), percentile(values, 0.75), values)

    def verdict(self, target: float, *, higher_is_better: bool = True) -> str:
        """Return 'met' when the whole interquartile range clears `target`, 'not met' when none
        of it does, and 'noisy' when the spread straddles it."""
        low, high = (self.q1, self.q3) if higher_is_better else (-self.q3, -self.q1)
        goal = target if higher_is_better else -target
        if low >= goal:
            return "met"
        if high < goal:
            return "not met"
        return "noisy"

    def text(self) -> str:
        """Return the median with its interquartile range, e.g. '1.02x (IQR 0.97-1.08, 15 pairs)'."""
        return f"{self.median:.2f}x (IQR {self.q1:.2f}-{self.q3:.2f}, {len(self.samples)} pairs)"


@dataclass(frozen=True)
class Pair:
    """Wall-clock and process (CPU) seconds of one short run of ours and one of the baseline."""

    ours_wall: float
    ours_cpu: float
    base_wall: float
    base_cpu: float


def timed(fn: Callable[[], Any], calls: int) -> tuple[float, float]:
    """Call `fn` `calls` times; return (wall seconds, this process's CPU seconds)."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def interleaved_pairs(
    ours: Callable[[], Any], base: Callable[[], Any], *, pairs: int, calls: int,
    between: Callable[[], Any] = lambda: None,
) -> list[Pair]:
    """Time `calls` calls of ours, then of the baseline, `pairs` times; the order alternates
    from pair to pair so that neither always runs first. `between` runs untimed after each run."""
    found = []
    for i in range(max(pairs, MIN_PAIRS)):
        runs = {}
        for name in (("ours", "base") if i % 2 == 0 else ("base", "ours")):
            runs[name] = timed(ours if name == "ours" else base, calls)
            between()
        found.append(Pair(*runs["ours"], *runs["base"]))
    return found


def throughput_ratio(pairs: Sequence[Pair]) -> Ratio:
    """Ours' throughput over the baseline's (same calls per run): base seconds / ours seconds."""
    return Ratio.of(p.base_wall / p.ours_wall for p in pairs)


def cpu_ratio(pairs: Sequence[Pair]) -> Ratio:
    """Ours' CPU seconds per call over the baseline's (lower is cheaper)."""
    return Ratio.of(p.ours_cpu / p.base_cpu for p in pairs if p.base_cpu > 0)
