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
"""

from .keys import SHARDS, Keys
from .records import Store
from .verdicts import (
    ClaimResult,
    ClaimVerdict,
    Found,
    ReapVerdict,
    Release,
    StepGate,
    StepVerdict,
    Verdict,
)

__all__ = [
    "Store",
    "SHARDS",
    "Keys",
    # what the scripts answer
    "ClaimVerdict",
    "StepVerdict",
    "Verdict",
    "ReapVerdict",
    "ClaimResult",
    "StepGate",
    "Found",
    "Release",
]
