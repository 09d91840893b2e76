-- reap: fail a live run that gave no sign of life within its lease (lost), or that
-- passed its deadline (timed out).
-- KEYS: the instance's keys (prelude.lua); uses inst, steps, expiring, hist, events,
--   alive, drain.
-- ARGV: 1 retention_us, 2 lost_output (JSON), 3 timed_out_output (JSON).
-- Returns the verdict: lost, timed_out, parked, alive or gone.
local retention_us = tonumber(ARGV[1])
local lost_output = ARGV[2]
local timed_out_output = ARGV[3]

local f = redis.call('HMGET', k.inst, 'status', 'deadline', 'park')
if not f[1] or not LIVE[f[1]] then
  redis.call('ZREM', k.alive, k.id)
  return 'gone'
end
local now = now_us()
local due = tonumber(redis.call('ZSCORE', k.alive, k.id) or '0')
if due > now then return 'alive' end
if f[2] and tonumber(f[2]) <= now then
  finish('Failed', timed_out_output, retention_us)
  return 'timed_out'
end
-- A suspended run, or one waiting for an event, is silent by design.
if f[1] == 'Suspended' or f[3] then
  alive()
  return 'parked'
end
finish('Failed', lost_output, retention_us)
return 'lost'
