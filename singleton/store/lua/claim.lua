-- claim: take the ID for a new Pending run, as the start policies allow.
-- KEYS: the instance's keys (prelude.lua); uses inst, steps, created, expiring, prev,
--   hist, events, alive, out, outbox, prevh, parked; after them (k.lists), the broker
--   lists a claimed start pushes its first message onto (only where the broker is this
--   database: a start is then one round trip).
-- ARGV: 1 name, 2 run_id, 3 input (JSON), 4 if_live, 5 if_finished, 6 request_id ('' for
--   none), 7 retention_us, 8 lease_us, 9 timeout_us (0: none), 10 prev_ttl_ms (how long
--   the replaced record is kept for undo_claim), 11 terminated_output (JSON, the output
--   of a live run that terminate_existing ends), 12 message (JSON: the run's first
--   message, kept in the outbox until it is published; '' for none), 13 probe (the
--   number of starts a probe answers: a claim the policies allow answers 'retry' and
--   writes nothing, a refusal counts that many; '' or absent: claim), 14
--   pushes (how many lists follow the instance's keys; absent: none), then one message
--   per list as kombu would LPUSH it, then (channel, payload) pairs to PUBLISH (its
--   task-sent events).
-- Returns {'claimed', fence, name of the live run terminate_existing ended ('' if none)}
--   or {'refused'|'existing'|'rejected', status, run_id on record [, the run's still
--   unpublished first message, for 'existing']} or, for a probe the policies let
--   through, {'retry', status ('' for none), run_id on record}. A refusal also counts in the shard's
--   `refused` hash (per minute, kept two hours) for the dashboard's summary.
local name = ARGV[1]
local run_id = ARGV[2]
local input = ARGV[3]
local if_live = ARGV[4]
local if_finished = ARGV[5]
local request_id = ARGV[6]
local retention_us = tonumber(ARGV[7])
local lease_us = tonumber(ARGV[8])
local timeout_us = tonumber(ARGV[9])
local prev_ttl_ms = tonumber(ARGV[10])
local terminated_output = ARGV[11]
local message = ARGV[12]
local probe = tonumber(ARGV[13])
local pushes = tonumber(ARGV[14]) or 0
local sends = {unpack(ARGV, 15)}

-- An answer with the run on record; a repeated start also gets the run's first
-- message while it is still in the outbox, to publish it again (same task ids).
local function existing(status, run)
  if not LIVE[status] then return {'existing', status, run} end
  return {'existing', status, run, redis.call('HGET', k.out, 'start') or ''}
end

-- A start the ID's run keeps, counted per minute in the shard's `refused` hash (a
-- shard-wide key beside the records: same hash tag, same slot).
local function refused(verdict, status, run)
  local counts = string.sub(k.records, 1, -3) .. 'refused'
  redis.call('HINCRBY', counts, fmt(math.floor(now_us() / 60000000)), probe or 1)
  redis.call('PEXPIRE', counts, 7200000)
  return {verdict, status, run}
end

local cur = redis.call('HMGET', k.inst, 'status', 'run', 'fence', 'request', 'name')
local status = cur[1]
local ended = ''
if status then
  if request_id ~= '' and cur[4] == request_id then return existing(status, cur[2]) end
  if LIVE[status] then
    if if_live == 'use_existing' then return existing(status, cur[2]) end
    if if_live ~= 'terminate_existing' then return refused('refused', status, cur[2]) end
    if probe then return {'retry', status, cur[2]} end
    finish('Terminated', terminated_output, retention_us)
    ended = cur[5] or ''
  elseif if_finished == 'reject' or (if_finished == 'allow_failed_only' and status == 'Completed') then
    return refused('rejected', status, cur[2])
  end
end
-- A probe only asks whether the policies refuse: the caller then starts for real.
if probe then return {'retry', status or '', cur[2] or ''} end
local now = now_us()
local fence = math.max((tonumber(cur[3]) or 0) + 1, now)
if status then
  -- Keep the finished record server-side for a while, in case the publish fails.
  redis.call('RESTORE', k.prev, prev_ttl_ms, redis.call('DUMP', k.inst), 'REPLACE')
  redis.call('DEL', k.prevh)
  if redis.call('EXISTS', k.hist) == 1 then
    redis.call('RENAME', k.hist, k.prevh)
    redis.call('PEXPIRE', k.prevh, prev_ttl_ms)
  end
  redis.call('DEL', k.inst, k.steps, k.events, k.parked)
else
  redis.call('DEL', k.prev, k.prevh, k.steps, k.hist, k.events, k.parked)
end
-- A record that expired left its expiry entry behind: it must not sweep this run away.
redis.call('ZREM', k.expiring, k.id)
-- The outbox is empty here (a run's end clears it, and only a live run refills it),
-- so the entry's re-send time is set without comparing.
if message ~= '' then
  redis.call('HSET', k.out, 'start', message)
  redis.call('ZADD', k.outbox, fmt(now + START_GRACE_US), k.id)
end
local fields = {'name', name, 'run', run_id, 'fence', fmt(fence), 'status', 'Pending',
  'input', input, 'created', fmt(now), 'updated', fmt(now), 'lease', fmt(lease_us)}
local overdue = now + lease_us
if request_id ~= '' then
  table.insert(fields, 'request')
  table.insert(fields, request_id)
end
if timeout_us > 0 then
  local deadline = now + timeout_us
  for _, v in ipairs({'timeout', fmt(timeout_us), 'deadline', fmt(deadline)}) do table.insert(fields, v) end
  overdue = math.min(overdue, deadline)
end
redis.call('HSET', k.inst, unpack(fields))
redis.call('ZADD', k.alive, fmt(overdue), k.id)
redis.call('ZADD', k.created, fmt(now), k.id)
-- Sweep a few expired records out of the listing index, never a live one's entry.
-- Their records share this shard's hash tag, so they are in this script's slot.
local due = redis.call('ZRANGEBYSCORE', k.expiring, '-inf', fmt(now), 'LIMIT', 0, 4)
for _, gone in ipairs(due) do
  redis.call('ZREM', k.expiring, gone)
  if not LIVE[redis.call('HGET', k.records .. gone, 'status')] then
    redis.call('ZREM', k.created, gone)
  end
end
-- The first message reaches its queue with the claim, or neither happens.
for i = 1, pushes do redis.call('LPUSH', k.lists[i], sends[i]) end
for i = pushes + 1, #sends - 1, 2 do redis.call('PUBLISH', sends[i], sends[i + 1]) end
return {'claimed', fmt(fence), ended}
