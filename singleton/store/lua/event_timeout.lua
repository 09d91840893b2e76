-- event_timeout: end a wait that is still waiting: fail the run, or hand it its default.
-- KEYS: the instance's keys (prelude.lua); uses inst, steps, expiring, hist, events,
--   alive, drain.
-- ARGV: 1 run_id, 2 task_id (of the wait step), 3 retention_us, 4 failure (JSON, the
--   run's output when the wait has no default), 5 timer_id (the firing timer's task
--   id, whose kept message goes; '' for none).
-- Returns {verdict, status[, park, value, outbox entry]}: failed, release, held,
--   completed, noted (the wait step has not parked yet: it ends as it parks) or stale.
local run_id = ARGV[1]
local task_id = ARGV[2]
local retention_us = tonumber(ARGV[3])
local failure = ARGV[4]
local timer_id = ARGV[5]

-- The timer fired: its kept message (published.lua) is not sent again. A duplicate
-- delivery of it (the broker's redelivery, or the reconciler's) finds the wait over
-- and ends below as stale.
if timer_id ~= '' then redis.call('HDEL', k.steps, timer_id, 'm:' .. timer_id) end

local cur = redis.call('HMGET', k.inst, 'run', 'status', 'waittask', 'waitdefault')
if cur[1] ~= run_id or not LIVE[cur[2]] then return {'stale', cur[2] or ''} end
if cur[3] ~= task_id then
  -- The timer fired before its wait parked (or the wait is over): a wait still to
  -- park finds the verdict there (park.lua).
  local step = redis.call('HGET', k.steps, task_id)
  if step and string.sub(step, 1, 5) == 'done:' then return {'stale', cur[2]} end
  redis.call('HSET', k.steps, 'timeout:' .. task_id, failure)
  return {'noted', cur[2]}
end
if not cur[4] then
  history(task_id, 'Failed', failure)
  finish('Failed', failure, retention_us)
  return {'failed', 'Failed'}
end
return take_wait(cur[4], 'TimedOut', retention_us)
