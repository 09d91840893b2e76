"""The record store: every Redis key and every Lua script of the singleton layer.

Nothing outside this module builds a key or talks to Redis. Each public method is
one round trip (one script, or one pipeline of reads).

Key layout. ``<p>`` is the configured prefix (default ``singleton``); ``<s>`` is the
instance's shard, one hex digit of crc32(instance_id). The shard is the Redis Cluster
hash tag, so an instance's keys and the index entries a claim touches share a slot:

    <p>:{<s>}:i:<instance_id>      hash  the record: name, run, fence, status, input,
                                         output, custom, created, updated (times in µs)
    <p>:{<s>}:steps:<instance_id>  hash  step markers of the live run, by task id:
                                         "run:<token>:<lease-until-µs>" while a delivery
                                         runs the step, "done:<json result>" after it
    <p>:{<s>}:created              zset  listing index: instance_id -> created time (µs)
    <p>:{<s>}:expiring             zset  terminal records: instance_id -> expiry (µs)
    <p>:{<s>}:prev:<instance_id>   hash  the finished record a claim replaced, kept
                                         5 minutes so a failed publish can restore it

Protocol. A claim refuses when the record's status is live; otherwise it replaces
the record with a Pending run (new run id, fence = max(old + 1, now in µs), so the
fence only grows, purges included). Every later write first compares the caller's
run id with the record's and checks the status is live: that comparison is the fence.
Terminal records get a TTL (the retention) and an entry in ``expiring``; each claim
sweeps a few due entries out of the listing index.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import redis

from .errors import ServiceUnavailable
from .status import LIVE_STATUSES, RuntimeStatus

SHARDS = 16
# How long a claim keeps the finished record it replaced, for undo_claim.
PREVIOUS_RECORD_TTL_MS = 300_000
_T = TypeVar("_T")

_PRELUDE = """
local LIVE = {LIVE_TABLE}
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local function fmt(n) return string.format('%.0f', n) end
local function is_current(inst, run)
  local cur = redis.call('HMGET', inst, 'run', 'status')
  return cur[1] == run and LIVE[cur[2]] ~= nil, cur[2]
end
local function finish(inst, steps, expiring, id, status, output, retention_us)
  local now = now_us()
  redis.call('HSET', inst, 'status', status, 'output', output, 'updated', fmt(now))
  redis.call('PEXPIRE', inst, math.floor(retention_us / 1000))
  redis.call('ZADD', expiring, fmt(now + retention_us), id)
  redis.call('DEL', steps)
end
""".replace("LIVE_TABLE", ", ".join(f"{s.value} = true" for s in LIVE_STATUSES))

# KEYS: inst, steps, created, expiring, prev. ARGV: id, name, run, input.
_CLAIM = """
local cur = redis.call('HMGET', KEYS[1], 'status', 'run', 'fence')
if cur[1] and LIVE[cur[1]] then return {'refused', cur[1], cur[2]} end
local now = now_us()
local fence = math.max((tonumber(cur[3]) or 0) + 1, now)
if cur[1] then
  -- Keep the finished record server-side for a while, in case the publish fails.
  redis.call('RESTORE', KEYS[5], PREV_TTL_MS, redis.call('DUMP', KEYS[1]), 'REPLACE')
else
  redis.call('DEL', KEYS[5])
end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('HSET', KEYS[1], 'name', ARGV[2], 'run', ARGV[3], 'fence', fmt(fence),
  'status', 'Pending', 'input', ARGV[4], 'created', fmt(now), 'updated', fmt(now))
