-- resume: let a suspended run go on; a parked delivery that no longer waits for an
-- event is handed back to the caller to publish.
-- KEYS: the instance's keys (prelude.lua); uses inst, alive, out, outbox.
-- ARGV: none.
-- Returns {verdict, status found[, park, value, outbox entry]}: ok, release, missing, terminal or
--   conflict (not suspended).
local cur = redis.call('HMGET', k.inst, 'status', 'park', 'parkvalue', 'waiting', 'run')
if not cur[1] then return {'missing', ''} end
if not LIVE[cur[1]] then return {'terminal', cur[1]} end
if cur[1] ~= 'Suspended' then return {'conflict', cur[1]} end
redis.call('HSET', k.inst, 'status', 'Running', 'updated', fmt(now_us()))
alive()
if cur[2] and not cur[4] then
  redis.call('HDEL', k.inst, 'park', 'parkvalue')
  return release(cur[5], cur[1], cur[2], cur[3] or '')
end
return {'ok', cur[1]}
