-- begin_step: the step gate. May this delivery of a step run user code? If so, take
-- the step's lease for it.
-- KEYS: the instance's keys (prelude.lua); uses inst, steps, alive, drain, out, outbox.
-- ARGV: 1 run_id, 2 task_id, 3 token (this delivery's), 4 lease_us, 5 retention_us,
--   6 task_name (for the history), 7 message (JSON: the delivery as the gate saw it,
--   kept so the reconciler can send the step again if its lease runs out), 8 parent
--   (the task id of the step before it, whose kept message this start makes useless).
-- Returns {verdict, detail}: run (and the run's fence), stale, done (detail: the JSON
--   result), busy (detail: µs until the lease ends), parked, suspended or continued
--   (detail: the new run). A busy or done verdict is a sign of life of the run.
local run_id = ARGV[1]
local task_id = ARGV[2]
local token = ARGV[3]
local lease_us = tonumber(ARGV[4])
local retention_us = tonumber(ARGV[5])
local task_name = ARGV[6]
local message = ARGV[7]
local parent = ARGV[8]

local cur = redis.call('HMGET', k.inst, 'run', 'status', 'continuedby', 'fence', 'suspendnext', 'lease',
  'deadline')
local lease = {cur[6], cur[7]}  -- what alive() reads
if cur[1] ~= run_id or not LIVE[cur[2]] then
  -- The continue-as-new step that made the current run, redelivered before it
  -- confirmed the new run's publish: it may publish again.
  if cur[3] == task_id and cur[2] == 'ContinuedAsNew' then return {'continued', cur[1]} end
  return {'stale', cur[2] or ''}
end
-- A step of the run is here, so its first message was published.
outbox_drop('start')
local now = now_us()
-- The step's own marker first: a redelivery of a step that is done, waiting or still
-- running is recognised whatever the run's status, a suspend included.
local step = redis.call('HGET', k.steps, task_id)
if step then
  if string.sub(step, 1, 5) == 'done:' then
    alive(nil, lease)
    return {'done', string.sub(step, 6)}
  end
  if step == 'parked' then return {'parked', cur[2]} end
  -- A step the reconciler sent again ("run:resent:<until>") is free for any delivery.
  local lease_until = lease_end(step)
  if lease_until > now and string.sub(step, 1, 11) ~= 'run:resent:' then
    alive(nil, lease)
    return {'busy', fmt(lease_until - now)}
  end
end
-- Suspended, or continued as new under a suspend that holds for the new run.
if cur[2] == 'Suspended' or cur[5] then return {'suspended', cur[2]} end
local wait = draining(now)
-- A step of an ended run still executes: look again in a second (or when its lease ends).
if wait > 0 then
  alive(nil, lease)
  return {'busy', fmt(math.min(wait, 1000000))}
end
local marker, began = 'run:' .. token .. ':' .. fmt(now + lease_us), fmt(now) .. '|' .. task_name
if message ~= '' then
  redis.call('HSET', k.steps, task_id, marker, 't:' .. task_id, began, 'm:' .. task_id, message)
else
  redis.call('HSET', k.steps, task_id, marker, 't:' .. task_id, began)
end
-- A delivery a busy wait re-published names the step itself as its parent (Celery's
-- parent is the task that published it): the message just kept stays.
if parent ~= '' and parent ~= task_id then redis.call('HDEL', k.steps, 'm:' .. parent) end
redis.call('PEXPIRE', k.steps, math.floor(retention_us / 1000))
alive(nil, lease)
if cur[2] ~= 'Running' then
  redis.call('HSET', k.inst, 'status', 'Running', 'updated', fmt(now))
else
  redis.call('HSET', k.inst, 'updated', fmt(now))
end
return {'run', cur[2], cur[4] or '0'}
