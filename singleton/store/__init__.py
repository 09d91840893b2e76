"""The record store: every Redis key, script and connection of the singleton layer.

Nothing outside this package builds a key or talks to Redis. ``keys`` names the keys
(and documents their layout), ``lua/`` holds the scripts and ``scripts`` loads them,
``verdicts`` says what they answer, and ``records.Store`` is the one class the rest
of the layer calls.

Protocol. A claim refuses when the record's status is live (unless a start policy
says otherwise, decided inside the same script); otherwise it replaces the record
with a Pending run (new run id, fence = max(old + 1, now in µs), so the fence only
grows, purges included). Every later write first compares the caller's run id with
the record's and checks the status is live: that comparison is the fence. A run
waiting for an event keeps the rest of its chain in ``park``; a suspended run keeps
each delivery it stopped in ``parked``, by task id. The script that unparks them hands
them to exactly one caller. Terminal records get a
TTL (the retention) and an entry in ``expiring``; each claim sweeps a few due
entries out of the listing index.

Outbox. A script that decides something must be published (a claim: the run's first
message; an event, timeout or resume: a released delivery; a continue-as-new: the new
run's canvas, confirmed by ``continued``) writes it into the
instance's ``out`` hash in the same step. The publisher publishes it and clears it
(``sent``; a run's first message is cleared by its first step's gate instead, which
saves the start a round trip, and is why it waits 60 s, not 5 s, before a re-send);
the reconciler re-sends what stays longer than its grace period (``outbox_due``),
under the same task ids, so the gates dedupe. Where the broker is the store's own
database, the claim also pushes the first message onto its queue (``queue``): the
outbox entry then only covers a message that a worker took and lost.
"""

from .keys import SHARDS, Keys
from .queue import Recorded, Recorders, Unrecordable
from .records import START_ENTRY, Store
from .verdicts import (
    ClaimResult,
    ClaimVerdict,
    Found,
    Reaped,
    ReapVerdict,
    Release,
    StepGate,
    StepVerdict,
    TickBegin,
    TickVerdict,
    Verdict,
)

__all__ = [
    "Store",
    "SHARDS",
    "START_ENTRY",
    "Keys",
    # a start's first message, pushed by its claim where the broker is the store
    "Recorded",
    "Recorders",
    "Unrecordable",
    # what the scripts answer
    "ClaimVerdict",
    "StepVerdict",
    "Verdict",
    "Reaped",
    "ReapVerdict",
    "TickVerdict",
    "ClaimResult",
    "StepGate",
    "Found",
    "Release",
    "TickBegin",
]
