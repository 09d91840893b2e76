-- undo_claim: give the ID back after a failed publish, restoring the record it replaced.
-- KEYS: the instance's keys (prelude.lua); uses inst, created, expiring, prev, hist, alive,
--   out, outbox, prevh.
-- ARGV: 1 run_id (of the claim to undo), 2 retention_us.
-- Returns 1 when the claim was undone, 0 when the run is no longer that Pending claim.
local run_id = ARGV[1]
local retention_us = tonumber(ARGV[2])

local cur = redis.call('HMGET', k.inst, 'run', 'status', 'fence')
if cur[1] ~= run_id or cur[2] ~= 'Pending' then return 0 end
redis.call('DEL', k.inst, k.hist)
redis.call('ZREM', k.alive, k.id)
outbox_clear()
local previous = redis.call('DUMP', k.prev)
if not previous then
  redis.call('ZREM', k.created, k.id)
  return 1
end
redis.call('RESTORE', k.inst, 0, previous)
redis.call('DEL', k.prev)
-- The fence only grows: the restored record keeps the undone claim's.
redis.call('HSET', k.inst, 'fence', cur[3])
local prev = redis.call('HMGET', k.inst, 'created', 'updated')
redis.call('ZADD', k.created, prev[1], k.id)
local expires = tonumber(prev[2]) + retention_us
redis.call('ZADD', k.expiring, fmt(expires), k.id)
local ttl_ms = math.max(1, math.floor((expires - now_us()) / 1000))
redis.call('PEXPIRE', k.inst, ttl_ms)
if redis.call('EXISTS', k.prevh) == 1 then
  redis.call('RENAME', k.prevh, k.hist)
  redis.call('PEXPIRE', k.hist, ttl_ms)
end
return 1
