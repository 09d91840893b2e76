"""What the store's scripts answer: verdict enums and the results that carry them.

Each verdict's value is the string its script returns (lua/*.lua); the store turns
replies into these types, and callers compare against the enums only.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import NamedTuple

from ..status import RuntimeStatus


class ClaimVerdict(enum.StrEnum):
    """What a claim did (claim.lua)."""

    CLAIMED = "claimed"  # a new Pending run holds the ID
    REFUSED = "refused"  # a live run holds the ID
    EXISTING = "existing"  # the run on record answers (same request ID, or use_existing)
    REJECTED = "rejected"  # a finished run is on record and the policy forbids a new one
    RETRY = "retry"  # (a probe) the policies would let this start claim: start for real


class StepVerdict(enum.StrEnum):
    """The step gate's answer for one delivery (begin_step.lua, park.lua)."""

    RUN = "run"  # run user code: this delivery holds the step's lease
    STALE = "stale"  # the run is not the instance's current, live run
    DONE = "done"  # the step already succeeded; detail is its JSON result
    BUSY = "busy"  # another delivery holds the lease; detail is µs until it ends
    PARKED = "parked"  # the step is parked (a wait, or a suspended run's delivery)
    SUSPENDED = "suspended"  # the run is suspended: park this delivery
    CONTINUED = "continued"  # this step continued the run as new; detail is the new run
    RESUMED = "resumed"  # (park) not parked: no longer suspended, or the step is done or held
    EVENT = "event"  # (park) a buffered event ends the wait at once; detail is its JSON


class Verdict(enum.StrEnum):
    """What a management operation found or did (terminate, purge, suspend, resume, events)."""

    OK = "ok"
    MISSING = "missing"  # no record
    TERMINAL = "terminal"  # the instance has finished
    CONFLICT = "conflict"  # the transition does not apply (suspend twice, resume a running run)
    LIVE = "live"  # (purge) a live run keeps the record
    RELEASE = "release"  # a parked delivery is handed back: publish it
    BUFFERED = "buffered"  # (raise_event) no run waits for it: the event is kept in order
    FULL = "full"  # (raise_event) no run waits for it and the instance's buffer is full
    HELD = "held"  # the wait is over but the run is suspended: resume publishes the rest
    COMPLETED = "completed"  # the wait was the last step: the run completed
    FAILED = "failed"  # (event_timeout) the wait had no default: the run failed
    STALE = "stale"  # (event_timeout) the wait is over already
    NOTED = "noted"  # (event_timeout) the wait has not parked yet: it ends as it parks


class ReapVerdict(enum.StrEnum):
    """What the reconciler's script did with one overdue run (reap.lua)."""

    RESENT = "resent"  # steps whose lease ran out were handed back to be sent again
    LOST = "lost"  # failed: no sign of life within its lease
    TIMED_OUT = "timed_out"  # failed: past its deadline
    PARKED = "parked"  # suspended or waiting: silent by design, left alone
    ALIVE = "alive"  # it showed a sign of life since it was read as overdue
    GONE = "gone"  # no longer live


class TickVerdict(enum.StrEnum):
    """What a beat tick's delivery is, against its slot and its own past (tick.lua)."""

    NEW = "new"  # the tick's first delivery, and its slot is its own: decide it
    SEEN = "seen"  # a redelivery or a retry; detail is the outcomes counted so far
    DUPLICATE = "duplicate"  # its schedule slot was decided already; detail is its due µs


class TickBegin(NamedTuple):
    """A tick's verdict and its detail ('' when none)."""

    outcome: TickVerdict
    detail: str


@dataclass(frozen=True)
class ClaimResult:
    """What a claim found: our new run, or the run that kept the ID (and why)."""

    outcome: ClaimVerdict
    status: RuntimeStatus
    run_id: str
    fence: int = 0
    message: str = ""  # (existing) the run's first message, still unpublished
    ended: str = ""  # (claimed) the orchestrator of the live run terminate_existing ended

    @property
    def claimed(self) -> bool:
        """Return True if this start made a new run."""
        return self.outcome == ClaimVerdict.CLAIMED


@dataclass(frozen=True)
class StepGate:
    """The gate's verdict for one delivery of one step, with its detail.

    ``fence`` is the run's fencing number when the verdict is RUN (else 0).
    """

    outcome: StepVerdict
    detail: str
    fence: int = 0


@dataclass(frozen=True)
class Reaped:
    """What the reconciler's script did with one overdue run, and what to send again."""

    outcome: ReapVerdict
    messages: tuple[str, ...] = ()


class Found(NamedTuple):
    """A management operation's verdict and the status it found ('' when none)."""

    outcome: Verdict
    status: str


@dataclass(frozen=True)
class Release:
    """What an event, timeout or resume did: ``outcome`` and, to publish, park and value.

    ``entry`` names the outbox entry that holds the release until its publish is confirmed.
    ``steps`` are the deliveries a suspend parked (one JSON each), which resume hands
    back with the rest of a chain whose wait ended meanwhile (``park``, if any).
    """

    outcome: Verdict
    status: str
    park: str = ""
    value: str = ""
    entry: str = ""
    steps: tuple[str, ...] = ()
