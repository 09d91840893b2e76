-- suspend: stop the live run from starting further steps until resume.
-- KEYS: the instance's keys (prelude.lua); uses inst.
-- ARGV: none.
-- Returns {verdict, status found}: ok, missing, terminal or conflict (already suspended).
local cur = redis.call('HMGET', k.inst, 'status', 'suspendnext')
local status = cur[1]
if not status then return {'missing', ''} end
if not LIVE[status] then return {'terminal', status} end
if status == 'Suspended' or cur[2] then return {'conflict', status} end
if status == 'ContinuedAsNew' then
  -- The new run's publish is not confirmed yet: it starts Suspended (continued.lua).
  redis.call('HSET', k.inst, 'suspendnext', '1', 'updated', fmt(now_us()))
  return {'ok', status}
end
redis.call('HSET', k.inst, 'status', 'Suspended', 'updated', fmt(now_us()))
return {'ok', status}
