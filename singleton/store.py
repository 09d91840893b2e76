"""The record store: every Redis key and every Lua script of the singleton layer.

Nothing outside this module builds a key or talks to Redis. Each public method is
one round trip (one script, or one pipeline of reads).

Key layout. ``<p>`` is the configured prefix (default ``singleton``); ``<s>`` is the
instance's shard, one hex digit of crc32(instance_id). The shard is the Redis Cluster
hash tag, so an instance's keys and the index entries a claim touches share a slot:

    <p>:{<s>}:i:<instance_id>      hash  the record: name, run, fence, status, input,
                                         output, custom, created, updated (times in µs),
                                         request (idempotency key), continuedby, lease,
                                         timeout and deadline (µs), and
                                         while parked: park, parkvalue, waiting,
                                         waittask, waitfinal, waitdefault
    <p>:{<s>}:steps:<instance_id>  hash  step markers of the live run, by task id:
                                         "run:<token>:<lease-until-µs>" while a delivery
                                         runs the step, "done:<json result>" after it,
                                         "parked" for a wait; "t:<task id>" holds
                                         "<start µs>|<task name>" for the history
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
                                         skipped, buffered), kept for the retention
    <p>:{<s>}:buffer:<instance_id> str   the token of the one buffered beat tick (PX)

Every script receives all nine keys of its instance (record, steps, created,
expiring, prev, history, events, alive, drain), so each is one slot in a cluster.
Event names are hash fields, never part of a key.

Protocol. A claim refuses when the record's status is live (unless a start policy
says otherwise, decided inside the same script); otherwise it replaces the record
with a Pending run (new run id, fence = max(old + 1, now in µs), so the fence only
grows, purges included). Every later write first compares the caller's run id with
the record's and checks the status is live: that comparison is the fence. A parked
run (suspended, or waiting for an event) keeps the signature to publish in ``park``;
the script that unparks it hands it to exactly one caller. Terminal records get a
TTL (the retention) and an entry in ``expiring``; each claim sweeps a few due
entries out of the listing index.
"""

from __future__ import annotations

import functools
import json
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
TERMINATED_BY_START = '"Terminated by a new start of the same ID (terminate_existing)."'
_T = TypeVar("_T")

