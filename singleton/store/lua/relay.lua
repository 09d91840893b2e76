-- relay: hand the reconciler the instance's outbox entries whose time has come, and
-- put off the next attempt, so one entry is re-sent at most once per grace period.
-- KEYS: the instance's keys (prelude.lua); uses out, outbox.
-- ARGV: none.
-- Returns a flat list of field, message pairs (empty when nothing is due).
local due = tonumber(redis.call('ZSCORE', k.outbox, k.id))
local now = now_us()
if not due or due > now then return {} end
local entries = redis.call('HGETALL', k.out)
if #entries == 0 then
  redis.call('ZREM', k.outbox, k.id)
  return {}
end
local grace = OUTBOX_GRACE_US
if #entries == 2 and entries[1] == 'start' then grace = START_GRACE_US end
redis.call('ZADD', k.outbox, fmt(now + grace), k.id)
return entries
