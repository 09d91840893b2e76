-- repark: keep a release whose publish failed: the run waits, Suspended and holding
-- it, until resume publishes it again.
-- KEYS: the instance's keys (prelude.lua); uses inst, parked.
-- ARGV: 1 run_id, 2 park (JSON), 3 value (JSON), 4 task_id (of a parked delivery;
--   '' for the rest of a chain, kept with its value).
-- Returns 1 when kept, 0 when the run is no longer the current, live run.
local run_id = ARGV[1]
local park = ARGV[2]
local value = ARGV[3]
local task_id = ARGV[4]

if not is_current(run_id) then return 0 end
redis.call('HSET', k.inst, 'status', 'Suspended', 'updated', fmt(now_us()))
if task_id and task_id ~= '' then
  redis.call('HSET', k.parked, task_id, park)
else
  redis.call('HSET', k.inst, 'park', park, 'parkvalue', value)
end
return 1
