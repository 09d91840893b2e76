-- suspend: stop the live run from starting further steps until resume.
-- KEYS: the instance's keys (prelude.lua); uses inst.
-- ARGV: none.
-- Returns {verdict, status found}: ok, missing, terminal or conflict (already suspended).
local status = redis.call('HGET', k.inst, 'status')
if not status then return {'missing', ''} end
if not LIVE[status] then return {'terminal', status} end
if status == 'Suspended' then return {'conflict', status} end
redis.call('HSET', k.inst, 'status', 'Suspended', 'updated', fmt(now_us()))
return {'ok', status}
