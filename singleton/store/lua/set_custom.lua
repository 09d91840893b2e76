-- set_custom: set the run's custom status if it is still the current, live run.
-- KEYS: the instance's keys (prelude.lua); uses inst.
-- ARGV: 1 run_id, 2 value (JSON).
-- Returns 1 when set, else 0.
local run_id = ARGV[1]
local value = ARGV[2]

if not is_current(run_id) then return 0 end
redis.call('HSET', k.inst, 'custom', value, 'updated', fmt(now_us()))
return 1
