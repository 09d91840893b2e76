-- hold_buffer: take the instance's one buffer slot for a beat tick, or renew it when
-- that tick already holds it.
-- KEYS: the instance's keys (prelude.lua); uses buffer.
-- ARGV: 1 token (the buffered tick's), 2 ttl_ms.
-- Returns 1 when the token holds the slot, 0 when another token does.
local token = ARGV[1]
local ttl_ms = ARGV[2]

local cur = redis.call('GET', k.buffer)
if cur and cur ~= token then return 0 end
redis.call('SET', k.buffer, token, 'PX', ttl_ms)
return 1