_PRELUDE = """
local LIVE = {LIVE_TABLE}
local PARK_FIELDS = {'park', 'parkvalue', 'waiting', 'waittask', 'waitfinal', 'waitdefault'}
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local function fmt(n) return string.format('%.0f', n) end
local function is_current(inst, run)
  local cur = redis.call('HMGET', inst, 'run', 'status')
  return cur[1] == run and LIVE[cur[2]] ~= nil, cur[2]
end
-- Append one step's history entry, from the start time its begin_step noted.
local function history(hist, steps, task_id, outcome, result)
  local began = redis.call('HGET', steps, 't:' .. task_id)
  if not began then return end
  local sep = string.find(began, '|', 1, true)
  redis.call('RPUSH', hist, cjson.encode({taskId = task_id, name = string.sub(began, sep + 1),
    start = string.sub(began, 1, sep - 1), ['end'] = fmt(now_us()), outcome = outcome,
    result = result}))
end
-- A sign of life: the run may stay silent for its lease (plus `extra_us`) before the
-- reconciler fails it as lost, and never beyond its deadline (the run's timeout).
local function alive(k, extra_us)
  local f = redis.call('HMGET', k.inst, 'lease', 'deadline')
  local until_us = now_us() + (tonumber(f[1]) or 0) + (extra_us or 0)
  local deadline = tonumber(f[2])
  if deadline and deadline < until_us then until_us = deadline end
  redis.call('ZADD', k.alive, fmt(until_us), k.id)
end
-- Steps still executing when their run ends keep their leases in `drain`: no step of
-- a later run of the ID starts until they finish or their lease runs out, so two
-- runs of one ID never execute at once. `except_task` is the step ending the run.
local function drain(k, now, except_task)
  local steps = redis.call('HGETALL', k.steps)
  for i = 1, #steps, 2 do
    local task, marker = steps[i], steps[i + 1]
    if task ~= except_task and string.sub(marker, 1, 4) == 'run:' then
      local lease_until = tonumber(string.match(marker, ':(%d+)$'))
      if lease_until > now then
        redis.call('HSET', k.drain, task, marker)
        local ttl = redis.call('PTTL', k.drain)
        local wanted = math.floor((lease_until - now) / 1000) + 1000
        if ttl < wanted then redis.call('PEXPIRE', k.drain, wanted) end
      end
    end
  end
end
-- The longest remaining lease of a draining step (0 when none); drops expired ones.
local function draining(k, now)
  local entries = redis.call('HGETALL', k.drain)
  local longest = 0
  for i = 1, #entries, 2 do
    local left = tonumber(string.match(entries[i + 1], ':(%d+)$')) - now
    if left > longest then longest = left elseif left <= 0 then redis.call('HDEL', k.drain, entries[i]) end
  end
  return longest
end
local function finish(k, id, status, output, retention_us, except_task)
  local now = now_us()
  drain(k, now, except_task or '')
  redis.call('ZREM', k.alive, id)
  redis.call('HSET', k.inst, 'status', status, 'output', output, 'updated', fmt(now))
  redis.call('HDEL', k.inst, unpack(PARK_FIELDS))
  redis.call('PEXPIRE', k.inst, math.floor(retention_us / 1000))
  redis.call('PEXPIRE', k.hist, math.floor(retention_us / 1000))
  redis.call('ZADD', k.expiring, fmt(now + retention_us), id)
  redis.call('DEL', k.steps, k.events)
end
-- Event buffers: one JSON array of raw JSON payloads per event name, oldest first.
local function pop_event(events, name)
  local raw = redis.call('HGET', events, name)
  if not raw then return nil end
  local queue = cjson.decode(raw)
  local first = table.remove(queue, 1)
  if #queue == 0 then redis.call('HDEL', events, name)
  else redis.call('HSET', events, name, cjson.encode(queue)) end
  return first
end
local function push_event(events, name, data)
  local raw = redis.call('HGET', events, name)
  local queue = raw and cjson.decode(raw) or {}
  table.insert(queue, data)
  redis.call('HSET', events, name, cjson.encode(queue))
end
-- Hand a waiting run its event (or its timeout default): the wait step is done with
-- `value`; the caller publishes the parked rest of the chain, unless the wait was the
-- last step (the run completes) or the run is suspended (resume publishes it later).
local function take_wait(k, id, value, outcome, retention_us)
  local w = redis.call('HMGET', k.inst, 'waittask', 'waitfinal', 'status', 'park')
  history(k.hist, k.steps, w[1], outcome, value)
  redis.call('HSET', k.steps, w[1], 'done:' .. value)
  redis.call('HDEL', k.inst, 'waiting', 'waittask', 'waitfinal', 'waitdefault')
  if w[2] == '1' then
    finish(k, id, 'Completed', value, retention_us)
    return {'completed', 'Completed'}
  end
  if w[3] == 'Suspended' then
    redis.call('HSET', k.inst, 'parkvalue', value)
    return {'held', w[3]}
  end
  redis.call('HDEL', k.inst, 'park', 'parkvalue')
  redis.call('HSET', k.inst, 'updated', fmt(now_us()))
  alive(k)
  return {'release', w[3], w[4], value}
end
""".replace("LIVE_TABLE", ", ".join(f"{s.value} = true" for s in LIVE_STATUSES))

# Every script names its keys in this order (a prefix of it): see Store._keys.
_KEYS = """
local k = {inst = KEYS[1], steps = KEYS[2], created = KEYS[3], expiring = KEYS[4],
  prev = KEYS[5], hist = KEYS[6], events = KEYS[7], alive = KEYS[8], drain = KEYS[9]}
-- The instance ID is what follows the shard's "}:i:" in the record's key.
k.id = string.sub(KEYS[1], string.find(KEYS[1], '}:i:', 1, true) + 4)
"""

