-- resume: let a suspended run go on; every delivery that the suspend parked, and the
-- rest of a chain whose wait is over, are handed back to the caller to publish, all
-- kept in one outbox entry until the caller confirms them.
-- KEYS: the instance's keys (prelude.lua); uses inst, alive, out, outbox, parked.
-- ARGV: none.
-- Returns {verdict, status found[, park, value, outbox entry, parked delivery...]}: ok,
--   release (park and value: a chain to go on with, '' when none; then each parked
--   delivery's JSON), missing, terminal or conflict (not suspended).
local cur = redis.call('HMGET', k.inst, 'status', 'park', 'parkvalue', 'waiting', 'run',
  'suspendnext')
if not cur[1] then return {'missing', ''} end
if not LIVE[cur[1]] then return {'terminal', cur[1]} end
if cur[1] == 'ContinuedAsNew' and cur[6] then
  -- The new run's publish is not confirmed yet: it will start Running after all.
  redis.call('HDEL', k.inst, 'suspendnext')
  return {'ok', cur[1]}
end
if cur[1] ~= 'Suspended' then return {'conflict', cur[1]} end
redis.call('HSET', k.inst, 'status', 'Running', 'updated', fmt(now_us()))
alive()
local park, value = '', ''
if cur[2] and not cur[4] then
  redis.call('HDEL', k.inst, 'park', 'parkvalue')
  park, value = cur[2], cur[3] or ''
end
local parked = redis.call('HVALS', k.parked)
redis.call('DEL', k.parked)
if park == '' and #parked == 0 then return {'ok', cur[1]} end
return release(cur[5], cur[1], park, value, parked)
