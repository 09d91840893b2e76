"""The Store: the instance records in Redis, reached only through atomic scripts.

Each public method is one round trip (one script, or one pipeline of reads). The
store is also where the layer's Redis client is made (``Store.from_app``).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import redis
from celery import Celery

from ..errors import ServiceUnavailable
from ..settings import Settings
from ..status import RuntimeStatus
from .keys import Keys, KeySpace
from .scripts import Scripts
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

# How long a claim keeps the finished record it replaced, for undo_claim.
PREVIOUS_RECORD_TTL_MS = 300_000
TERMINATED_BY_START = '"Terminated by a new start of the same ID (terminate_existing)."'
_T = TypeVar("_T")


def _unavailable(fn: Callable[..., _T]) -> Callable[..., _T]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> _T:
        try:
            return fn(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise ServiceUnavailable(f"The record store is unreachable: {exc}") from exc

    return wrapper


def _text(value: bytes | str | None) -> str:
    if isinstance(value, bytes):
        return value.decode()
    return "" if value is None else value


def _us(seconds: float) -> int:
    return int(seconds * 1_000_000)


def _found(reply: list[Any]) -> Found:
    return Found(Verdict(_text(reply[0])), _text(reply[1]))


def _release(reply: list[Any]) -> Release:
    outcome, *rest = (_text(v) for v in reply)
    return Release(Verdict(outcome), *rest)


def _gate(reply: list[Any]) -> StepGate:
    outcome, detail = (_text(v) for v in reply)
    return StepGate(StepVerdict(outcome), detail)


class Store:
    """The instance records in Redis, reached only through atomic scripts."""

    def __init__(self, client: redis.Redis, *, prefix: str, retention_s: float) -> None:
        """Bind to a redis-py client (usually made by ``from_app``).

        Args:
            client: a redis-py client; responses may be bytes or str.
            prefix: the key prefix; must not contain '{' or '}'.
            retention_s: how long terminal records are kept, in seconds.
        """
        self._keyspace = KeySpace(prefix)
        self._redis = client
        self._retention_us = _us(retention_s)
        self._scripts = Scripts(client)

    @classmethod
    def from_app(cls, app: Celery, settings: Settings) -> Store:
        """Return the store of a Celery app, on its result backend's Redis server.

        Same server and options as the result backend, but a pool that makes a burst
        of threads wait for a connection instead of failing at redis-py's limit.
        """
        pool = app.backend.client.connection_pool
        blocking = redis.BlockingConnectionPool(
            connection_class=pool.connection_class,
            max_connections=int(settings.max_connections),
            timeout=settings.connection_wait,
            **pool.connection_kwargs,
        )
        return cls(redis.Redis(connection_pool=blocking), prefix=settings.key_prefix,
                   retention_s=settings.retention)

    def keys(self, instance_id: str) -> Keys:
        """Return the Redis keys of one instance."""
        return self._keyspace.instance(instance_id)

    def _run(self, script: str, instance_id: str, args: list[Any], client: Any = None) -> Any:
        return self._scripts.run(script, self.keys(instance_id), args, client=client)

    # -- claims -----------------------------------------------------------------
    @_unavailable
    def claim(
        self,
        instance_id: str,
        *,
        name: str,
        run_id: str,
        input_json: str,
        if_live: str = "fail",
        if_finished: str = "allow",
        request_id: str = "",
        lease_s: float = 300.0,
        timeout_s: float = 0.0,
    ) -> ClaimResult:
        """Claim the ID for a new Pending run as the policies allow (one round trip).

        `lease_s` is how long the run may stay silent before the reconciler fails it
        as lost; `timeout_s` (0: none) is the longest it may take in all.
        """
        args = [name, run_id, input_json, if_live, if_finished, request_id, self._retention_us,
                _us(lease_s), _us(timeout_s), PREVIOUS_RECORD_TTL_MS, TERMINATED_BY_START]
        reply = [_text(v) for v in self._run("claim", instance_id, args)]
        outcome = ClaimVerdict(reply[0])
        if outcome is ClaimVerdict.CLAIMED:
            return ClaimResult(outcome, RuntimeStatus.PENDING, run_id, int(reply[1]))
        return ClaimResult(outcome, RuntimeStatus(reply[1]), reply[2])

    @_unavailable
    def undo_claim(self, instance_id: str, *, run_id: str) -> bool:
        """Give the ID back after a failed publish, restoring the record it replaced."""
        return bool(self._run("undo_claim", instance_id, [run_id, self._retention_us]))

    # -- steps ------------------------------------------------------------------
    @_unavailable
    def begin_step(
        self, instance_id: str, *, run_id: str, task_id: str, token: str, lease_s: float, name: str = ""
    ) -> StepGate:
        """Decide whether this delivery of a step may run user code, and take its lease."""
        args = [run_id, task_id, token, _us(lease_s), self._retention_us, name]
        return _gate(self._run("begin_step", instance_id, args))

    @_unavailable
    def renew_step(self, instance_id: str, *, run_id: str, task_id: str, token: str, lease_s: float) -> bool:
        """Extend the step's lease to `lease_s` from now; False if the delivery lost it."""
        args = [run_id, task_id, token, "renew", _us(lease_s), ""]
        return bool(self._run("step_mark", instance_id, args))

    @_unavailable
    def complete_step(
        self, instance_id: str, *, run_id: str, task_id: str, token: str, result_json: str
    ) -> bool:
        """Record the step's result, ending its lease; False if the delivery lost it."""
        args = [run_id, task_id, token, "done", 0, result_json]
        return bool(self._run("step_mark", instance_id, args))

    @_unavailable
    def release_step(self, instance_id: str, *, run_id: str, task_id: str, token: str) -> bool:
        """Drop the step's lease so another delivery may run it at once."""
        args = [run_id, task_id, token, "release", 0, ""]
        return bool(self._run("step_mark", instance_id, args))

    @_unavailable
    def park(
        self,
        instance_id: str,
        *,
        run_id: str,
        task_id: str,
        park_json: str,
        event: str = "",
        default_json: str = "",
        final: bool = False,
    ) -> StepGate:
        """Park a delivery: for a suspended run (no event), or to wait for `event`.

        Each suspended delivery parks under its own `task_id`. Returns PARKED, STALE,
        RESUMED (ask the gate again: no longer suspended, or the step is done or held)
        or EVENT with a buffered event's JSON (the wait is over at once).
        """
        kind = "event" if event else "suspend"
        args = [run_id, task_id, kind, park_json, event, default_json, "1" if final else ""]
        return _gate(self._run("park", instance_id, args))

    # -- endings ----------------------------------------------------------------
    @_unavailable
    def end_run(
        self, instance_id: str, *, run_id: str, status: RuntimeStatus, output_json: str, task_id: str = ""
    ) -> bool:
        """Move the run to a terminal status if it is still the current, live run.

        `task_id` names the step that ended it, whose history entry is written with it.
        """
        args = [run_id, status.value, output_json, self._retention_us, task_id]
        return bool(self._run("end_run", instance_id, args))

    @_unavailable
    def terminate(self, instance_id: str, *, reason_json: str) -> Found:
        """Terminate whatever run is live; OK, MISSING or TERMINAL, and the status found."""
        return _found(self._run("terminate", instance_id, [reason_json, self._retention_us]))

    @_unavailable
    def purge(self, instance_id: str) -> Found:
        """Delete a terminal record; OK, MISSING or LIVE, and the status found."""
        return _found(self._run("purge", instance_id, []))

    @_unavailable
    def purge_many(self, instance_ids: Iterable[str]) -> int:
        """Delete several terminal records in one round trip; return how many went."""
        pipe = self._redis.pipeline(transaction=False)
        for instance_id in instance_ids:
            self._run("purge", instance_id, [], client=pipe)
        return sum(_found(reply).outcome is Verdict.OK for reply in pipe.execute())

    # -- suspend, resume, events --------------------------------------------------
    @_unavailable
    def suspend(self, instance_id: str) -> Found:
        """Suspend the live run; OK, MISSING, TERMINAL or CONFLICT, and the status found."""
        return _found(self._run("suspend", instance_id, []))

    @_unavailable
    def resume(self, instance_id: str) -> Release:
        """Resume a suspended run; every parked delivery comes back to be published."""
        outcome, status, *rest = (_text(v) for v in self._run("resume", instance_id, []))
        park, value, *steps = rest or ("", "")
        return Release(Verdict(outcome), status, park, value, tuple(steps))

    @_unavailable
    def raise_event(self, instance_id: str, *, name: str, data_json: str) -> Release:
        """Hand an event to the run waiting for it, or buffer it in order."""
        return _release(self._run("raise_event", instance_id, [name, data_json, self._retention_us]))

    @_unavailable
    def event_timeout(self, instance_id: str, *, run_id: str, task_id: str, failure_json: str) -> Release:
        """End a wait that is still waiting: fail the run, or hand it its default."""
        args = [run_id, task_id, self._retention_us, failure_json]
        return _release(self._run("event_timeout", instance_id, args))

    @_unavailable
    def repark(
        self, instance_id: str, *, run_id: str, park_json: str, value_json: str, task_id: str = ""
    ) -> bool:
        """Keep a release whose publish failed: the run waits, Suspended, for resume.

        `task_id` names a delivery a suspend had parked; without it, `park_json` is the
        rest of a chain, kept with `value_json`.
        """
        return bool(self._run("repark", instance_id, [run_id, park_json, value_json, task_id]))

    # -- inside a run -----------------------------------------------------------
    @_unavailable
    def set_custom_status(self, instance_id: str, *, run_id: str, value_json: str) -> bool:
        """Set the run's custom status if it is still the current, live run."""
        return bool(self._run("set_custom", instance_id, [run_id, value_json]))

    @_unavailable
    def continue_as_new(
        self,
        instance_id: str,
        *,
        run_id: str,
        new_run_id: str,
        input_json: str,
        task_id: str,
        delay_s: float = 0.0,
    ) -> bool:
        """Move the ID from the current run to a new one (ContinuedAsNew), never freeing it."""
        args = [run_id, new_run_id, input_json, task_id, _us(delay_s)]
        return bool(self._run("continue", instance_id, args))

    @_unavailable
    def continued(self, instance_id: str, *, run_id: str) -> bool:
        """Mark the continued run `run_id` as published: ContinuedAsNew becomes Running."""
        return bool(self._run("continued", instance_id, [run_id]))

    # -- recovery ---------------------------------------------------------------
    @_unavailable
    def due(self, limit: int) -> list[str]:
        """Return up to `limit` live instances per shard whose sign of life is overdue."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.time()  # Redis' clock, the one every score was written with
        for key in self._keyspace.per_shard("alive"):
            pipe.zrange(key, 0, limit - 1, withscores=True)
        (seconds, micros), *shards = pipe.execute()
        now_us = seconds * 1_000_000 + micros
        return [_text(m) for rows in shards for m, score in rows if score <= now_us]

    @_unavailable
    def reap(self, instance_ids: Iterable[str], *, lost_json: str, timed_out_json: str) -> list[ReapVerdict]:
        """Fail each overdue run (lost or timed out), one script each, in one round trip."""
        pipe = self._redis.pipeline(transaction=False)
        for instance_id in instance_ids:
            self._run("reap", instance_id, [self._retention_us, lost_json, timed_out_json], client=pipe)
        return [ReapVerdict(_text(outcome)) for outcome in pipe.execute()]

    # -- the dashboard's summary: bounded reads of every shard's two indexes ------
    @_unavailable
    def summary(self, since_us: int, sample: int) -> dict[str, Any]:
        """Count live runs, indexed records and records created since `since_us`.

        Also reads the status of up to `sample` live runs per shard, so live runs can
        be told apart by status; ``sampled`` says whether that covered every live run.
        Two round trips of at most ``SHARDS * (3 + sample)`` commands, whatever the
        number of records.
        """
        pipe = self._redis.pipeline(transaction=False)
        shards = zip(self._keyspace.per_shard("alive"), self._keyspace.per_shard("created"), strict=True)
        for alive, created in shards:
            pipe.zcard(alive)
            pipe.zcard(created)
            pipe.zcount(created, since_us, "+inf")
            pipe.zrange(alive, 0, sample - 1)
        replies = pipe.execute()
        live, records, recent = (sum(replies[n::4]) for n in range(3))
        ids = [_text(m) for rows in replies[3::4] for m in rows]
        pipe = self._redis.pipeline(transaction=False)
        for instance_id in ids:
            pipe.hget(self.keys(instance_id).record, "status")
        by_status: dict[str, int] = {}
        for status in pipe.execute() if ids else []:
            if status is not None:
                by_status[_text(status)] = by_status.get(_text(status), 0) + 1
        return {"live": live, "records": records, "created_since": recent,
                "live_by_status": by_status, "sampled": len(ids) < live}

    # -- reads ------------------------------------------------------------------
    def read(self, instance_id: str) -> dict[str, str] | None:
        """Return the record's fields, or None when there is no record."""
        return self.read_many([instance_id])[0]

    @_unavailable
    def read_many(self, instance_ids: Iterable[str]) -> list[dict[str, str] | None]:
        """Return the records of several instances in one round trip."""
        pipe = self._redis.pipeline(transaction=False)
        for instance_id in instance_ids:
            pipe.hgetall(self.keys(instance_id).record)
        rows = pipe.execute()
        return [{_text(k): _text(v) for k, v in row.items()} or None for row in rows]

    @_unavailable
    def read_with_history(self, instance_id: str) -> tuple[dict[str, str] | None, list[dict[str, str]]]:
        """Return the record and its run's step history (oldest first), in one round trip."""
        keys = self.keys(instance_id)
        pipe = self._redis.pipeline(transaction=False)
        pipe.hgetall(keys.record)
        pipe.lrange(keys.history, 0, -1)
        row, history = pipe.execute()
        record = {_text(k): _text(v) for k, v in row.items()} or None
        return record, [json.loads(_text(entry)) for entry in history]

    @_unavailable
    def index_page(self, newest_us: float, *, oldest_us: float, count: int) -> list[list[tuple[str, int]]]:
        """Return, per shard, up to `count` (id, created µs) entries, newest first."""
        pipe = self._redis.pipeline(transaction=False)
        for key in self._keyspace.per_shard("created"):
            pipe.zrevrangebyscore(key, newest_us, oldest_us, start=0, num=count, withscores=True)
        return [[(_text(m), int(s)) for m, s in rows] for rows in pipe.execute()]

    # -- schedules: beat tick outcomes and the one buffered tick --------------------
    @_unavailable
    def count_tick(self, instance_id: str, *, outcome: str) -> int:
        """Count one beat tick of the instance that ended as `outcome`; return the new count."""
        key = self.keys(instance_id).ticks
        pipe = self._redis.pipeline(transaction=False)
        pipe.hincrby(key, outcome, 1)
        pipe.pexpire(key, self._retention_us // 1000)
        return int(pipe.execute()[0])

    @_unavailable
    def tick_counts(self, instance_id: str) -> dict[str, int]:
        """Return the instance's beat tick counts by outcome (empty when none)."""
        row = self._redis.hgetall(self.keys(instance_id).ticks)
        return {_text(k): int(v) for k, v in row.items()}

    @_unavailable
    def hold_buffer(self, instance_id: str, *, token: str, ttl_s: float) -> bool:
        """Take the instance's one buffer slot for `token`, or renew it if `token` holds it.

        Returns False when another token holds the slot.
        """
        return bool(self._run("hold_buffer", instance_id, [token, max(1, int(ttl_s * 1000))]))

    @_unavailable
    def release_buffer(self, instance_id: str, *, token: str) -> bool:
        """Free the buffer slot if `token` still holds it."""
        return bool(self._run("release_buffer", instance_id, [token]))