# ARGV: id, name, run, input, if_live, if_finished, request_id, retention_us, lease_us,
#       timeout_us (0: none).
_CLAIM = """
local cur = redis.call('HMGET', k.inst, 'status', 'run', 'fence', 'request')
local status = cur[1]
if status then
  if ARGV[7] ~= '' and cur[4] == ARGV[7] then return {'existing', status, cur[2]} end
  if LIVE[status] then
    if ARGV[5] == 'use_existing' then return {'existing', status, cur[2]} end
    if ARGV[5] ~= 'terminate_existing' then return {'refused', status, cur[2]} end
    finish(k, ARGV[1], 'Terminated', TERMINATED_BY_START, tonumber(ARGV[8]))
  elseif ARGV[6] == 'reject' or (ARGV[6] == 'allow_failed_only' and status == 'Completed') then
    return {'rejected', status, cur[2]}
  end
end
local now = now_us()
local fence = math.max((tonumber(cur[3]) or 0) + 1, now)
if status then
  -- Keep the finished record server-side for a while, in case the publish fails.
  redis.call('RESTORE', k.prev, PREV_TTL_MS, redis.call('DUMP', k.inst), 'REPLACE')
  redis.call('DEL', k.inst, k.steps, k.hist, k.events)
  redis.call('ZREM', k.expiring, ARGV[1])
else
  redis.call('DEL', k.prev, k.steps, k.hist, k.events)
end
local fields = {'name', ARGV[2], 'run', ARGV[3], 'fence', fmt(fence), 'status', 'Pending',
  'input', ARGV[4], 'created', fmt(now), 'updated', fmt(now), 'lease', ARGV[9]}
local overdue = now + tonumber(ARGV[9])
if ARGV[7] ~= '' then
  table.insert(fields, 'request')
  table.insert(fields, ARGV[7])
end
if tonumber(ARGV[10]) > 0 then
  local deadline = now + tonumber(ARGV[10])
  for _, v in ipairs({'timeout', ARGV[10], 'deadline', fmt(deadline)}) do table.insert(fields, v) end
  overdue = math.min(overdue, deadline)
end
redis.call('HSET', k.inst, unpack(fields))
redis.call('ZADD', k.alive, fmt(overdue), ARGV[1])
redis.call('ZADD', k.created, fmt(now), ARGV[1])
local due = redis.call('ZRANGEBYSCORE', k.expiring, '-inf', fmt(now), 'LIMIT', 0, 4)
for _, gone in ipairs(due) do
  redis.call('ZREM', k.expiring, gone)
  redis.call('ZREM', k.created, gone)
end
return {'claimed', fmt(fence)}
""".replace("PREV_TTL_MS", str(PREVIOUS_RECORD_TTL_MS)).replace(
    "TERMINATED_BY_START", repr(TERMINATED_BY_START)
)

# ARGV: id, run, retention_us.
_UNDO_CLAIM = """
local cur = redis.call('HMGET', k.inst, 'run', 'status', 'fence')
if cur[1] ~= ARGV[2] or cur[2] ~= 'Pending' then return 0 end
redis.call('DEL', k.inst)
redis.call('ZREM', k.alive, ARGV[1])
local previous = redis.call('DUMP', k.prev)
if not previous then
  redis.call('ZREM', k.created, ARGV[1])
  return 1
end
redis.call('RESTORE', k.inst, 0, previous)
redis.call('DEL', k.prev)
redis.call('HSET', k.inst, 'fence', cur[3])
local prev = redis.call('HMGET', k.inst, 'created', 'updated')
redis.call('ZADD', k.created, prev[1], ARGV[1])
local expires = tonumber(prev[2]) + tonumber(ARGV[3])
redis.call('ZADD', k.expiring, fmt(expires), ARGV[1])
redis.call('PEXPIRE', k.inst, math.max(1, math.floor((expires - now_us()) / 1000)))
return 1
"""

# ARGV: run, task_id, token, lease_us, retention_us, task name.
_BEGIN_STEP = """
local cur = redis.call('HMGET', k.inst, 'run', 'status', 'continuedby')
if cur[1] ~= ARGV[1] or not LIVE[cur[2]] then
  -- The continue-as-new step that made the current run, redelivered before it
  -- confirmed the new run's publish: it may publish again.
  if cur[3] == ARGV[2] and cur[2] == 'ContinuedAsNew' then return {'continued', cur[1]} end
  return {'stale', cur[2] or ''}
end
if cur[2] == 'Suspended' then return {'suspended', cur[2]} end
local now = now_us()
local wait = draining(k, now)
-- A step of an ended run still executes: look again in a second (or when its lease ends).
if wait > 0 then return {'busy', fmt(math.min(wait, 1000000))} end
local step = redis.call('HGET', k.steps, ARGV[2])
if step then
  if string.sub(step, 1, 5) == 'done:' then return {'done', string.sub(step, 6)} end
  if step == 'parked' then return {'parked', cur[2]} end
  local lease_until = tonumber(string.match(step, ':(%d+)$'))
  if lease_until > now then return {'busy', fmt(lease_until - now)} end
end
redis.call('HSET', k.steps, ARGV[2], 'run:' .. ARGV[3] .. ':' .. fmt(now + tonumber(ARGV[4])),
  't:' .. ARGV[2], fmt(now) .. '|' .. ARGV[6])
redis.call('PEXPIRE', k.steps, math.floor(tonumber(ARGV[5]) / 1000))
alive(k)
if cur[2] ~= 'Running' then
  redis.call('HSET', k.inst, 'status', 'Running', 'updated', fmt(now))
else
  redis.call('HSET', k.inst, 'updated', fmt(now))
end
return {'run', cur[2]}
"""

