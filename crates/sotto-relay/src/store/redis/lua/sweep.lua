-- MailboxStore::sweep_expired: deletes up to ARGV[3] envelopes whose
-- expiry hour is at most ARGV[2], oldest expiry first (then lowest id),
-- from the store-wide expiry index. Answers {envelopes, bytes freed}.
-- Runs when Redis is out of memory, as deleting is what frees it.

local items = redis.call('ZRANGEBYSCORE', gkey('expiry'), '-inf', ARGV[2], 'LIMIT', 0, ARGV[3])
local envelopes, bytes = 0, 0
for _, item in ipairs(items) do
  local id, m = string.match(item, '^(%d+):(%x+)$')
  local freed = nil
  if id then
    freed = remove_envelope(m, id)
  end
  if freed then
    envelopes = envelopes + 1
    bytes = bytes + freed
  else
    -- Names nothing queued: not counted, just dropped.
    redis.call('ZREM', gkey('expiry'), item)
  end
end
return {envelopes, bytes}
