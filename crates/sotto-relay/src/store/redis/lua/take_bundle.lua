-- MailboxStore::take_bundle for mailbox ARGV[2]: the signed prekey and
-- the oldest one-time prekey, which is removed in the same step. Answers
-- nil without a signed prekey, or with one signed for protocol v2 only
-- (no v1 bundle of it verifies; nothing is taken), else {identity key,
-- signed prekey id, public key, signature, one-time prekey id ('' for
-- none), its public key, one-time prekeys left}.

local m = ARGV[2]
local spk = redis.call('HMGET', mkey(m, 'spk'), 'identity', 'id', 'public', 'signature',
  'v2only')
if not spk[3] or spk[5] == '1' then
  return false
end
local opk, opk_keys = mkey(m, 'opk'), mkey(m, 'opk:keys')
local popped = redis.call('ZPOPMIN', opk)
local id, key = '', ''
if popped[1] then
  id = popped[1]
  key = redis.call('HGET', opk_keys, id) or ''
  redis.call('HDEL', opk_keys, id)
end
return {spk[1], spk[2], spk[3], spk[4], id, key, redis.call('ZCARD', opk)}
