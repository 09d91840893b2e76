-- sent: clear an outbox entry once its message was published.
-- KEYS: the instance's keys (prelude.lua); uses out, outbox.
-- ARGV: 1 field (the entry's name), 2 message (what was published: an entry written
--   again since, with another message, stays; '' for an entry whose name is unique).
-- Returns 1 when cleared, 0 when the entry is gone or holds another message.
local field = ARGV[1]
local message = ARGV[2]

if message ~= '' and redis.call('HGET', k.out, field) ~= message then return 0 end
outbox_drop(field)
return 1
