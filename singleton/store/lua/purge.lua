-- purge: delete a terminal record with its history and its index entries.
-- KEYS: the instance's keys (prelude.lua); uses inst, steps, created, expiring, hist,
--   events, alive, parked.
-- ARGV: none.
-- Returns {verdict, status found}: ok, missing or live (nothing deleted).
local status = redis.call('HGET', k.inst, 'status')
if status and LIVE[status] then return {'live', status} end
redis.call('DEL', k.inst, k.steps, k.hist, k.events, k.parked)
redis.call('ZREM', k.alive, k.id)
redis.call('ZREM', k.created, k.id)
redis.call('ZREM', k.expiring, k.id)
if not status then return {'missing', ''} end
return {'ok', status}
