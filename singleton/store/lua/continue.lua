-- continue: move the ID from the current run to a new one (ContinuedAsNew) without
-- ever freeing it. A suspend of the current run holds for the new one: it starts
-- Suspended, its first step parked, until resume.
-- KEYS: the instance's keys (prelude.lua); uses inst, steps, hist, alive, drain, out,
--   outbox, parked.
-- ARGV: 1 run_id (current), 2 new_run_id, 3 new_input (JSON), 4 task_id (of the
--   continue-as-new step), 5 delay_us (before the new run's canvas is published).
-- Returns 1 when moved, 0 when run_id is not the current, live run.
local run_id = ARGV[1]
local new_run_id = ARGV[2]
local new_input = ARGV[3]
local task_id = ARGV[4]
local delay_us = tonumber(ARGV[5])

local cur = redis.call('HMGET', k.inst, 'run', 'status', 'fence', 'timeout')
if cur[1] ~= run_id or not LIVE[cur[2]] then return 0 end
local now = now_us()
local fence = math.max(tonumber(cur[3]) + 1, now)
redis.call('HSET', k.inst, 'run', new_run_id, 'fence', fmt(fence), 'status', 'ContinuedAsNew',
  'input', new_input, 'continuedby', task_id, 'updated', fmt(now))
redis.call('HDEL', k.inst, unpack(PARK_FIELDS))
if cur[2] == 'Suspended' then redis.call('HSET', k.inst, 'suspendnext', '1') end
drain(now, task_id)
redis.call('DEL', k.steps, k.hist, k.parked)
-- Each run of an eternal orchestration has its own timeout, counted from its start.
if cur[4] then
  redis.call('HSET', k.inst, 'deadline', fmt(now + delay_us + tonumber(cur[4])))
end
alive(delay_us)
-- The new run's canvas is published next; until `continued` confirms it, the outbox
-- says it is owed (and from when its countdown runs), for the reconciler to send.
outbox_clear()
outbox_put('cont:' .. new_run_id, cjson.encode({due = fmt(now + delay_us)}))
return 1
