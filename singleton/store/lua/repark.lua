-- repark: keep a release whose publish failed: the run waits, Suspended and holding
-- its value, until resume publishes it again.
-- KEYS: the instance's keys (prelude.lua); uses inst.
-- ARGV: 1 run_id, 2 park (JSON), 3 value (JSON).
-- Returns 1 when kept, 0 when the run is no longer the current, live run.
local run_id = ARGV[1]
local park = ARGV[2]
local value = ARGV[3]

if not is_current(run_id) then return 0 end
redis.call('HSET', k.inst, 'status', 'Suspended', 'park', park, 'parkvalue', value,
  'updated', fmt(now_us()))
return 1