# ARGV: run, task_id, token, action ('done'|'renew'|'release'), value.
_STEP_MARK = """
local mine = 'run:' .. ARGV[3] .. ':'
if not is_current(k.inst, ARGV[1]) then
  -- A step of an ended run: keep renewing its draining lease, or drop it once it ends.
  local draining_step = redis.call('HGET', k.drain, ARGV[2])
  if draining_step and string.sub(draining_step, 1, #mine) == mine then
    if ARGV[4] == 'renew' then
      redis.call('HSET', k.drain, ARGV[2], mine .. fmt(now_us() + tonumber(ARGV[5])))
      redis.call('PEXPIRE', k.drain, math.floor(tonumber(ARGV[5]) / 1000) + 1000)
    else
      redis.call('HDEL', k.drain, ARGV[2])
    end
  end
  return 0
end
local step = redis.call('HGET', k.steps, ARGV[2])
if not step or string.sub(step, 1, #mine) ~= mine then return 0 end
if ARGV[4] == 'done' then
  history(k.hist, k.steps, ARGV[2], 'Completed', ARGV[5])
  redis.call('HSET', k.steps, ARGV[2], 'done:' .. ARGV[5])
  alive(k)
elseif ARGV[4] == 'renew' then
  redis.call('HSET', k.steps, ARGV[2], mine .. fmt(now_us() + tonumber(ARGV[5])))
  alive(k)
else
  -- Keep the start time: a failure recorded next still finds it for the history.
  redis.call('HDEL', k.steps, ARGV[2])
end
return 1
"""

# ARGV: id, run, status, output, retention_us, task_id of the step that ended it ('' if none).
_END_RUN = """
if not is_current(k.inst, ARGV[2]) then return 0 end
if ARGV[6] ~= '' then history(k.hist, k.steps, ARGV[6], ARGV[3], ARGV[4]) end
finish(k, ARGV[1], ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6])
return 1
"""

# ARGV: id, reason, retention_us.
_TERMINATE = """
local status = redis.call('HGET', k.inst, 'status')
if not status then return {'missing', ''} end
if not LIVE[status] then return {'terminal', status} end
finish(k, ARGV[1], 'Terminated', ARGV[2], tonumber(ARGV[3]))
return {'ok', status}
"""

# ARGV: id.
_PURGE = """
local status = redis.call('HGET', k.inst, 'status')
if status and LIVE[status] then return {'live', status} end
redis.call('DEL', k.inst, k.steps, k.hist, k.events)
redis.call('ZREM', k.alive, ARGV[1])
redis.call('ZREM', k.created, ARGV[1])
redis.call('ZREM', k.expiring, ARGV[1])
if not status then return {'missing', ''} end
return {'ok', status}
"""

# ARGV: none.
_SUSPEND = """
local status = redis.call('HGET', k.inst, 'status')
if not status then return {'missing', ''} end
if not LIVE[status] then return {'terminal', status} end
if status == 'Suspended' then return {'conflict', status} end
redis.call('HSET', k.inst, 'status', 'Suspended', 'updated', fmt(now_us()))
return {'ok', status}
"""

# ARGV: none. A parked delivery that no longer waits for an event is handed back.
_RESUME = """
local cur = redis.call('HMGET', k.inst, 'status', 'park', 'parkvalue', 'waiting')
if not cur[1] then return {'missing', ''} end
if not LIVE[cur[1]] then return {'terminal', cur[1]} end
if cur[1] ~= 'Suspended' then return {'conflict', cur[1]} end
redis.call('HSET', k.inst, 'status', 'Running', 'updated', fmt(now_us()))
alive(k)
if cur[2] and not cur[4] then
  redis.call('HDEL', k.inst, 'park', 'parkvalue')
  return {'release', cur[1], cur[2], cur[3] or ''}
end
return {'ok', cur[1]}
"""

