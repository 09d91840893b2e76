-- reap: look at a live run that is overdue: send again the steps whose lease ran out
-- with no completion (their worker died), else fail the run if it gave no sign of
-- life within its lease (lost) or passed its deadline (timed out). A kept event-timeout
-- timer (task id "timer:<wait step's task id>", singleton.durable.start_timer) is sent
-- again like a kept step, once due; it does not count as a step running.
-- KEYS: the instance's keys (prelude.lua); uses inst, steps, expiring, hist, events,
--   alive, drain.
-- ARGV: 1 retention_us, 2 lost_output (JSON), 3 timed_out_output (JSON), 4 resend_us
--   (how long a step sent again may take to start before it is sent once more).
-- Returns {verdict, messages...}: resent (with the JSON messages to publish again,
--   same task ids), lost, timed_out, parked, alive or gone.
local retention_us = tonumber(ARGV[1])
local lost_output = ARGV[2]
local timed_out_output = ARGV[3]
local resend_us = tonumber(ARGV[4])

local f = redis.call('HMGET', k.inst, 'status', 'deadline', 'park')
if not f[1] or not LIVE[f[1]] then
  redis.call('ZREM', k.alive, k.id)
  return {'gone'}
end
local now = now_us()
local due = tonumber(redis.call('ZSCORE', k.alive, k.id) or '0')
if due > now then return {'alive'} end
if f[2] and tonumber(f[2]) <= now then
  finish('Failed', timed_out_output, retention_us)
  return {'timed_out'}
end
-- Steps whose lease ran out: the delivery that held it is gone. The message kept at
-- gate time goes out again under the same task id; its gate (or a redelivery's)
-- takes the step over, and duplicates find it busy or done.
local resend, handed, running = {}, {}, false
local steps = redis.call('HGETALL', k.steps)
for i = 1, #steps, 2 do
  local task, marker = steps[i], steps[i + 1]
  local message = redis.call('HGET', k.steps, 'm:' .. task)
  if string.sub(marker, 1, 4) == 'run:' then
    if lease_end(marker) > now then
      -- A kept timer (its task id "timer:...") is no step running: a run whose
      -- wait is over and whose messages are gone is lost all the same.
      running = running or string.sub(task, 1, 6) ~= 'timer:'
    elseif message then
      redis.call('HSET', k.steps, task, 'run:resent:' .. fmt(now + resend_us))
      table.insert(resend, message)
    end
  elseif message and string.sub(marker, 1, 5) == 'done:' then
    table.insert(handed, {task, message})
  end
end
if #resend > 0 then
  alive()
  return {'resent', unpack(resend)}
end
if running then
  alive()
  return {'alive'}
end
-- Silent for its lease with nothing running: a step that succeeded but whose next
-- step never started (its worker died before publishing it) is sent once more, and
-- its gate hands the stored result on to the rest of its chain. Once only: the
-- message is dropped, and the next silent lease fails the run.
if #handed > 0 and f[1] ~= 'Suspended' and not f[3] then
  for i = 1, #handed do
    redis.call('HDEL', k.steps, 'm:' .. handed[i][1])
    handed[i] = handed[i][2]
  end
  alive()
  return {'resent', unpack(handed)}
end
-- A suspended run, or one waiting for an event, is silent by design.
if f[1] == 'Suspended' or f[3] then
  alive()
  return {'parked'}
end
finish('Failed', lost_output, retention_us)
return {'lost'}
