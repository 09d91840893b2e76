-- raise_event: hand an event to the run waiting for it, or buffer it in order.
-- KEYS: the instance's keys (prelude.lua); uses inst, steps, expiring, hist, events,
--   alive, drain.
-- ARGV: 1 event name, 2 data (JSON), 3 retention_us, 4 max_events (how many events the
--   instance may buffer).
-- Returns {verdict, status found[, park, value, outbox entry]}: buffered, release, held,
--   completed, full (nothing buffered: the instance holds max_events), missing or terminal.
local event = ARGV[1]
local data = ARGV[2]
local retention_us = tonumber(ARGV[3])
local max_events = tonumber(ARGV[4])

local cur = redis.call('HMGET', k.inst, 'status', 'waiting', 'buffered')
if not cur[1] then return {'missing', ''} end
if not LIVE[cur[1]] then return {'terminal', cur[1]} end
if cur[2] ~= event then
  if (tonumber(cur[3]) or 0) >= max_events then return {'full', cur[1]} end
  push_event(event, data)
  return {'buffered', cur[1]}
end
-- First in, first out: an older buffered event of this name goes first.
local value = pop_event(event)
if value then push_event(event, data) else value = data end
return take_wait(value, 'Completed', retention_us)
