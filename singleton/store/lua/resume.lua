-- resume: let a suspended run go on; every delivery that the suspend parked, and the
-- rest of a chain whose wait is over, are handed back to the caller to publish.
-- KEYS: the instance's keys (prelude.lua); uses inst, alive, parked.
-- ARGV: none.
-- Returns {verdict, status found[, park, value, parked delivery...]}: ok, release
--   (park and value: a chain to go on with, '' when none; then each parked delivery's
--   JSON), missing, terminal or conflict (not suspended).
local cur = redis.call('HMGET', k.inst, 'status', 'park', 'parkvalue', 'waiting', 'suspendnext')
if not cur[1] then return {'missing', ''} end
if not LIVE[cur[1]] then return {'terminal', cur[1]} end
if cur[1] == 'ContinuedAsNew' and cur[5] then
  -- The new run's publish is not confirmed yet: it will start Running after all.
  redis.call('HDEL', k.inst, 'suspendnext')
  return {'ok', cur[1]}
end
if cur[1] ~= 'Suspended' then return {'conflict', cur[1]} end
redis.call('HSET', k.inst, 'status', 'Running', 'updated', fmt(now_us()))
alive()
local reply = {'ok', cur[1], '', ''}
if cur[2] and not cur[4] then
  redis.call('HDEL', k.inst, 'park', 'parkvalue')
  reply = {'release', cur[1], cur[2], cur[3] or ''}
end
local parked = redis.call('HVALS', k.parked)
if #parked > 0 then
  redis.call('DEL', k.parked)
  reply[1] = 'release'
  for _, delivery in ipairs(parked) do table.insert(reply, delivery) end
end
return reply
