-- step_mark: what a delivery holding a step's lease does with it: record the step's
-- result (done), extend the lease (renew) or drop it (release).
-- KEYS: the instance's keys (prelude.lua); uses inst, steps, hist, alive, drain.
-- ARGV: 1 run_id, 2 task_id, 3 token (the delivery's), 4 action ('done', 'renew' or
--   'release'), 5 lease_us (renew: the new lease), 6 result (done: the step's JSON result).
-- Returns 1 when the delivery held the lease of the current run's step, else 0.
local run_id = ARGV[1]
local task_id = ARGV[2]
local token = ARGV[3]
local action = ARGV[4]
local lease_us = tonumber(ARGV[5]) or 0
local result = ARGV[6]

local mine = 'run:' .. token .. ':'
local current, _, cur = is_current(run_id)
local lease = {cur[3], cur[4]}  -- what alive() reads
if not current then
  -- A step of an ended run: keep renewing its draining lease, or drop it once it ends.
  local draining_step = redis.call('HGET', k.drain, task_id)
  if draining_step and string.sub(draining_step, 1, #mine) == mine then
    if action == 'renew' then
      redis.call('HSET', k.drain, task_id, mine .. fmt(now_us() + lease_us))
      redis.call('PEXPIRE', k.drain, math.floor(lease_us / 1000) + 1000)
    else
      redis.call('HDEL', k.drain, task_id)
    end
  end
  return 0
end
local got = redis.call('HMGET', k.steps, task_id, 't:' .. task_id)
local step = got[1]
if not step or string.sub(step, 1, #mine) ~= mine then return 0 end
if action == 'done' then
  history(task_id, 'Completed', result, got[2])
  -- The kept message stays until the next step starts: if this worker dies before
  -- it publishes the next step, a re-sent copy hands the result on (reap.lua).
  redis.call('HSET', k.steps, task_id, 'done:' .. result)
  alive(nil, lease)
elseif action == 'renew' then
  redis.call('HSET', k.steps, task_id, mine .. fmt(now_us() + lease_us))
  alive(nil, lease)
else
  -- Keep the start time: a failure recorded next still finds it for the history.
  redis.call('HDEL', k.steps, task_id, 'm:' .. task_id)
  alive(nil, lease)
end
return 1
