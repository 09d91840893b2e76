"""Section 2, contention: many threads start the same key at the same moment.

Per tool and repetition, `threads` threads wait at a barrier, then all call the
tool's start with one fresh key. The figure that matters is how many runs reached
the broker (messages added to the tool's queue; no worker consumes them), next to
how many callers were told "already running" and how long those refusals took.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .measure import Spread, percentile, rotated
from .tools import Tool

JOIN_TIMEOUT_S = 120.0


@dataclass
class Round:
    """What one burst of simultaneous starts did."""

    enqueued: int = 0
    accepted: int = 0
    refused: int = 0
    errors: list[str] = field(default_factory=list)
    refused_latency: list[float] = field(default_factory=list)
    accepted_latency: list[float] = field(default_factory=list)


def burst(tool: Tool, threads: int) -> Round:
    """Start one fresh key from `threads` threads at once; return what happened."""
    key = f"contended-{uuid.uuid4().hex}"
    barrier = threading.Barrier(threads)
    result = Round()
    lock = threading.Lock()

    def contender() -> None:
        barrier.wait()
        began = time.perf_counter()
        outcome, error = "accepted", ""
        try:
            tool.start(key)
        except tool.refused:
            outcome = "refused"
        except Exception as exc:  # reported, never hidden
            outcome, error = "error", f"{type(exc).__name__}: {exc}"
        spent = time.perf_counter() - began
        with lock:
            if outcome == "accepted":
                result.accepted += 1
                result.accepted_latency.append(spent)
            elif outcome == "refused":
                result.refused += 1
                result.refused_latency.append(spent)
            else:
                result.errors.append(error)

    tool.purge()
    before = tool.queued()
    pool = [threading.Thread(target=contender, daemon=True) for _ in range(threads)]
    for t in pool:
        t.start()
    deadline = time.monotonic() + JOIN_TIMEOUT_S
    for t in pool:
        t.join(max(0.0, deadline - time.monotonic()))
    if any(t.is_alive() for t in pool):
        result.errors.append(f"some callers were still blocked after {JOIN_TIMEOUT_S:.0f} s")
    result.enqueued = tool.queued() - before
    tool.purge()
    return result


def run(
    tools: Sequence[Tool], *, threads: int, repetitions: int, log: Callable[[str], None]
) -> dict[str, dict]:
    """Run interleaved bursts; return per tool the rounds and their summary."""
    rounds: dict[str, list[Round]] = {tool.name: [] for tool in tools}
    by_name = {tool.name: tool for tool in tools}
    for rep in range(repetitions):
        for name in rotated(list(by_name), rep):
            r = burst(by_name[name], threads)
            rounds[name].append(r)
            log(f"contention rep {rep + 1} {name:22s} enqueued {r.enqueued:3d}  accepted {r.accepted:3d}  "
                f"refused {r.refused:3d}  errors {len(r.errors)}")
    return {name: summarise(rs) for name, rs in rounds.items()}


def summarise(rounds: list[Round]) -> dict:
    """Return per-round counts and the medians of per-round refusal percentiles (ms)."""

    def per_round(values: Callable[[Round], list[float]], q: float) -> Spread | None:
        figures = [1000 * percentile(values(r), q) for r in rounds if values(r)]
        return Spread.of(figures) if figures else None

    return {
        "enqueued": [r.enqueued for r in rounds],
        "accepted": [r.accepted for r in rounds],
        "refused": [r.refused for r in rounds],
        "errors": [e for r in rounds for e in r.errors],
        "refused_p50": per_round(lambda r: r.refused_latency, 0.50),
        "refused_p99": per_round(lambda r: r.refused_latency, 0.99),
        "accepted_ms": per_round(lambda r: r.accepted_latency, 0.50),
    }
