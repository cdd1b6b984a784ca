-- MailboxStore::publish_prekeys for mailbox ARGV[2]. ARGV: prefix,
-- mailbox, most one-time prekeys, '1' to delete the stored ones first,
-- '1' if a signed prekey follows, its identity key, id, public key and
-- signature, the access verifier ('' to keep the stored one), then pairs
-- of one-time prekey id and public key.
--
-- Answers {'too_many', would have} storing nothing, or {'ok', stored}.

local m = ARGV[2]
local max = tonumber(ARGV[3])
local replace = ARGV[4] == '1'
local spk = mkey(m, 'spk')
local opk, opk_keys = mkey(m, 'opk'), mkey(m, 'opk:keys')

-- Count first: a refused upload changes nothing.
local kept = 0
if not replace then
  kept = redis.call('ZCARD', opk)
end
local seen, new = {}, 0
for i = 11, #ARGV, 2 do
  local id = ARGV[i]
  if not seen[id] then
    seen[id] = true
    if replace or not redis.call('ZSCORE', opk, id) then
      new = new + 1
    end
  end
end
if kept + new > max then
  return {'too_many', kept + new}
end

if replace then
  redis.call('DEL', opk, opk_keys)
end
if ARGV[5] == '1' then
  redis.call('HSET', spk, 'identity', ARGV[6], 'id', ARGV[7], 'public', ARGV[8],
    'signature', ARGV[9])
end
-- Kept with the signed prekey: without one, nothing to keep it with.
if ARGV[10] ~= '' and redis.call('HEXISTS', spk, 'public') == 1 then
  redis.call('HSET', spk, 'verifier', ARGV[10])
end
-- `opk` orders the keys by upload order (the score); a replaced key
-- keeps its place.
for i = 11, #ARGV, 2 do
  if not redis.call('ZSCORE', opk, ARGV[i]) then
    redis.call('ZADD', opk, redis.call('INCR', mkey(m, 'opk:seq')), ARGV[i])
  end
  redis.call('HSET', opk_keys, ARGV[i], ARGV[i + 1])
end
return {'ok', redis.call('ZCARD', opk)}
