-- release_buffer: free the instance's buffer slot if the token still holds it.
-- KEYS: the instance's keys (prelude.lua); uses buffer.
-- ARGV: 1 token.
-- Returns 1 when freed, else 0.
local token = ARGV[1]

if redis.call('GET', k.buffer) ~= token then return 0 end
redis.call('DEL', k.buffer)
return 1
