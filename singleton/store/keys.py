"""Key names: every Redis key of the singleton layer is built here.

``<p>`` is the configured prefix (default ``singleton``); ``<s>`` is the instance's
shard, one hex digit of crc32(instance_id). The shard is the Redis Cluster hash tag,
so an instance's keys and the index entries a claim touches share a slot:

    <p>:{<s>}:i:<instance_id>      hash  the record: name, run, fence, status, input,
                                         output, custom, created, updated (times in µs),
                                         request (idempotency key), continuedby, lease,
                                         timeout and deadline (µs), and
                                         while parked: park, parkvalue, waiting,
                                         waittask, waitfinal, waitdefault, and
                                         suspendnext ('1': a suspend accepted while
                                         continuing as new, for the new run)
    <p>:{<s>}:steps:<instance_id>  hash  step markers of the live run, by task id:
                                         "run:<token>:<lease-until-µs>" while a delivery
                                         runs the step, "done:<json result>" after it,
                                         "parked" for a wait, "run:resent:<until-µs>"
                                         once the reconciler sent it again;
                                         "t:<task id>" holds "<start µs>|<task name>"
                                         for the history, "m:<task id>" the step's
                                         message (JSON) from its gate until the next
                                         step starts, for the reconciler to re-send
    <p>:{<s>}:h:<instance_id>      list  the run's history: one JSON entry per step
    <p>:{<s>}:drain:<instance_id>  hash  steps of ended runs still executing, by task id
                                         ("run:<token>:<lease-until-µs>"): no step of a
                                         later run starts until they are gone
    <p>:{<s>}:ev:<instance_id>     hash  buffered events: name -> JSON array of payloads
    <p>:{<s>}:created              zset  listing index: instance_id -> created time (µs)
    <p>:{<s>}:expiring             zset  terminal records: instance_id -> expiry (µs)
    <p>:{<s>}:alive                zset  live runs: instance_id -> when the run is overdue
                                         (last sign of life + lease, capped by its
                                         deadline); the reconciler reads it
    <p>:{<s>}:prev:<instance_id>   hash  the finished record a claim replaced, kept
                                         5 minutes so a failed publish can restore it
    <p>:{<s>}:ticks:<instance_id>  hash  beat ticks of the ID by outcome (started,
                                         skipped, buffered, failed); "slot:<schedule>"
                                         the latest due time (µs) a tick took;
                                         "t:<task id>" the outcomes a recent tick
                                         counted, ":recent" those ids (JSON); kept
                                         for the retention
    <p>:{<s>}:buffer:<instance_id> str   the token of the one buffered beat tick (PX)
    <p>:{<s>}:out:<instance_id>    hash  the outbox: messages a script decided must be
                                         published, until their publish is confirmed:
                                         "start" (the run's first message, JSON),
                                         "rel:<run>:<µs>" (a released parked delivery)
                                         and "cont:<run>" (a continued run's canvas)
    <p>:{<s>}:outbox               zset  instances with outbox entries -> when the
                                         reconciler may re-send them (µs)
    <p>:{<s>}:prevh:<instance_id>  list  the history of the record kept in ``prev``
    <p>:{<s>}:parked:<instance_id> hash  deliveries parked by a suspend, by task id: the
                                         JSON of what resume publishes again (each
                                         group member in flight parks its own)
    <p>:{<s>}:refused              hash  starts refused in the shard, per minute (minute
                                         number -> count), kept two hours; claim.lua
                                         derives it from the record's key (same slot)

Every script receives all of its instance's keys, in the order of ``Keys``, so each
script touches one slot in a cluster (``refused`` is the one shard-wide key a script
builds itself: it shares the record's hash tag). Event names are hash fields, never part of a key.
"""

from __future__ import annotations

import zlib
from typing import NamedTuple

SHARDS = 16


class Keys(NamedTuple):
    """The keys of one instance, in the order every script receives them (prelude.lua)."""

    record: str
    steps: str
    created: str
    expiring: str
    prev: str
    history: str
    events: str
    alive: str
    drain: str
    ticks: str
    buffer: str
    out: str
    outbox: str
    prevh: str
    parked: str


class KeySpace:
    """Builds the keys under one prefix."""

    def __init__(self, prefix: str) -> None:
        """Use `prefix` for every key; it must not contain '{' or '}' (the hash tag)."""
        if "{" in prefix or "}" in prefix:
            raise ValueError("the key prefix must not contain '{' or '}'")
        self.prefix = prefix

    def shard(self, instance_id: str) -> int:
        """Return the instance's shard number."""
        return zlib.crc32(instance_id.encode()) % SHARDS

    def instance(self, instance_id: str) -> Keys:
        """Return the keys of one instance."""
        tag = self._tag(self.shard(instance_id))
        return Keys(
            record=f"{tag}:i:{instance_id}",
            steps=f"{tag}:steps:{instance_id}",
            created=f"{tag}:created",
            expiring=f"{tag}:expiring",
            prev=f"{tag}:prev:{instance_id}",
            history=f"{tag}:h:{instance_id}",
            events=f"{tag}:ev:{instance_id}",
            alive=f"{tag}:alive",
            drain=f"{tag}:drain:{instance_id}",
            ticks=f"{tag}:ticks:{instance_id}",
            buffer=f"{tag}:buffer:{instance_id}",
            out=f"{tag}:out:{instance_id}",
            outbox=f"{tag}:outbox",
            prevh=f"{tag}:prevh:{instance_id}",
            parked=f"{tag}:parked:{instance_id}",
        )

    def per_shard(self, name: str) -> list[str]:
        """Return one shard-wide key (``created``, ``alive``...) for every shard."""
        return [f"{self._tag(n)}:{name}" for n in range(SHARDS)]

    def _tag(self, shard: int) -> str:
        return f"{self.prefix}:{{{shard:x}}}"
