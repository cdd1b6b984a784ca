-- MailboxStore::take_bundle_v2 for mailbox ARGV[2]: the signed prekey,
-- the oldest one-time prekey and the oldest one-time KEM prekey, both
-- removed in the same step (the last-resort KEM prekey if no one-time one
-- is left). Answers nil without a signed prekey, else {identity key,
-- signed prekey id, public key, signature, one-time prekey id ('' for
-- none), its public key, one-time prekeys left, '1' if the signed prekey
-- is signed for protocol v2 only, KEM prekey id ('' for none), its key
-- followed by its signature, one-time KEM prekeys left ('' without a
-- last-resort KEM prekey)}. A signed prekey signed for protocol v2 only
-- with no KEM prekey at all makes no bundle that verifies: nil, nothing
-- taken.

local m = ARGV[2]
local spk = redis.call('HMGET', mkey(m, 'spk'), 'identity', 'id', 'public', 'signature',
  'v2only')
if not spk[3] then
  return false
end
local kem, kem_keys = mkey(m, 'kem'), mkey(m, 'kem:keys')
if spk[5] == '1' and redis.call('ZCARD', kem) == 0
    and redis.call('EXISTS', mkey(m, 'kem:last')) == 0 then
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
local kem_id, kem_key = '', ''
popped = redis.call('ZPOPMIN', kem)
if popped[1] then
  kem_id = popped[1]
  kem_key = redis.call('HGET', kem_keys, kem_id) or ''
  redis.call('HDEL', kem_keys, kem_id)
else
  local last = redis.call('HMGET', mkey(m, 'kem:last'), 'id', 'key', 'signature')
  if last[1] then
    kem_id = last[1]
    kem_key = last[2] .. last[3]
  end
end
return {spk[1], spk[2], spk[3], spk[4], id, key, redis.call('ZCARD', opk), spk[5] or '0',
  kem_id, kem_key, kem_count(m)}
