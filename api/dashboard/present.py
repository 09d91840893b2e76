"""What the pages show, computed from statuses: times, durations, JSON, the timeline and
which actions a status allows (and why not)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from singleton import OrchestrationStatus, RuntimeStatus

TRUNCATE_AT = 60
# JSON longer than this many characters (or lines) starts collapsed.
COLLAPSE_CHARS = 1500
COLLAPSE_LINES = 25
TIMELINE_WIDTH = 760
TIMELINE_ROW = 24
TIMELINE_LABEL = 190
AXIS_HEIGHT = 22


def when(moment: datetime) -> str:
    """Return a time as UTC, to the second: 2026-11-26 05:18:49."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def duration(seconds: float) -> str:
    """Return a duration the way people read it: 850 ms, 12.3 s, 4 min 05 s, 2 h 03 min."""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def run_seconds(status: OrchestrationStatus, now: datetime) -> float:
    """Return how long the run has taken: until its last update, or until now while live."""
    end = now if status.runtime_status.is_live else status.last_updated_time
    return max(0.0, (end - status.created_time).total_seconds())


def compact(value: Any) -> str:
    """Return a value as one line of JSON (empty for None)."""
    return "" if value is None else json.dumps(value, ensure_ascii=False)


def truncated(value: Any, limit: int = TRUNCATE_AT) -> str:
    """Return one line of JSON, cut to `limit` characters with an ellipsis."""
    text = compact(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def pretty(value: Any) -> str:
    """Return a value as indented JSON."""
    return json.dumps(value, indent=2, ensure_ascii=False)


def is_large(text: str) -> bool:
    """Return True when a JSON text is long enough to start collapsed."""
    return len(text) > COLLAPSE_CHARS or text.count("\n") > COLLAPSE_LINES


# -- what a status allows -----------------------------------------------------------
ACTIONS = ("terminate", "suspend", "resume", "raise-event", "restart", "restart-same", "purge")


def refusals(status: RuntimeStatus) -> dict[str, str | None]:
    """Return each action's reason for being unavailable at `status` (None: available).

    The same rules as the client's: a live run can be terminated, suspended (unless
    it is), resumed (only when suspended) and sent events; a finished one purged or
    restarted under its own ID. Restarting under a new ID is always possible.
    """
    live = status.is_live
    finished = f"The instance is {status.value}: it has finished."
    still = f"The instance is still {status.value}."
    return {
        "terminate": None if live else finished,
        "suspend": finished if not live else ("Already suspended." if status is RuntimeStatus.SUSPENDED
                                               else None),
        "resume": None if status is RuntimeStatus.SUSPENDED else f"Only a suspended instance resumes "
                                                                  f"(it is {status.value}).",
        "raise-event": None if live else finished,
        "restart": None,
        "restart-same": None if not live else still + " Terminate it first, or restart under a new ID.",
        "purge": None if not live else still + " Only finished instances are purged.",
    }


# -- the timeline -------------------------------------------------------------------
@dataclass(frozen=True)
class Bar:
    """One row of the timeline: a step (or the step in progress) as an SVG rectangle."""

    label: str
    outcome: str
    x: float
    width: float
    y: float
    title: str
    took: str


@dataclass(frozen=True)
class Timeline:
    """The Gantt chart of a run: its bars and the drawing's size."""

    bars: list[Bar]
    width: int
    height: int
    label_width: int
    total: str

    @property
    def axis_y(self) -> int:
        """Return where the time axis runs, below the last bar."""
        return self.height - AXIS_HEIGHT + 4


def timeline(status: OrchestrationStatus, now: datetime) -> Timeline:
    """Lay out the run's steps on a time axis from its creation to its end (or now).

    The store records a step when it ends, so while the run is live one more bar, from
    the last step's end to now, stands for the step in progress and grows on refresh.
    """
    start = status.created_time
    end = now if status.runtime_status.is_live else status.last_updated_time
    steps = list(status.history or [])
    span = max((end - start).total_seconds(), 1e-3)
    for step in steps:
        span = max(span, (step.ended - start).total_seconds())
    scale = (TIMELINE_WIDTH - TIMELINE_LABEL) / span
    bars = []
    for n, step in enumerate(steps):
        offset = max(0.0, (step.started - start).total_seconds())
        seconds = max(0.0, (step.ended - step.started).total_seconds())
        bars.append(Bar(step.name.rsplit(".", 1)[-1], step.outcome, TIMELINE_LABEL + offset * scale,
                        max(2.0, seconds * scale), n * TIMELINE_ROW,
                        f"{step.name}: {step.outcome} in {duration(seconds)} (from {when(step.started)})",
                        duration(seconds)))
    if status.runtime_status.is_live:
        since = steps[-1].ended if steps else start
        offset = max(0.0, (since - start).total_seconds())
        seconds = max(0.0, (end - since).total_seconds())
        label = "waiting" if status.runtime_status is RuntimeStatus.SUSPENDED else "in progress"
        bars.append(Bar(label, "Live", TIMELINE_LABEL + offset * scale, max(2.0, seconds * scale),
                        len(steps) * TIMELINE_ROW, f"{label} for {duration(seconds)} so far",
                        duration(seconds)))
    height = max(1, len(bars)) * TIMELINE_ROW + AXIS_HEIGHT
    return Timeline(bars, TIMELINE_WIDTH, height, TIMELINE_LABEL, duration(span))
