-- tick: a beat tick's bookkeeping, each tick (task id) counted at most once per outcome.
-- 'begin' notes a delivery against the tick's schedule slot; 'count' counts how it ended.
-- KEYS: the instance's keys (prelude.lua); uses ticks.
-- ARGV: 1 op ('begin' or 'count'), 2 token (the tick's task id), 3 outcome (count: how
--   the tick ended; begin: what a duplicate counts as), 4 slot (begin: the schedule's
--   name, '' for none), 5 due (begin: the slot's due time in µs), 6 retention_ms,
--   7 memory (how many recent ticks' outcomes are kept).
-- The ticks hash holds the counts by outcome, 'slot:<schedule>' = the latest due time
-- a tick took, 't:<token>' = the outcomes a recent tick counted (space-separated, ''
-- while undecided) and ':recent' = those tokens, oldest first (JSON).
-- begin returns {'new', ''}, {'seen', outcomes counted so far} (a redelivery or a retry)
-- or {'duplicate', due time taken} (a later or equal slot was taken; counted as outcome).
-- count returns 1 when counted, 0 when the tick had counted this outcome already.
local op = ARGV[1]
local token = ARGV[2]
local outcome = ARGV[3]
local slot = ARGV[4]
local due_us = ARGV[5]
local retention_ms = ARGV[6]
local memory = tonumber(ARGV[7])

local field = 't:' .. token
local seen = redis.call('HGET', k.ticks, field)

local function remember(outcomes)
  if not seen then
    local raw = redis.call('HGET', k.ticks, ':recent')
    local recent = raw and cjson.decode(raw) or {}
    table.insert(recent, token)
    while #recent > memory do redis.call('HDEL', k.ticks, 't:' .. table.remove(recent, 1)) end
    redis.call('HSET', k.ticks, ':recent', cjson.encode(recent))
  end
  redis.call('HSET', k.ticks, field, outcomes)
  redis.call('PEXPIRE', k.ticks, retention_ms)
end

local function count()
  redis.call('HINCRBY', k.ticks, outcome, 1)
  remember(seen and seen ~= '' and (seen .. ' ' .. outcome) or outcome)
end

if op == 'count' then
  if seen and string.find(' ' .. seen .. ' ', ' ' .. outcome .. ' ', 1, true) then return 0 end
  count()
  return 1
end
if seen then return {'seen', seen} end
if slot ~= '' then
  local taken = redis.call('HGET', k.ticks, 'slot:' .. slot)
  if taken and tonumber(due_us) <= tonumber(taken) then
    count()
    return {'duplicate', taken}
  end
  redis.call('HSET', k.ticks, 'slot:' .. slot, due_us)
end
remember('')
return {'new', ''}
