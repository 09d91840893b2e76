-- terminate: end whatever run is live as Terminated.
-- KEYS: the instance's keys (prelude.lua); uses inst, steps, expiring, hist, events,
--   alive, drain.
-- ARGV: 1 reason (JSON, the run's output), 2 retention_us.
-- Returns {verdict, status found}: ok, missing or terminal.
local reason = ARGV[1]
local retention_us = tonumber(ARGV[2])

local status = redis.call('HGET', k.inst, 'status')
if not status then return {'missing', ''} end
if not LIVE[status] then return {'terminal', status} end
finish('Terminated', reason, retention_us)
return {'ok', status}
