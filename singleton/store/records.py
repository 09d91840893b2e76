"""The Store: the instance records in Redis, reached only through atomic scripts.

Each public method is one round trip (one script, or one pipeline of reads). The
store is also where the layer's Redis client is made (``Store.from_app``).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import redis
from celery import Celery
from redis.cluster import ClusterNode, RedisCluster

from ..errors import ServiceUnavailable
from ..settings import Settings
from ..status import RuntimeStatus
from .keys import SHARDS, Keys, KeySpace
from .queue import Recorded
from .scripts import Scripts
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

# How long a claim keeps the finished record it replaced, for undo_claim.
PREVIOUS_RECORD_TTL_MS = 300_000
# How many recent ticks of an instance keep their outcomes, against redeliveries.
TICK_MEMORY = 64
# Minutes of refusal counts the summary reads (claim.lua keeps two hours of them).
REFUSAL_MINUTES = 60
# The outbox entry that holds a run's first message (claim.lua).
START_ENTRY = "start"
CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
TERMINATED_BY_START = '"Terminated by a new start of the same ID (terminate_existing)."'
_T = TypeVar("_T")


def _unavailable(fn: Callable[..., _T]) -> Callable[..., _T]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> _T:
        try:
            return fn(*args, **kwargs)
        # A cluster that is re-sharding or lost a node answers with a ClusterError.
        except (redis.ConnectionError, redis.TimeoutError, redis.exceptions.ClusterError) as exc:
            raise ServiceUnavailable(f"The record store is unreachable: {exc}") from exc

    return wrapper


def _text(value: bytes | str | None) -> str:
    if isinstance(value, bytes):
        return value.decode()
    return "" if value is None else value


def _us(seconds: float) -> int:
    return int(seconds * 1_000_000)


def _bound(us: float | None, rounding: Callable[[float], int]) -> str:
    # Created times are whole µs: a bound rounded inwards matches the same records.
    # An open end of the window ('' in the script) is None or infinite.
    return "" if us is None or math.isinf(us) else str(rounding(us))


def _found(reply: list[Any]) -> Found:
    return Found(Verdict(_text(reply[0])), _text(reply[1]))


def _release(reply: list[Any]) -> Release:
    outcome, *rest = (_text(v) for v in reply)
    status, park, value, entry, *steps = rest + [""] * (4 - len(rest))
    return Release(Verdict(outcome), status, park, value, entry, tuple(steps))


def _gate(reply: list[Any]) -> StepGate:
    outcome, detail, *fence = (_text(v) for v in reply)
    return StepGate(StepVerdict(outcome), detail, int(fence[0]) if fence else 0)


def _reaped(reply: list[Any]) -> Reaped:
    outcome, *messages = (_text(v) for v in reply)
    return Reaped(ReapVerdict(outcome), tuple(messages))


class Store:
    """The instance records in Redis, reached only through atomic scripts."""

    def __init__(self, client: redis.Redis | RedisCluster, *, prefix: str, retention_s: float,
                 min_replicas: int = 0, replica_timeout_s: float = 1.0) -> None:
        """Bind to a redis-py client (usually made by ``from_app``).

        Args:
            client: a redis-py client (or a RedisCluster); responses may be bytes or str.
            prefix: the key prefix; must not contain '{' or '}'.
            retention_s: how long terminal records are kept, in seconds.
            min_replicas: replicas that must confirm each claim (WAIT); 0: none.
            replica_timeout_s: how long a claim waits for them.

        Raises:
            ValueError: `min_replicas` with a cluster client (a cluster pipeline cannot
                carry the claim's script and its WAIT on one connection).
        """
        self._keyspace = KeySpace(prefix)
        self._redis = client
        self._retention_us = _us(retention_s)
        self._scripts = Scripts(client)
        self._cluster = isinstance(client, RedisCluster)
        if min_replicas and self._cluster:
            raise ValueError("singleton_min_replicas cannot be used with a Redis Cluster store")
        self._min_replicas = int(min_replicas)
        self._replica_timeout_ms = max(1, int(replica_timeout_s * 1000))

    @classmethod
    def from_app(cls, app: Celery, settings: Settings) -> Store:
        """Return the store of a Celery app: ``singleton_store_url``, or its result backend.

        On the result backend's server it keeps the backend's options (a Sentinel
        backend's connections keep asking the sentinels for the master), but in a
        pool that makes a burst of threads wait for a connection instead of failing
        at redis-py's limit. A ``redis+cluster://`` URL gives a Redis Cluster client.
        """
        pool_options = {"max_connections": int(settings.max_connections), "timeout": settings.connection_wait}
        if settings.store_url:
            client = _client_from_url(settings.store_url, **pool_options)
        else:
            pool = app.backend.client.connection_pool
            client = redis.Redis(connection_pool=redis.BlockingConnectionPool(
                connection_class=pool.connection_class, **pool_options, **pool.connection_kwargs))
        return cls(client, prefix=settings.key_prefix, retention_s=settings.retention,
                   min_replicas=settings.min_replicas, replica_timeout_s=settings.replica_timeout)

    def connection_kwargs(self) -> dict[str, Any] | None:
        """Return the settings of the store's connections; None where a claim cannot push.

        A cluster spreads keys over nodes, and a claim that waits for replicas may be
        given back after its script ran: neither may push a message inside the claim.
        """
        if self._cluster or self._min_replicas:
            return None
        return dict(self._redis.connection_pool.connection_kwargs)

    def keys(self, instance_id: str) -> Keys:
        """Return the Redis keys of one instance."""
        return self._keyspace.instance(instance_id)

    def _run(self, script: str, instance_id: str, args: list[Any], client: Any = None,
             extra_keys: tuple[str, ...] = ()) -> Any:
        return self._scripts.run(script, self.keys(instance_id), args, client=client, extra_keys=extra_keys)

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
        message_json: str = "",
        recorded: Recorded | None = None,
        probe: int = 0,
    ) -> ClaimResult:
        """Claim the ID for a new Pending run as the policies allow (one round trip).

        `lease_s` is how long the run may stay silent before the reconciler fails it
        as lost; `timeout_s` (0: none) is the longest it may take in all.
        `message_json` is the run's first message: it stays in the instance's outbox
        until the run's first step arrives (or ``sent`` clears it), so a repeated start
        (an ``existing`` answer carries it) or the reconciler can publish it again.
        `recorded` is that message as the broker takes it (``queue.Recorder``; only where
        ``connection_kwargs`` is not None and the broker is this database): a successful
        claim pushes it onto its queue and publishes its events in the same script.
        With `probe` (the number of starts the answer is for), nothing is claimed: starts
        the policies refuse are answered (and counted, `probe` of them) as usual, starts
        they let through answer ``retry``; a caller that expects a refusal asks so before
        it builds its message.
        """
        args = [name, run_id, input_json, if_live, if_finished, request_id, self._retention_us,
                _us(lease_s), _us(timeout_s), PREVIOUS_RECORD_TTL_MS, TERMINATED_BY_START,
                message_json]
        lists: tuple[str, ...] = ()
        args.append(str(probe) if probe else "")
        if recorded is not None:
            lists = tuple(key for key, _ in recorded.pushes)
            args += [len(lists), *(payload for _, payload in recorded.pushes),
                     *(part for event in recorded.events for part in event)]
        if self._min_replicas:
            reply = self._claim_replicated(instance_id, run_id, args)
        else:
            reply = [_text(v) for v in self._run("claim", instance_id, args, extra_keys=lists)]
        outcome = ClaimVerdict(reply[0])
        if outcome is ClaimVerdict.RETRY:
            return ClaimResult(outcome, RuntimeStatus(reply[1] or RuntimeStatus.PENDING), reply[2])
        if outcome is ClaimVerdict.CLAIMED:
            ended = reply[2] if len(reply) > 2 else ""
            return ClaimResult(outcome, RuntimeStatus.PENDING, run_id, int(reply[1]), ended=ended)
        message = reply[3] if len(reply) > 3 else ""
        return ClaimResult(outcome, RuntimeStatus(reply[1]), reply[2], message=message)

    def _claim_replicated(self, instance_id: str, run_id: str, args: list[Any]) -> list[str]:
        # WAIT counts the replicas that have this connection's writes: the claim and
        # the WAIT share one connection by going in one pipeline.
        pipe = self._redis.pipeline(transaction=False)
        self._run("claim", instance_id, args, client=pipe)
        pipe.wait(self._min_replicas, self._replica_timeout_ms)
        claimed, confirmed = pipe.execute()
        reply = [_text(v) for v in claimed]
        if reply[0] == ClaimVerdict.CLAIMED.value and int(confirmed) < self._min_replicas:
            self.undo_claim(instance_id, run_id=run_id)
            raise ServiceUnavailable(
                f"The claim reached {confirmed} of the {self._min_replicas} replicas required "
                f"within {self._replica_timeout_ms} ms; it was given back."
            )
        return reply

    @_unavailable
    def undo_claim(self, instance_id: str, *, run_id: str) -> bool:
        """Give the ID back after a failed publish, restoring the record it replaced."""
        return bool(self._run("undo_claim", instance_id, [run_id, self._retention_us]))

    # -- steps ------------------------------------------------------------------
    @_unavailable
    def begin_step(
        self, instance_id: str, *, run_id: str, task_id: str, token: str, lease_s: float, name: str = "",
        message_json: str = "", parent_id: str = "",
    ) -> StepGate:
        """Decide whether this delivery of a step may run user code, and take its lease.

        `message_json` is the delivery as the gate saw it: kept while the step runs (and
        after, until the next step starts), so the reconciler can send it again if its
        lease runs out with no completion. `parent_id` names the step before it, whose
        kept message this start drops.
        """
        args = [run_id, task_id, token, _us(lease_s), self._retention_us, name, message_json, parent_id]
        return _gate(self._run("begin_step", instance_id, args))

    @_unavailable
    def keep_published(
        self, instance_id: str, *, run_id: str, task_id: str, message_json: str, wait_s: float,
        replace: bool = False,
    ) -> bool:
        """Keep a step's message as it is published (a group's member, a countdown), until its gate.

        If it has not reached its gate within `wait_s`, the reconciler sends it again (same task id).
        False when the run is not current and live, or the step is known already (unless
        `replace`: a timer's hop keeps its next message over its last one).
        """
        args = [run_id, task_id, message_json, _us(wait_s), self._retention_us, "1" if replace else ""]
        return bool(self._run("published", instance_id, args))

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
        RESUMED (ask the gate again: no longer suspended, or the step is done, waiting or
        held) or EVENT with a buffered event's JSON (the wait is over at once). A wait
        whose timeout fired before it parked ends here: EVENT with its default, or STALE
        when the timeout failed the run.
        """
        kind = "event" if event else "suspend"
        args = [run_id, task_id, kind, park_json, event, default_json, "1" if final else "",
                self._retention_us]
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
        """Delete a terminal record and its tick counts; OK, MISSING or LIVE, and the status."""
        return _found(self._run("purge", instance_id, ["", "", ""]))

    @_unavailable
    def purge_many(
        self,
        instance_ids: Iterable[str],
        *,
        created_from_us: float | None = None,
        created_to_us: float | None = None,
        statuses: Iterable[str] | None = None,
    ) -> int:
        """Delete several terminal records in one round trip; return how many went.

        The filter they were listed by is checked again in the script: a record
        re-run since (another created time, another status) is kept.
        """
        wanted = None if statuses is None else list(statuses)
        if wanted == []:
            return 0  # no status asked for matches nothing
        args = [_bound(created_from_us, math.ceil), _bound(created_to_us, math.floor), " ".join(wanted or ())]
        replies = self._run_each("purge", [(i, args) for i in instance_ids])
        return sum(_found(reply).outcome is Verdict.OK for reply in replies)

    def _run_each(self, script: str, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        """Run one script per (instance, args): in one pipeline, or one by one in a cluster.

        A cluster pipeline cannot run scripts, and each instance may live on another node.
        """
        if self._cluster:
            return [self._run(script, instance_id, args) for instance_id, args in calls]
        pipe = self._redis.pipeline(transaction=False)
        for instance_id, args in calls:
            self._run(script, instance_id, args, client=pipe)
        return pipe.execute()

    # -- suspend, resume, events --------------------------------------------------
    @_unavailable
    def suspend(self, instance_id: str) -> Found:
        """Suspend the live run; OK, MISSING, TERMINAL or CONFLICT, and the status found."""
        return _found(self._run("suspend", instance_id, []))

    @_unavailable
    def resume(self, instance_id: str) -> Release:
        """Resume a suspended run; every parked delivery comes back to be published.

        They come back in one outbox entry (``entry``), held until all are published.
        """
        return _release(self._run("resume", instance_id, []))

    @_unavailable
    def raise_event(self, instance_id: str, *, name: str, data_json: str, max_events: int = 1000) -> Release:
        """Hand an event to the run waiting for it, or buffer it in order (FULL: not buffered)."""
        args = [name, data_json, self._retention_us, max_events]
        return _release(self._run("raise_event", instance_id, args))

    @_unavailable
    def event_timeout(self, instance_id: str, *, run_id: str, task_id: str, failure_json: str,
                      timer_id: str = "") -> Release:
        """End a wait that is still waiting: fail the run, or hand it its default.

        A wait that has not parked yet is NOTED: it ends the same way as it parks.
        `timer_id` is the firing timer's task id: its kept message is dropped, so the
        reconciler does not send it again.
        """
        args = [run_id, task_id, self._retention_us, failure_json, timer_id]
        return _release(self._run("event_timeout", instance_id, args))

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

    # -- the outbox ---------------------------------------------------------------
    @_unavailable
    def sent(self, instance_id: str, *, entry: str, message_json: str) -> bool:
        """Clear outbox entry `entry` once `message_json` was published; False if it changed."""
        return bool(self._run("sent", instance_id, [entry, message_json]))

    @_unavailable
    def outbox_due(self, limit: int) -> dict[str, list[tuple[str, str]]]:
        """Return, by instance, the outbox entries due for a re-send (up to `limit` per shard).

        Each returned entry is put off by a grace period, so it comes back at most once
        per period while its publish is not confirmed.
        """
        due = self._overdue("outbox", limit)
        if not due:
            return {}
        found = {}
        for instance_id, flat in zip(due, self._run_each("relay", [(i, []) for i in due]), strict=True):
            entries = [_text(v) for v in flat]
            if entries:
                found[instance_id] = list(zip(entries[::2], entries[1::2], strict=True))
        return found

    # -- recovery ---------------------------------------------------------------
    @_unavailable
    def due(self, limit: int) -> list[str]:
        """Return up to `limit` live instances per shard whose sign of life is overdue."""
        return self._overdue("alive", limit)

    def _overdue(self, index: str, limit: int) -> list[str]:
        # Up to `limit` members per shard of a per-shard index whose score (µs) is past,
        # by Redis' clock, the one every score was written with (a cluster's nodes share
        # the hosts' clocks; the reconciler's grace covers their skew).
        seconds, micros = self._redis.time() if self._cluster else (0, 0)
        pipe = self._redis.pipeline(transaction=False)
        if not self._cluster:
            pipe.time()
        for key in self._keyspace.per_shard(index):
            pipe.zrange(key, 0, limit - 1, withscores=True)
        shards = pipe.execute()
        if not self._cluster:
            (seconds, micros), *shards = shards
        now_us = seconds * 1_000_000 + micros
        return [_text(m) for rows in shards for m, score in rows if score <= now_us]

    @_unavailable
    def reap(
        self, instance_ids: Iterable[str], *, lost_json: str, timed_out_json: str, resend_s: float
    ) -> list[Reaped]:
        """Recover or fail each overdue run, one script each, in one round trip.

        A run whose step lease ran out hands back the step's kept message (RESENT): the
        caller publishes it again, and the step is sent once more if it has not started
        within `resend_s`. Otherwise the run fails (lost or timed out) or is left alone.
        """
        args = [self._retention_us, lost_json, timed_out_json, _us(resend_s)]
        replies = self._run_each("reap", [(i, args) for i in instance_ids])
        return [_reaped(reply) for reply in replies]

    # -- the dashboard's summary: bounded reads of every shard's two indexes ------
    @_unavailable
    def summary(self, since_us: int, sample: int) -> dict[str, Any]:
        """Count live runs, indexed records, and records created and starts refused since `since_us`.

        Refusals are counted per minute (claim.lua), so the oldest minute counts whole.

        Also reads the status of up to `sample` live runs per shard, so live runs can
        be told apart by status; ``sampled`` says whether that covered every live run.
        Two round trips of at most ``SHARDS * (3 + sample)`` commands, whatever the
        number of records.
        """
        first_minute = int(since_us // 60_000_000)
        minutes = [str(first_minute + n) for n in range(REFUSAL_MINUTES + 1)]
        pipe = self._redis.pipeline(transaction=False)
        shards = zip(self._keyspace.per_shard("alive"), self._keyspace.per_shard("created"),
                     self._keyspace.per_shard("refused"), strict=True)
        for alive, created, refused in shards:
            pipe.zcard(alive)
            pipe.zcard(created)
            pipe.zcount(created, since_us, "+inf")
            pipe.zrange(alive, 0, sample - 1)
            pipe.hmget(refused, minutes)
        replies = pipe.execute()
        live, records, recent = (sum(replies[n::5]) for n in range(3))
        ids = [_text(m) for rows in replies[3::5] for m in rows]
        refusals = sum(int(n) for counts in replies[4::5] for n in counts if n is not None)
        pipe = self._redis.pipeline(transaction=False)
        for instance_id in ids:
            pipe.hget(self.keys(instance_id).record, "status")
        by_status: dict[str, int] = {}
        for status in pipe.execute() if ids else []:
            if status is not None:
                by_status[_text(status)] = by_status.get(_text(status), 0) + 1
        return {"live": live, "records": records, "created_since": recent,
                "refused_since": refusals, "live_by_status": by_status, "sampled": len(ids) < live}

    # -- metrics: live runs by status, for a scrape ----------------------------------
    # Reads only the shards' alive indexes and the status field of a bounded random
    # sample of their records: two round trips, at most `sample` HGETs, however many
    # runs are live.
    @_unavailable
    def live_runs(self, sample: int = 1024) -> dict[str, float]:
        """Return how many runs are live, by status.

        Exact while no shard holds more than ``sample / SHARDS`` live runs; beyond that,
        each shard's split by status is estimated from a random sample of its runs
        (the total per shard stays exact).
        """
        per_shard = max(1, sample // SHARDS)
        pipe = self._redis.pipeline(transaction=False)
        for key in self._keyspace.per_shard("alive"):
            pipe.zcard(key)
            pipe.zrandmember(key, per_shard)
        replies = pipe.execute()
        shards = [(int(total), [_text(m) for m in members or ()])
                  for total, members in zip(replies[::2], replies[1::2], strict=True)]
        for _, members in shards:
            for instance_id in members:
                pipe.hget(self.keys(instance_id).record, "status")
        statuses = iter(pipe.execute())
        counts: dict[str, float] = {}
        for total, members in shards:
            seen = [_text(s) for s in (next(statuses) for _ in members) if s is not None]
            for status in seen:
                counts[status] = counts.get(status, 0.0) + total / len(seen)
        return counts

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
    def begin_tick(self, instance_id: str, *, token: str, duplicate: str, slot: str = "",
                   due_us: int = 0) -> TickBegin:
        """Note a delivery of beat tick `token` due at `due_us` in its schedule's `slot`.

        NEW: decide it. SEEN: a redelivery or retry, with the outcomes it counted.
        DUPLICATE: a tick of a due time as late or later in the slot was taken; this one
        is counted as `duplicate`. Ticks with no slot ('') are only told from their own
        redeliveries.
        """
        args = ["begin", token, duplicate, slot, due_us, self._retention_us // 1000, TICK_MEMORY]
        verdict, detail = (_text(v) for v in self._run("tick", instance_id, args))
        return TickBegin(TickVerdict(verdict), detail)

    @_unavailable
    def count_tick(self, instance_id: str, *, token: str, outcome: str) -> bool:
        """Count beat tick `token` as `outcome`, once: False if it was counted so already."""
        args = ["count", token, outcome, "", 0, self._retention_us // 1000, TICK_MEMORY]
        return bool(self._run("tick", instance_id, args))

    @_unavailable
    def tick_counts(self, instance_id: str) -> dict[str, int]:
        """Return the instance's beat tick counts by outcome (empty when none)."""
        row = self._redis.hgetall(self.keys(instance_id).ticks)
        # The other fields (slot:, t:, :recent) say which ticks were seen.
        return {_text(k): int(v) for k, v in row.items() if ":" not in _text(k)}

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


def _client_from_url(url: str, *, max_connections: int, timeout: float) -> redis.Redis | RedisCluster:
    """Return a client for ``singleton_store_url``: a Redis Cluster for ``redis+cluster://``."""
    scheme, _, rest = url.partition("://")
    if scheme not in CLUSTER_SCHEMES:
        pool = redis.BlockingConnectionPool.from_url(url, max_connections=max_connections, timeout=timeout)
        return redis.Redis(connection_pool=pool)
    # redis+cluster://[user:password@]host:port[,host:port...][/...]: any node will do
    # to discover the others; the rest of the URL applies to every node.
    credentials, _, hosts = rest.rpartition("@")
    hosts, _, tail = hosts.partition("/")
    nodes = [ClusterNode(*host.rsplit(":", 1)) for host in hosts.split(",")]
    first = f"{CLUSTER_SCHEMES[scheme]}://{credentials + '@' if credentials else ''}{hosts.split(',')[0]}"
    # Per node, the same waiting pool as on one server.
    pool_class = functools.partial(redis.BlockingConnectionPool, timeout=timeout)
    return RedisCluster.from_url(first + (f"/{tail}" if tail else ""), startup_nodes=nodes,
                                 max_connections=max_connections, connection_pool_class=pool_class)
