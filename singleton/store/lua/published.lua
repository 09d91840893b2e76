-- published: keep the message of a step as it is published (a group's member, or a
-- countdown message), until the step reaches its gate: the reconciler sends a kept
-- message again once its wait is over (see singleton.recovery.keep_published).
-- KEYS: the instance's keys (prelude.lua); uses inst, steps, alive.
-- ARGV: 1 run_id, 2 task_id, 3 message (JSON: the step's signature, as its gate
--   would keep it), 4 wait_us (how long it may take to reach its gate, its countdown
--   included, before it is sent again), 5 retention_us, 6 replace ('1': a timer's
--   next hop, kept over its last one under the same task id; '' otherwise).
-- Returns 1 when kept, 0 when the run is not the current, live one or the step has a
--   marker already (published again: its gates answer for it) and replace is ''.
local run_id = ARGV[1]
local task_id = ARGV[2]
local message = ARGV[3]
local wait_us = tonumber(ARGV[4])
local retention_us = tonumber(ARGV[5])
local replace = ARGV[6]

local current, _, cur = is_current(run_id)
if not current then return 0 end
if replace ~= '1' and redis.call('HEXISTS', k.steps, task_id) == 1 then return 0 end
-- Marked as a step the reconciler sent: free for any delivery, executing nowhere yet
-- (no drain waits for it), and sent again when its wait is over (reap.lua).
redis.call('HSET', k.steps, task_id, 'run:resent:' .. fmt(now_us() + wait_us), 'm:' .. task_id, message)
redis.call('PEXPIRE', k.steps, math.floor(retention_us / 1000))
-- A step being published is a sign of life; the reconciler looks again when its
-- wait ends.
alive(nil, {cur[3], cur[4]})
return 1
