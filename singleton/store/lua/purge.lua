-- purge: delete a terminal record with its history, its index entries and its beat
-- tick counts; by filter, only while the record still matches the filter.
-- KEYS: the instance's keys (prelude.lua); uses inst, steps, created, expiring, hist,
--   events, alive, ticks, out, outbox, parked.
-- ARGV: 1 created_from (µs, '' for none), 2 created_to (µs, '' for none),
--   3 statuses (space-separated, '' for any): the filter the record was listed by.
-- Returns {verdict, status found}: ok, missing, live or conflict (the record no longer
-- matches the filter: re-run since it was listed); nothing deleted but on ok/missing.
local created_from = tonumber(ARGV[1])
local created_to = tonumber(ARGV[2])
local statuses = ARGV[3]

local f = redis.call('HMGET', k.inst, 'status', 'created')
local status, created = f[1], tonumber(f[2])
if status and LIVE[status] then return {'live', status} end
if status then
  local wanted = statuses == '' or string.find(' ' .. statuses .. ' ', ' ' .. status .. ' ', 1, true)
  local early = created_from and (not created or created < created_from)
  local late = created_to and (not created or created > created_to)
  if not wanted or early or late then return {'conflict', status} end
end
redis.call('DEL', k.inst, k.steps, k.hist, k.events, k.ticks, k.parked)
redis.call('ZREM', k.alive, k.id)
redis.call('ZREM', k.created, k.id)
redis.call('ZREM', k.expiring, k.id)
outbox_clear()
if not status then return {'missing', ''} end
return {'ok', status}