redis.call('ZADD', KEYS[3], fmt(now), ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
local due = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', fmt(now), 'LIMIT', 0, 4)
for _, gone in ipairs(due) do
  redis.call('ZREM', KEYS[4], gone)
  redis.call('ZREM', KEYS[3], gone)
end
return {'claimed', fmt(fence)}
""".replace("PREV_TTL_MS", str(PREVIOUS_RECORD_TTL_MS))

# KEYS: inst, created, expiring, prev. ARGV: id, run, retention_us.
_UNDO_CLAIM = """
local cur = redis.call('HMGET', KEYS[1], 'run', 'status', 'fence')
if cur[1] ~= ARGV[2] or cur[2] ~= 'Pending' then return 0 end
redis.call('DEL', KEYS[1])
local previous = redis.call('DUMP', KEYS[4])
if not previous then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 1
end
redis.call('RESTORE', KEYS[1], 0, previous)
redis.call('DEL', KEYS[4])
redis.call('HSET', KEYS[1], 'fence', cur[3])
local prev = redis.call('HMGET', KEYS[1], 'created', 'updated')
redis.call('ZADD', KEYS[2], prev[1], ARGV[1])
local expires = tonumber(prev[2]) + tonumber(ARGV[3])
redis.call('ZADD', KEYS[3], fmt(expires), ARGV[1])
redis.call('PEXPIRE', KEYS[1], math.max(1, math.floor((expires - now_us()) / 1000)))
return 1
"""

# KEYS: inst, steps. ARGV: run, task_id, token, lease_us, retention_us.
_BEGIN_STEP = """
local current, status = is_current(KEYS[1], ARGV[1])
if not current then return {'stale', status or ''} end
local now = now_us()
local step = redis.call('HGET', KEYS[2], ARGV[2])
if step then
  if string.sub(step, 1, 5) == 'done:' then return {'done', string.sub(step, 6)} end
  local lease_until = tonumber(string.match(step, ':(%d+)$'))
  if lease_until > now then return {'busy', fmt(lease_until - now)} end
end
redis.call('HSET', KEYS[2], ARGV[2], 'run:' .. ARGV[3] .. ':' .. fmt(now + tonumber(ARGV[4])))
redis.call('PEXPIRE', KEYS[2], math.floor(tonumber(ARGV[5]) / 1000))
if status == 'Pending' then
  redis.call('HSET', KEYS[1], 'status', 'Running', 'updated', fmt(now))
else
  redis.call('HSET', KEYS[1], 'updated', fmt(now))
end
return {'run', status}
"""

# KEYS: inst, steps. ARGV: run, task_id, token, action ('done'|'renew'|'release'), value.
_STEP_MARK = """
if not is_current(KEYS[1], ARGV[1]) then return 0 end
local step = redis.call('HGET', KEYS[2], ARGV[2])
local mine = 'run:' .. ARGV[3] .. ':'
if not step or string.sub(step, 1, #mine) ~= mine then return 0 end
if ARGV[4] == 'done' then
  redis.call('HSET', KEYS[2], ARGV[2], 'done:' .. ARGV[5])
elseif ARGV[4] == 'renew' then
  redis.call('HSET', KEYS[2], ARGV[2], mine .. fmt(now_us() + tonumber(ARGV[5])))
else
  redis.call('HDEL', KEYS[2], ARGV[2])
end
return 1
"""

# KEYS: inst, steps, expiring. ARGV: id, run, status, output, retention_us.
_END_RUN = """
if not is_current(KEYS[1], ARGV[2]) then return 0 end
finish(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[3], ARGV[4], tonumber(ARGV[5]))
return 1
"""

# KEYS: inst, steps, expiring. ARGV: id, reason, retention_us.
_TERMINATE = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {'missing', ''} end
if not LIVE[status] then return {'terminal', status} end
finish(KEYS[1], KEYS[2], KEYS[3], ARGV[1], 'Terminated', ARGV[2], tonumber(ARGV[3]))
return {'ok', status}
"""

# KEYS: inst, steps, created, expiring. ARGV: id.
_PURGE = """
local status = redis.call('HGET', KEYS[1], 'status')
if status and LIVE[status] then return {'live', status} end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
if not status then return {'missing', ''} end
return {'ok', status}
"""


@dataclass(frozen=True)
class ClaimResult:
    """What a claim found: either our new run, or the live run that refused us."""

    claimed: bool
    status: RuntimeStatus
    run_id: str
    fence: int = 0


@dataclass(frozen=True)
class StepGate:
    """The gate's verdict for one delivery of one step: run, stale, done or busy."""

    outcome: str
    detail: str


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


class Store:
    """The instance records in Redis, reached only through atomic scripts."""

    def __init__(self, client: redis.Redis, *, prefix: str, retention_s: float) -> None:
        """Bind to a redis-py client (usually the Celery result backend's).

        Args:
            client: a redis-py client; responses may be bytes or str.
            prefix: the key prefix; must not contain '{' or '}'.
            retention_s: how long terminal records are kept, in seconds.
        """
        if "{" in prefix or "}" in prefix:
            raise ValueError("the key prefix must not contain '{' or '}'")
        self._redis = client
        self._prefix = prefix
        self._retention_us = int(retention_s * 1_000_000)
        self._claim = self._script(_CLAIM)
        self._undo_claim = self._script(_UNDO_CLAIM)
        self._begin_step = self._script(_BEGIN_STEP)
        self._step_mark = self._script(_STEP_MARK)
        self._end_run = self._script(_END_RUN)
        self._terminate = self._script(_TERMINATE)
        self._purge = self._script(_PURGE)

    def _script(self, body: str) -> Any:
        return self._redis.register_script(_PRELUDE + body)

    # -- keys -------------------------------------------------------------------
    def _shard_of(self, instance_id: str) -> str:
        return f"{self._prefix}:{{{zlib.crc32(instance_id.encode()) % SHARDS:x}}}"

    def _keys(self, instance_id: str, *names: str) -> list[str]:
        shard = self._shard_of(instance_id)
        per_instance = {
            "inst": f"{shard}:i:{instance_id}",
            "steps": f"{shard}:steps:{instance_id}",
            "prev": f"{shard}:prev:{instance_id}",
        }
        return [per_instance.get(name) or f"{shard}:{name}" for name in names]

    def _shard_keys(self, name: str) -> list[str]:
        return [f"{self._prefix}:{{{n:x}}}:{name}" for n in range(SHARDS)]

    # -- claims -----------------------------------------------------------------
    @_unavailable
    def claim(self, instance_id: str, name: str, run_id: str, input_json: str) -> ClaimResult:
        """Claim the ID for a new Pending run unless a live run holds it (one round trip)."""
        keys = self._keys(instance_id, "inst", "steps", "created", "expiring", "prev")
        reply = [_text(v) for v in self._claim(keys, [instance_id, name, run_id, input_json])]
        if reply[0] == "refused":
            return ClaimResult(False, RuntimeStatus(reply[1]), reply[2])
        return ClaimResult(True, RuntimeStatus.PENDING, run_id, int(reply[1]))

    @_unavailable
    def undo_claim(self, instance_id: str, claim: ClaimResult) -> bool:
        """Give the ID back after a failed publish, restoring the record it replaced."""
        keys = self._keys(instance_id, "inst", "created", "expiring", "prev")
        return bool(self._undo_claim(keys, [instance_id, claim.run_id, self._retention_us]))

    # -- steps ------------------------------------------------------------------
    @_unavailable
    def begin_step(
        self, instance_id: str, run_id: str, task_id: str, token: str, lease_s: float
    ) -> StepGate:
        """Decide whether this delivery of a step may run user code, and take its lease."""
        keys = self._keys(instance_id, "inst", "steps")
        args = [run_id, task_id, token, int(lease_s * 1_000_000), self._retention_us]
        outcome, detail = (_text(v) for v in self._begin_step(keys, args))
        return StepGate(outcome, detail)

    @_unavailable
    def mark_step(
        self, instance_id: str, run_id: str, task_id: str, token: str, action: str, value: Any = ""
    ) -> bool:
        """Record a step's result ('done'), extend its lease ('renew') or drop it ('release')."""
        keys = self._keys(instance_id, "inst", "steps")
        return bool(self._step_mark(keys, [run_id, task_id, token, action, value]))

    # -- endings ----------------------------------------------------------------
    @_unavailable
    def end_run(self, instance_id: str, run_id: str, status: RuntimeStatus, output: str) -> bool:
        """Move the run to a terminal status if it is still the current, live run."""
        keys = self._keys(instance_id, "inst", "steps", "expiring")
        args = [instance_id, run_id, status.value, output, self._retention_us]
        return bool(self._end_run(keys, args))

    @_unavailable
    def terminate(self, instance_id: str, reason_json: str) -> tuple[str, str]:
        """Terminate whatever run is live; returns (outcome, status it found)."""
        keys = self._keys(instance_id, "inst", "steps", "expiring")
        reply = self._terminate(keys, [instance_id, reason_json, self._retention_us])
        return _text(reply[0]), _text(reply[1])

    @_unavailable
    def purge(self, instance_id: str) -> tuple[str, str]:
        """Delete a terminal record; returns (outcome, status it found)."""
        keys = self._keys(instance_id, "inst", "steps", "created", "expiring")
        reply = self._purge(keys, [instance_id])
        return _text(reply[0]), _text(reply[1])

    @_unavailable
    def purge_many(self, instance_ids: Iterable[str]) -> int:
        """Delete several terminal records in one round trip; return how many went."""
        pipe = self._redis.pipeline(transaction=False)
        for instance_id in instance_ids:
            keys = self._keys(instance_id, "inst", "steps", "created", "expiring")
            self._purge(keys, [instance_id], client=pipe)
        return sum(_text(reply[0]) == "ok" for reply in pipe.execute())

    # -- reads ------------------------------------------------------------------
    def read(self, instance_id: str) -> dict[str, str] | None:
        """Return the record's fields, or None when there is no record."""
        return self.read_many([instance_id])[0]

    @_unavailable
    def read_many(self, instance_ids: Iterable[str]) -> list[dict[str, str] | None]:
        """Return the records of several instances in one round trip."""
        pipe = self._redis.pipeline(transaction=False)
        for instance_id in instance_ids:
            pipe.hgetall(self._keys(instance_id, "inst")[0])
        rows = pipe.execute()
        return [{_text(k): _text(v) for k, v in row.items()} or None for row in rows]

    @_unavailable
    def index_page(
        self, newest_us: float, oldest_us: float, count: int
    ) -> list[list[tuple[str, int]]]:
        """Return, per shard, up to `count` (id, created µs) entries, newest first."""
        pipe = self._redis.pipeline(transaction=False)
        for key in self._shard_keys("created"):
            pipe.zrevrangebyscore(key, newest_us, oldest_us, start=0, num=count, withscores=True)
        return [[(_text(m), int(s)) for m, s in rows] for rows in pipe.execute()]

    # -- schedules (issue 5): beat tick outcomes and the one buffered tick ------
    # Keys, per instance, in the instance's shard (same hash slot as its record):
    #   <p>:{<s>}:ticks:<instance_id>   hash    how many beat ticks ended how: started,
    #                                           skipped, buffered (kept for the retention)
    #   <p>:{<s>}:buffer:<instance_id>  string  the token of the one buffered tick (PX TTL)
    def _schedule_key(self, kind: str, instance_id: str) -> str:
        return f"{self._shard_of(instance_id)}:{kind}:{instance_id}"

    @functools.cached_property
    def _hold_buffer(self) -> Any:
        return self._script(_HOLD_BUFFER)

    @functools.cached_property
    def _release_buffer(self) -> Any:
        return self._script(_RELEASE_BUFFER)

    @_unavailable
    def count_tick(self, instance_id: str, outcome: str) -> int:
        """Count one beat tick of the instance that ended as `outcome`; return the new count."""
        key = self._schedule_key("ticks", instance_id)
        pipe = self._redis.pipeline(transaction=False)
        pipe.hincrby(key, outcome, 1)
        pipe.pexpire(key, self._retention_us // 1000)
        return int(pipe.execute()[0])

    @_unavailable
    def tick_counts(self, instance_id: str) -> dict[str, int]:
        """Return the instance's beat tick counts by outcome (empty when none)."""
        row = self._redis.hgetall(self._schedule_key("ticks", instance_id))
        return {_text(k): int(v) for k, v in row.items()}

    @_unavailable
    def hold_buffer(self, instance_id: str, token: str, ttl_s: float) -> bool:
        """Take the instance's one buffer slot for `token`, or renew it if `token` holds it.

        Returns False when another token holds the slot.
        """
        key = self._schedule_key("buffer", instance_id)
        return bool(self._hold_buffer([key], [token, max(1, int(ttl_s * 1000))]))

    @_unavailable
    def release_buffer(self, instance_id: str, token: str) -> bool:
        """Free the buffer slot if `token` still holds it."""
        return bool(self._release_buffer([self._schedule_key("buffer", instance_id)], [token]))


# KEYS: buffer. ARGV: token, ttl_ms.
_HOLD_BUFFER = """
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

# KEYS: buffer. ARGV: token.
_RELEASE_BUFFER = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
"""