# ARGV: run, task_id, kind ('suspend'|'event'), park json, event name, default json
#       ('' for none), '1' if the wait is the run's last step.
_PARK = """
local current, status = is_current(k.inst, ARGV[1])
if not current then return {'stale', status or ''} end
if ARGV[3] == 'suspend' then
  if status ~= 'Suspended' then return {'resumed', status} end
  redis.call('HSET', k.inst, 'park', ARGV[4])
  redis.call('HDEL', k.steps, ARGV[2], 't:' .. ARGV[2])
  return {'parked', status}
end
local buffered = pop_event(k.events, ARGV[5])
if buffered then
  history(k.hist, k.steps, ARGV[2], 'Completed', buffered)
  redis.call('HSET', k.steps, ARGV[2], 'done:' .. buffered)
  return {'event', buffered}
end
redis.call('HSET', k.inst, 'park', ARGV[4], 'waiting', ARGV[5], 'waittask', ARGV[2],
  'waitfinal', ARGV[7], 'updated', fmt(now_us()))
if ARGV[6] ~= '' then redis.call('HSET', k.inst, 'waitdefault', ARGV[6]) end
redis.call('HSET', k.steps, ARGV[2], 'parked')
return {'parked', status}
"""

# ARGV: id, event name, data json, retention_us.
_RAISE_EVENT = """
local cur = redis.call('HMGET', k.inst, 'status', 'waiting')
if not cur[1] then return {'missing', ''} end
if not LIVE[cur[1]] then return {'terminal', cur[1]} end
if cur[2] ~= ARGV[2] then
  push_event(k.events, ARGV[2], ARGV[3])
  return {'buffered', cur[1]}
end
-- First in, first out: an older buffered event of this name goes first.
local value = pop_event(k.events, ARGV[2])
if value then push_event(k.events, ARGV[2], ARGV[3]) else value = ARGV[3] end
return take_wait(k, ARGV[1], value, 'Completed', tonumber(ARGV[4]))
"""

# ARGV: id, run, wait task_id, retention_us, failure output.
_EVENT_TIMEOUT = """
local cur = redis.call('HMGET', k.inst, 'run', 'status', 'waittask', 'waitdefault')
if cur[1] ~= ARGV[2] or not LIVE[cur[2]] or cur[3] ~= ARGV[3] then return {'stale', cur[2] or ''} end
if not cur[4] then
  history(k.hist, k.steps, ARGV[3], 'Failed', ARGV[5])
  finish(k, ARGV[1], 'Failed', ARGV[5], tonumber(ARGV[4]))
  return {'failed', 'Failed'}
end
return take_wait(k, ARGV[1], cur[4], 'TimedOut', tonumber(ARGV[4]))
"""

# ARGV: run, park json, value json. Puts a release whose publish failed back, as a
# suspended run holding its value: resume publishes it again.
_REPARK = """
if not is_current(k.inst, ARGV[1]) then return 0 end
redis.call('HSET', k.inst, 'status', 'Suspended', 'park', ARGV[2], 'parkvalue', ARGV[3],
  'updated', fmt(now_us()))
return 1
"""

# ARGV: run, custom status json.
_SET_CUSTOM = """
if not is_current(k.inst, ARGV[1]) then return 0 end
redis.call('HSET', k.inst, 'custom', ARGV[2], 'updated', fmt(now_us()))
return 1
"""

# ARGV: run, new run, new input, task_id of the continue-as-new step, delay_us.
_CONTINUE = """
local cur = redis.call('HMGET', k.inst, 'run', 'status', 'fence', 'timeout')
if cur[1] ~= ARGV[1] or not LIVE[cur[2]] then return 0 end
local now = now_us()
local fence = math.max(tonumber(cur[3]) + 1, now)
redis.call('HSET', k.inst, 'run', ARGV[2], 'fence', fmt(fence), 'status', 'ContinuedAsNew',
  'input', ARGV[3], 'continuedby', ARGV[4], 'updated', fmt(now))
redis.call('HDEL', k.inst, unpack(PARK_FIELDS))
drain(k, now, ARGV[4])
redis.call('DEL', k.steps, k.hist)
-- Each run of an eternal orchestration has its own timeout, counted from its start.
if cur[4] then
  redis.call('HSET', k.inst, 'deadline', fmt(now + tonumber(ARGV[5]) + tonumber(cur[4])))
end
alive(k, tonumber(ARGV[5]))
return 1
"""

