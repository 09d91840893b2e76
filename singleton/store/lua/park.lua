-- park: keep a delivery in the record instead of running it: for a suspended run
-- (resume publishes it again), or to wait for an event (raise_event publishes the
-- rest of its chain).
-- KEYS: the instance's keys (prelude.lua); uses inst, steps, hist, events, parked (and,
--   when a noted timeout fails the run: expiring, alive, drain, out, outbox).
-- ARGV: 1 run_id, 2 task_id, 3 kind ('suspend' or 'event'), 4 park (JSON: what to
--   publish later), 5 event name, 6 default (JSON, '' for none), 7 final ('1' if the
--   wait is the run's last step), 8 retention_us.
-- Returns {verdict, detail}: parked, stale, resumed (ask the gate again: no longer
--   suspended, or the step is done, waiting or held by a delivery) or event (detail: a
--   buffered event's JSON, or the default of a timeout that fired before the wait
--   parked; the wait is over at once).
local run_id = ARGV[1]
local task_id = ARGV[2]
local kind = ARGV[3]
local park = ARGV[4]
local event = ARGV[5]
local default = ARGV[6]
local final = ARGV[7]
local retention_us = tonumber(ARGV[8])

local current, status = is_current(run_id)
if not current then return {'stale', status or ''} end
if kind == 'suspend' then
  local held = status == 'Suspended' or redis.call('HEXISTS', k.inst, 'suspendnext') == 1
  if not held then return {'resumed', status} end
  -- Each delivery parks under its own task id (a group parks every member). A step
  -- that is done, waiting or held by a live delivery keeps its marker and is not
  -- parked: a redelivery must still find it (the gate decides). A lease that ran out,
  -- or a step the reconciler sent again, is this delivery's: its marker goes, so the
  -- reconciler does not send a parked step again.
  local step = redis.call('HGET', k.steps, task_id)
  if step then
    if string.sub(step, 1, 5) == 'done:' or step == 'parked'
        or (string.sub(step, 1, 11) ~= 'run:resent:' and lease_end(step) > now_us()) then
      return {'resumed', status}
    end
    redis.call('HDEL', k.steps, task_id, 't:' .. task_id)
  end
  redis.call('HSET', k.parked, task_id, park)
  return {'parked', status}
end
local buffered = pop_event(event)
if buffered then
  history(task_id, 'Completed', buffered)
  redis.call('HSET', k.steps, task_id, 'done:' .. buffered)
  return {'event', buffered}
end
-- Its timeout fired before it parked (event_timeout.lua noted the failure to apply).
local timed_out = redis.call('HGET', k.steps, 'timeout:' .. task_id)
if timed_out then
  redis.call('HDEL', k.steps, 'timeout:' .. task_id)
  if default ~= '' then
    history(task_id, 'TimedOut', default)
    redis.call('HSET', k.steps, task_id, 'done:' .. default)
    return {'event', default}
  end
  history(task_id, 'Failed', timed_out)
  finish('Failed', timed_out, retention_us)
  return {'stale', 'Failed'}
end
redis.call('HSET', k.inst, 'park', park, 'waiting', event, 'waittask', task_id,
  'waitfinal', final, 'updated', fmt(now_us()))
if default ~= '' then redis.call('HSET', k.inst, 'waitdefault', default) end
redis.call('HSET', k.steps, task_id, 'parked')
return {'parked', status}
