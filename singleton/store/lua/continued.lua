-- continued: the new run of a continue-as-new is published: it reads Running, or
-- Suspended when a suspend was accepted while it continued.
-- KEYS: the instance's keys (prelude.lua); uses inst, out, outbox.
-- ARGV: 1 run_id (the new run).
-- Returns 1 when marked, else 0.
local run_id = ARGV[1]

local cur = redis.call('HMGET', k.inst, 'run', 'status', 'suspendnext')
if cur[1] ~= run_id or cur[2] ~= 'ContinuedAsNew' then return 0 end
local status = cur[3] and 'Suspended' or 'Running'
redis.call('HSET', k.inst, 'status', status, 'updated', fmt(now_us()))
redis.call('HDEL', k.inst, 'suspendnext')
outbox_drop('cont:' .. run_id)
return 1