# ARGV: retention_us, output if lost, output if timed out. Fails a live run that has
# given no sign of life within its lease, or has passed its deadline (the timeout).
_REAP = """
local f = redis.call('HMGET', k.inst, 'status', 'deadline', 'park')
if not f[1] or not LIVE[f[1]] then
  redis.call('ZREM', k.alive, k.id)
  return 'gone'
end
local now = now_us()
local due = tonumber(redis.call('ZSCORE', k.alive, k.id) or '0')
if due > now then return 'alive' end
if f[2] and tonumber(f[2]) <= now then
  finish(k, k.id, 'Failed', ARGV[3], tonumber(ARGV[1]))
  return 'timed_out'
end
-- A suspended run, or one waiting for an event, is silent by design.
if f[1] == 'Suspended' or f[3] then
  alive(k)
  return 'parked'
end
finish(k, k.id, 'Failed', ARGV[2], tonumber(ARGV[1]))
return 'lost'
"""

# ARGV: run. The new run of a continue-as-new is published: it reads Running.
_CONTINUED = """
local cur = redis.call('HMGET', k.inst, 'run', 'status')
if cur[1] ~= ARGV[1] or cur[2] ~= 'ContinuedAsNew' then return 0 end
redis.call('HSET', k.inst, 'status', 'Running', 'updated', fmt(now_us()))
return 1
"""


@dataclass(frozen=True)
class ClaimResult:
    """What a claim found: our new run, or the run that kept the ID (and why).

    ``outcome`` is 'claimed', 'refused' (a live run holds the ID), 'existing' (the
    start answers with the run on record: same request ID, or use_existing) or
    'rejected' (a finished run is on record and the policy forbids a new one).
    """

    outcome: str
    status: RuntimeStatus
    run_id: str
    fence: int = 0

    @property
    def claimed(self) -> bool:
        """Return True if this start made a new run."""
        return self.outcome == "claimed"


@dataclass(frozen=True)
class StepGate:
    """The gate's verdict for one delivery of one step.

    ``outcome``: run, stale, done, busy, parked, suspended or continued.
    """

    outcome: str
    detail: str


@dataclass(frozen=True)
class Release:
    """What an event, timeout or resume did: ``outcome`` and, to publish, park and value."""

    outcome: str
    status: str
    park: str = ""
    value: str = ""


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


