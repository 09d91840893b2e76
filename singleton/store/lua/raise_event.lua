-- raise_event: hand an event to the run waiting for it, or buffer it in order.
-- KEYS: the instance's keys (prelude.lua); uses inst, steps, expiring, hist, events,
--   alive, drain.
-- ARGV: 1 event name, 2 data (JSON), 3 retention_us.
-- Returns {verdict, status found[, park, value]}: buffered, release, held, completed,
--   missing or terminal.
local event = ARGV[1]
local data = ARGV[2]
local retention_us = tonumber(ARGV[3])

local cur = redis.call('HMGET', k.inst, 'status', 'waiting')
if not cur[1] then return {'missing', ''} end
if not LIVE[cur[1]] then return {'terminal', cur[1]} end
if cur[2] ~= event then
  push_event(event, data)
  return {'buffered', cur[1]}
end
-- First in, first out: an older buffered event of this name goes first.
local value = pop_event(event)
if value then push_event(event, data) else value = data end
return take_wait(value, 'Completed', retention_us)
