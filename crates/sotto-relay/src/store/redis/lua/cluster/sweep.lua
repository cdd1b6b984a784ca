-- MailboxStore::sweep_expired on a Cluster, one mailbox's step: deletes
-- up to ARGV[4] envelopes of mailbox ARGV[2] whose expiry hour is at most
-- ARGV[3], oldest expiry first. Answers {envelopes, bytes, 1 if more such
-- envelopes are left, freed envelopes, freed bytes}. Runs when Redis is
-- out of memory, as deleting is what frees it.

local m = ARGV[2]
local expiry = mkey(m, 'expiry')
local ids = redis.call('ZRANGEBYSCORE', expiry, '-inf', ARGV[3], 'LIMIT', 0, ARGV[4])
local envelopes, bytes = 0, 0
for _, id in ipairs(ids) do
  local freed = remove_envelope(m, id)
  if freed then
    envelopes = envelopes + 1
    bytes = bytes + freed
  else
    redis.call('ZREM', expiry, id)
  end
end
local more = 0
if #redis.call('ZRANGEBYSCORE', expiry, '-inf', ARGV[3], 'LIMIT', 0, 1) > 0 then
  more = 1
end
local freed = freed_so_far(m)
return {envelopes, string.format('%d', bytes), more, freed[1], freed[2]}