def _release(reply: list[Any]) -> Release:
    return Release(*(_text(v) for v in reply))


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
        scripts = {
            "claim": _CLAIM, "undo_claim": _UNDO_CLAIM, "begin_step": _BEGIN_STEP,
            "step_mark": _STEP_MARK, "end_run": _END_RUN, "terminate": _TERMINATE,
            "purge": _PURGE, "suspend": _SUSPEND, "resume": _RESUME, "park": _PARK,
            "raise_event": _RAISE_EVENT, "event_timeout": _EVENT_TIMEOUT, "repark": _REPARK,
            "set_custom": _SET_CUSTOM, "continue": _CONTINUE, "continued": _CONTINUED,
            "reap": _REAP,
        }
        self._scripts = {name: client.register_script(_PRELUDE + _KEYS + body)
                         for name, body in scripts.items()}

    def _run(self, script: str, instance_id: str, args: list[Any], client: Any = None) -> Any:
        return self._scripts[script](self._keys(instance_id), args, client=client)

    # -- keys -------------------------------------------------------------------
    def _shard_of(self, instance_id: str) -> str:
        return f"{self._prefix}:{{{zlib.crc32(instance_id.encode()) % SHARDS:x}}}"

    def _keys(self, instance_id: str) -> list[str]:
        # The order every script's _KEYS prelude expects.
        shard = self._shard_of(instance_id)
        return [
            f"{shard}:i:{instance_id}",
            f"{shard}:steps:{instance_id}",
            f"{shard}:created",
            f"{shard}:expiring",
            f"{shard}:prev:{instance_id}",
            f"{shard}:h:{instance_id}",
            f"{shard}:ev:{instance_id}",
            f"{shard}:alive",
            f"{shard}:drain:{instance_id}",
        ]

    def _shard_keys(self, name: str) -> list[str]:
        return [f"{self._prefix}:{{{n:x}}}:{name}" for n in range(SHARDS)]

    # -- claims -----------------------------------------------------------------
    @_unavailable
    def claim(
        self,
        instance_id: str,
        name: str,
        run_id: str,
        input_json: str,
        *,
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
        args = [instance_id, name, run_id, input_json, if_live, if_finished, request_id,
                self._retention_us, int(lease_s * 1_000_000), int(timeout_s * 1_000_000)]
        reply = [_text(v) for v in self._run("claim", instance_id, args)]
        if reply[0] == "claimed":
            return ClaimResult("claimed", RuntimeStatus.PENDING, run_id, int(reply[1]))
        return ClaimResult(reply[0], RuntimeStatus(reply[1]), reply[2])

    @_unavailable
    def undo_claim(self, instance_id: str, claim: ClaimResult) -> bool:
        """Give the ID back after a failed publish, restoring the record it replaced."""
        args = [instance_id, claim.run_id, self._retention_us]
        return bool(self._run("undo_claim", instance_id, args))

    # -- steps ------------------------------------------------------------------
    @_unavailable
    def begin_step(
        self, instance_id: str, run_id: str, task_id: str, token: str, lease_s: float, name: str = ""
    ) -> StepGate:
        """Decide whether this delivery of a step may run user code, and take its lease."""
        args = [run_id, task_id, token, int(lease_s * 1_000_000), self._retention_us, name]
        outcome, detail = (_text(v) for v in self._run("begin_step", instance_id, args))
        return StepGate(outcome, detail)

    @_unavailable
    def mark_step(
        self, instance_id: str, run_id: str, task_id: str, token: str, action: str, value: Any = ""
    ) -> bool:
        """Record a step's result ('done'), extend its lease ('renew') or drop it ('release')."""
        args = [run_id, task_id, token, action, value]
        return bool(self._run("step_mark", instance_id, args))

    @_unavailable
    def park(
        self,
        instance_id: str,
        run_id: str,
        task_id: str,
        park_json: str,
        *,
        event: str = "",
        default_json: str = "",
        final: bool = False,
    ) -> StepGate:
        """Park a delivery: for a suspended run (no event), or to wait for `event`.

        Returns 'parked', 'stale', 'resumed' (no longer suspended: run the step) or
        'event' with a buffered event's JSON (the wait is over at once).
        """
        kind = "event" if event else "suspend"
        args = [run_id, task_id, kind, park_json, event, default_json, "1" if final else ""]
        outcome, detail = (_text(v) for v in self._run("park", instance_id, args))
        return StepGate(outcome, detail)

    # -- endings ----------------------------------------------------------------
    @_unavailable
    def end_run(
        self, instance_id: str, run_id: str, status: RuntimeStatus, output: str, task_id: str = ""
    ) -> bool:
        """Move the run to a terminal status if it is still the current, live run."""
        args = [instance_id, run_id, status.value, output, self._retention_us, task_id]
        return bool(self._run("end_run", instance_id, args))

    @_unavailable
    def terminate(self, instance_id: str, reason_json: str) -> tuple[str, str]:
        """Terminate whatever run is live; returns (outcome, status it found)."""
        reply = self._run("terminate", instance_id, [instance_id, reason_json, self._retention_us])
        return _text(reply[0]), _text(reply[1])

    @_unavailable
    def purge(self, instance_id: str) -> tuple[str, str]:
        """Delete a terminal record; returns (outcome, status it found)."""
        reply = self._run("purge", instance_id, [instance_id])
        return _text(reply[0]), _text(reply[1])

    @_unavailable
    def purge_many(self, instance_ids: Iterable[str]) -> int:
        """Delete several terminal records in one round trip; return how many went."""
        pipe = self._redis.pipeline(transaction=False)
        for instance_id in instance_ids:
            self._run("purge", instance_id, [instance_id], client=pipe)
        return sum(_text(reply[0]) == "ok" for reply in pipe.execute())

    # -- suspend, resume, events --------------------------------------------------
    @_unavailable
    def suspend(self, instance_id: str) -> tuple[str, str]:
        """Suspend the live run; returns (outcome, status it found)."""
        reply = self._run("suspend", instance_id, [])
        return _text(reply[0]), _text(reply[1])

    @_unavailable
    def resume(self, instance_id: str) -> Release:
        """Resume a suspended run; a parked delivery comes back to be published."""
        return _release(self._run("resume", instance_id, []))

    @_unavailable
    def raise_event(self, instance_id: str, name: str, data_json: str) -> Release:
        """Hand an event to the run waiting for it, or buffer it in order."""
        args = [instance_id, name, data_json, self._retention_us]
        return _release(self._run("raise_event", instance_id, args))

    @_unavailable
    def event_timeout(self, instance_id: str, run_id: str, task_id: str, failure_json: str) -> Release:
        """End a wait that is still waiting: fail the run, or hand it its default."""
        args = [instance_id, run_id, task_id, self._retention_us, failure_json]
        return _release(self._run("event_timeout", instance_id, args))

    @_unavailable
    def repark(self, instance_id: str, run_id: str, park_json: str, value_json: str) -> bool:
        """Keep a release whose publish failed: the run waits, Suspended, for resume."""
        return bool(self._run("repark", instance_id, [run_id, park_json, value_json]))

    # -- inside a run -----------------------------------------------------------
    @_unavailable
    def set_custom_status(self, instance_id: str, run_id: str, value_json: str) -> bool:
        """Set the run's custom status if it is still the current, live run."""
        return bool(self._run("set_custom", instance_id, [run_id, value_json]))

    @_unavailable
    def continue_as_new(self, instance_id: str, run_id: str, new_run_id: str, input_json: str,
                        task_id: str, delay_s: float = 0.0) -> bool:
        """Move the ID from the current run to a new one (ContinuedAsNew), never freeing it."""
        args = [run_id, new_run_id, input_json, task_id, int(delay_s * 1_000_000)]
        return bool(self._run("continue", instance_id, args))

    @_unavailable
    def continued(self, instance_id: str, new_run_id: str) -> bool:
        """Mark a continued run as published: ContinuedAsNew becomes Running."""
        return bool(self._run("continued", instance_id, [new_run_id]))

    # -- recovery ---------------------------------------------------------------
    @_unavailable
    def due(self, limit: int) -> list[str]:
        """Return up to `limit` live instances per shard whose sign of life is overdue."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.time()  # Redis' clock, the one every score was written with
        for key in self._shard_keys("alive"):
            pipe.zrange(key, 0, limit - 1, withscores=True)
        (seconds, micros), *shards = pipe.execute()
        now_us = seconds * 1_000_000 + micros
        return [_text(m) for rows in shards for m, score in rows if score <= now_us]

    @_unavailable
    def reap(self, instance_ids: Iterable[str], lost_json: str, timed_out_json: str) -> list[str]:
        """Fail each overdue run (lost or timed out), one script each, in one round trip.

        Returns each instance's outcome: lost, timed_out, parked, alive or gone.
        """
        pipe = self._redis.pipeline(transaction=False)
        for instance_id in instance_ids:
            self._run("reap", instance_id, [self._retention_us, lost_json, timed_out_json], client=pipe)
        return [_text(outcome) for outcome in pipe.execute()]

    # -- reads ------------------------------------------------------------------
    def read(self, instance_id: str) -> dict[str, str] | None:
        """Return the record's fields, or None when there is no record."""
        return self.read_many([instance_id])[0]

    @_unavailable
    def read_many(self, instance_ids: Iterable[str]) -> list[dict[str, str] | None]:
        """Return the records of several instances in one round trip."""
        pipe = self._redis.pipeline(transaction=False)
        for instance_id in instance_ids:
            pipe.hgetall(self._keys(instance_id)[0])
        rows = pipe.execute()
        return [{_text(k): _text(v) for k, v in row.items()} or None for row in rows]

    @_unavailable
    def read_with_history(self, instance_id: str) -> tuple[dict[str, str] | None, list[dict[str, str]]]:
        """Return the record and its run's step history (oldest first), in one round trip."""
        keys = self._keys(instance_id)
        pipe = self._redis.pipeline(transaction=False)
        pipe.hgetall(keys[0])
        pipe.lrange(keys[5], 0, -1)
        row, history = pipe.execute()
        record = {_text(k): _text(v) for k, v in row.items()} or None
        return record, [json.loads(_text(entry)) for entry in history]

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
        return self._redis.register_script(_HOLD_BUFFER)

    @functools.cached_property
    def _release_buffer(self) -> Any:
        return self._redis.register_script(_RELEASE_BUFFER)

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


    # -- metrics: live runs by status, for a scrape ---------------------------------
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
        for key in self._shard_keys("alive"):
            pipe.zcard(key)
            pipe.zrandmember(key, per_shard)
        replies = pipe.execute()
        shards = [(int(total), [_text(m) for m in members or ()])
                  for total, members in zip(replies[::2], replies[1::2], strict=True)]
        for _, members in shards:
            for instance_id in members:
                pipe.hget(self._keys(instance_id)[0], "status")
        statuses = iter(pipe.execute())
        counts: dict[str, float] = {}
        for total, members in shards:
            seen = [_text(s) for s in (next(statuses) for _ in members) if s is not None]
            for status in seen:
                counts[status] = counts.get(status, 0.0) + total / len(seen)
        return counts


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
