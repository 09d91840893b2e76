-- Shared by every script of the store: loaded in front of each one (scripts.py).
--
-- KEYS: the instance's keys, always all of them and in this order (keys.py, Keys):
--   1 record, 2 steps, 3 created, 4 expiring, 5 prev, 6 history, 7 events, 8 alive,
--   9 drain, 10 ticks, 11 buffer, 12 out, 13 outbox, 14 prevh, 15 parked.
-- Scripts reach them through `k` and never index KEYS themselves. Keys after the 15th
-- are the script's own (claim.lua: the broker lists it pushes onto), in `k.lists`.
local k = {inst = KEYS[1], steps = KEYS[2], created = KEYS[3], expiring = KEYS[4],
  prev = KEYS[5], hist = KEYS[6], events = KEYS[7], alive = KEYS[8], drain = KEYS[9],
  ticks = KEYS[10], buffer = KEYS[11], out = KEYS[12], outbox = KEYS[13], prevh = KEYS[14],
  parked = KEYS[15], lists = {unpack(KEYS, 16)}}
-- The instance ID is what follows the shard's "}:i:" in the record's key; the key of
-- another record of the shard (same hash tag, so the same slot) is k.records .. its ID.
k.records = string.sub(KEYS[1], 1, string.find(KEYS[1], '}:i:', 1, true) + 3)
k.id = string.sub(KEYS[1], #k.records + 1)

-- The live statuses (singleton.status.LIVE_STATUSES; a test keeps the two equal).
local LIVE = {Pending = true, Running = true, Suspended = true, ContinuedAsNew = true}
local PARK_FIELDS = {'park', 'parkvalue', 'waiting', 'waittask', 'waitfinal', 'waitdefault',
  'suspendnext'}

-- The clock is read once per call: a script runs atomically, so its instants agree,
-- and each TIME would cost a command.
local clock
local function now_us()
  if not clock then
    local t = redis.call('TIME')
    clock = tonumber(t[1]) * 1000000 + tonumber(t[2])
  end
  return clock
end
-- Every number a script writes is a whole count (µs, ms, a fence): '%d' prints it
-- exactly, and costs far less than formatting it as a float.
local function fmt(n) return string.format('%d', n) end
-- Whether `run` is the current, live run; then its status, and the record's run,
-- status, lease and deadline (for alive(), which then needs no read of its own).
local function is_current(run)
  local cur = redis.call('HMGET', k.inst, 'run', 'status', 'lease', 'deadline')
  return cur[1] == run and LIVE[cur[2]] ~= nil, cur[2], cur
end
-- Append one step's history entry, from the start time its begin_step noted
-- (`began`, when the caller read it already).
local function history(task_id, outcome, result, began)
  began = began or redis.call('HGET', k.steps, 't:' .. task_id)
  if not began then return end
  local sep = string.find(began, '|', 1, true)
  redis.call('RPUSH', k.hist, cjson.encode({taskId = task_id, name = string.sub(began, sep + 1),
    start = string.sub(began, 1, sep - 1), ['end'] = fmt(now_us()), outcome = outcome,
    result = result}))
end
-- The time a step marker "run:<token>:<until>" holds its lease until (µs).
local function lease_end(marker) return tonumber(string.match(marker, ':(%d+)$')) end
-- A sign of life: the run may stay silent for its lease (plus `extra_us`) before the
-- reconciler fails it as lost, and never beyond its deadline (the run's timeout). A
-- running step's lease that ends sooner brings the reconciler sooner: if the step's
-- worker died, the reconciler sends the step again (reap.lua). `f` is the record's
-- {lease, deadline}, when the caller read them already.
local function alive(extra_us, f)
  f = f or redis.call('HMGET', k.inst, 'lease', 'deadline')
  local until_us = now_us() + (tonumber(f[1]) or 0) + (extra_us or 0)
  local steps = redis.call('HVALS', k.steps)
  for i = 1, #steps do
    if string.sub(steps[i], 1, 4) == 'run:' then
      local ends = lease_end(steps[i])
      if ends < until_us then until_us = ends end
    end
  end
  local deadline = tonumber(f[2])
  if deadline and deadline < until_us then until_us = deadline end
  redis.call('ZADD', k.alive, fmt(until_us), k.id)
end
-- Steps still executing when their run ends keep their leases in `drain`: no step of
-- a later run of the ID starts until they finish or their lease runs out, so two
-- runs of one ID never execute at once. `except_task` is the step ending the run.
local function drain(now, except_task)
  local steps = redis.call('HGETALL', k.steps)
  for i = 1, #steps, 2 do
    local task, marker = steps[i], steps[i + 1]
    -- (A step the reconciler sent again, "run:resent:...", is executing nowhere yet.)
    if task ~= except_task and string.sub(marker, 1, 4) == 'run:'
        and string.sub(marker, 1, 11) ~= 'run:resent:' then
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
local function draining(now)
  local entries = redis.call('HGETALL', k.drain)
  local longest = 0
  for i = 1, #entries, 2 do
    local left = tonumber(string.match(entries[i + 1], ':(%d+)$')) - now
    if left > longest then longest = left elseif left <= 0 then redis.call('HDEL', k.drain, entries[i]) end
  end
  return longest
end
-- The outbox: a message a script decided must be published stays here until its
-- publisher confirms it (sent.lua), or, for a run's first message, until the run's
-- first step arrives (begin_step.lua); the reconciler re-sends what is still here
-- once its grace is over (relay.lua), then at most once per OUTBOX_GRACE_US.
-- A first message is cleared only by its step's arrival, which a queue backlog can
-- delay: it gets a longer grace, so a busy queue is not fed duplicates.
local OUTBOX_GRACE_US = 5000000
local START_GRACE_US = 60000000
local function outbox_put(field, message, grace_us)
  redis.call('HSET', k.out, field, message)
  local due = now_us() + (grace_us or OUTBOX_GRACE_US)
  local scheduled = tonumber(redis.call('ZSCORE', k.outbox, k.id))
  if not scheduled or due < scheduled then redis.call('ZADD', k.outbox, fmt(due), k.id) end
end
local function outbox_drop(field)
  if redis.call('HDEL', k.out, field) == 1 and redis.call('EXISTS', k.out) == 0 then
    redis.call('ZREM', k.outbox, k.id)
  end
end
local function outbox_clear()
  redis.call('DEL', k.out)
  redis.call('ZREM', k.outbox, k.id)
end
local function finish(status, output, retention_us, except_task)
  local now = now_us()
  drain(now, except_task or '')
  redis.call('ZREM', k.alive, k.id)
  redis.call('HSET', k.inst, 'status', status, 'output', output, 'updated', fmt(now))
  redis.call('HDEL', k.inst, 'buffered', unpack(PARK_FIELDS))
  redis.call('PEXPIRE', k.inst, math.floor(retention_us / 1000))
  redis.call('PEXPIRE', k.hist, math.floor(retention_us / 1000))
  redis.call('ZADD', k.expiring, fmt(now + retention_us), k.id)
  -- The outbox goes too (outbox_clear), in the same DEL.
  redis.call('DEL', k.steps, k.events, k.parked, k.out)
  redis.call('ZREM', k.outbox, k.id)
end
-- Event buffers: one JSON array of raw JSON payloads per event name, oldest first;
-- the record's `buffered` counts them all.
local function pop_event(name)
  local raw = redis.call('HGET', k.events, name)
  if not raw then return nil end
  local queue = cjson.decode(raw)
  local first = table.remove(queue, 1)
  redis.call('HINCRBY', k.inst, 'buffered', -1)
  if #queue == 0 then redis.call('HDEL', k.events, name)
  else redis.call('HSET', k.events, name, cjson.encode(queue)) end
  return first
end
local function push_event(name, data)
  local raw = redis.call('HGET', k.events, name)
  local queue = raw and cjson.decode(raw) or {}
  table.insert(queue, data)
  redis.call('HINCRBY', k.inst, 'buffered', 1)
  redis.call('HSET', k.events, name, cjson.encode(queue))
end
-- Parked deliveries handed back to be published, through the outbox: the rest of a
-- chain (`park`, with its `value`; '' for none) and a suspend's parked `steps` (JSON
-- each), all in one entry; the reply names it, and the publisher clears it once the
-- broker took every one of them.
local function release(run, status, park, value, steps)
  local field = 'rel:' .. run .. ':' .. fmt(now_us())
  local held = {park = park, value = value}
  if steps and #steps > 0 then held.steps = steps end
  outbox_put(field, cjson.encode(held))
  local reply = {'release', status, park, value, field}
  for _, step in ipairs(steps or {}) do table.insert(reply, step) end
  return reply
end
-- Hand a waiting run its event (or its timeout default): the wait step is done with
-- `value`; the caller publishes the parked rest of the chain, unless the wait was the
-- last step (the run completes) or the run is suspended (resume publishes it later).
local function take_wait(value, outcome, retention_us)
  local w = redis.call('HMGET', k.inst, 'waittask', 'waitfinal', 'status', 'park', 'run')
  history(w[1], outcome, value)
  redis.call('HSET', k.steps, w[1], 'done:' .. value)
  redis.call('HDEL', k.inst, 'waiting', 'waittask', 'waitfinal', 'waitdefault')
  if w[2] == '1' then
    finish('Completed', value, retention_us)
    return {'completed', 'Completed'}
  end
  if w[3] == 'Suspended' then
    redis.call('HSET', k.inst, 'parkvalue', value)
    return {'held', w[3]}
  end
  redis.call('HDEL', k.inst, 'park', 'parkvalue')
  redis.call('HSET', k.inst, 'updated', fmt(now_us()))
  alive()
  return release(w[5], w[3], w[4], value)
end
