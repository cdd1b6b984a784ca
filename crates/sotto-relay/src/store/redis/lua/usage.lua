-- MailboxStore::usage: {envelopes, bytes, highest id ('' when empty)} of
-- mailbox ARGV[2], read together.

local m = ARGV[2]
local last = redis.call('ZRANGE', mkey(m, 'queue'), -1, -1)
return {
  redis.call('ZCARD', mkey(m, 'queue')),
  redis.call('GET', mkey(m, 'bytes')) or '0',
  last[1] or '',
}
