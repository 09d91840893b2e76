-- continued: the new run of a continue-as-new is published: it reads Running.
-- KEYS: the instance's keys (prelude.lua); uses inst, out, outbox.
-- ARGV: 1 run_id (the new run).
-- Returns 1 when marked, else 0.
local run_id = ARGV[1]

local cur = redis.call('HMGET', k.inst, 'run', 'status')
if cur[1] ~= run_id or cur[2] ~= 'ContinuedAsNew' then return 0 end
redis.call('HSET', k.inst, 'status', 'Running', 'updated', fmt(now_us()))
outbox_drop('cont:' .. run_id)
return 1
