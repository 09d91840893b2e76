-- end_run: move the run to a terminal status if it is still the current, live run.
-- KEYS: the instance's keys (prelude.lua); uses inst, steps, expiring, hist, events,
--   alive, drain.
-- ARGV: 1 run_id, 2 status (terminal), 3 output (JSON), 4 retention_us, 5 task_id of the
--   step that ended the run ('' if none: its history entry is written with the ending).
-- Returns 1 when the run ended here, 0 when it was not the current, live run.
local run_id = ARGV[1]
local status = ARGV[2]
local output = ARGV[3]
local retention_us = tonumber(ARGV[4])
local task_id = ARGV[5]

if not is_current(run_id) then return 0 end
if task_id ~= '' then history(task_id, status, output) end
finish(status, output, retention_us, task_id)
return 1
