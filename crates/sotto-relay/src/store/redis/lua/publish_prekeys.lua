-- MailboxStore::publish_prekeys_with_kem for mailbox ARGV[2]. ARGV:
--  1 prefix, 2 mailbox, 3 most one-time prekeys, 4 '1' to delete the
--  stored ones first, 5 '1' if a signed prekey follows, 6..9 its identity
--  key, id, public key and signature, 10 the access verifier ('' to keep
--  the stored one), 11 '1' if the signed prekey is signed for protocol v2
--  only, 12 most one-time KEM prekeys, 13 '1' to delete the stored
--  one-time KEM prekeys first, 14 '1' if a last-resort KEM prekey follows,
--  15..17 its id, key and signature, 18 n, the number of one-time
--  prekeys, then n pairs of one-time prekey id and public key, then
--  triples of one-time KEM prekey id, key and signature.
--
-- Answers {'too_many', would have} or {'too_many_kem', would have}
-- storing nothing, or {'ok', stored, stored KEM ('' without a
-- last-resort KEM prekey)}.

local m = ARGV[2]
local max = tonumber(ARGV[3])
local replace = ARGV[4] == '1'
local max_kem = tonumber(ARGV[12])
local replace_kem = ARGV[13] == '1'
local first_opk = 19
local first_kem = first_opk + 2 * tonumber(ARGV[18])
local spk = mkey(m, 'spk')
local opk, opk_keys = mkey(m, 'opk'), mkey(m, 'opk:keys')
local kem, kem_keys = mkey(m, 'kem'), mkey(m, 'kem:keys')

-- How many keys of set `set` there would be: the ids at ARGV[from],
-- ARGV[from + step], ... below `to` added, after deleting the stored
-- ones if `wipe`.
local function would_have(set, wipe, from, to, step)
  local kept = 0
  if not wipe then
    kept = redis.call('ZCARD', set)
  end
  local seen, new = {}, 0
  for i = from, to, step do
    local id = ARGV[i]
    if not seen[id] then
      seen[id] = true
      if wipe or not redis.call('ZSCORE', set, id) then
        new = new + 1
      end
    end
  end
  return kept + new
end

-- Count first: a refused upload changes nothing.
local n = would_have(opk, replace, first_opk, first_kem - 1, 2)
if n > max then
  return {'too_many', n}
end
n = would_have(kem, replace_kem, first_kem, #ARGV, 3)
if n > max_kem then
  return {'too_many_kem', n}
end

if replace then
  redis.call('DEL', opk, opk_keys)
end
if replace_kem then
  redis.call('DEL', kem, kem_keys)
end
if ARGV[5] == '1' then
  redis.call('HSET', spk, 'identity', ARGV[6], 'id', ARGV[7], 'public', ARGV[8],
    'signature', ARGV[9], 'v2only', ARGV[11])
end
-- Kept with the signed prekey: without one, nothing to keep it with.
if ARGV[10] ~= '' and redis.call('HEXISTS', spk, 'public') == 1 then
  redis.call('HSET', spk, 'verifier', ARGV[10])
end
-- `opk` orders the keys by upload order (the score); a replaced key
-- keeps its place.
for i = first_opk, first_kem - 1, 2 do
  if not redis.call('ZSCORE', opk, ARGV[i]) then
    redis.call('ZADD', opk, redis.call('INCR', mkey(m, 'opk:seq')), ARGV[i])
  end
  redis.call('HSET', opk_keys, ARGV[i], ARGV[i + 1])
end
if ARGV[14] == '1' then
  redis.call('HSET', mkey(m, 'kem:last'), 'id', ARGV[15], 'key', ARGV[16],
    'signature', ARGV[17])
end
-- `kem` as `opk`; `kem:keys` holds each key followed by its signature.
for i = first_kem, #ARGV, 3 do
  if not redis.call('ZSCORE', kem, ARGV[i]) then
    redis.call('ZADD', kem, redis.call('INCR', mkey(m, 'kem:seq')), ARGV[i])
  end
  redis.call('HSET', kem_keys, ARGV[i], ARGV[i + 1] .. ARGV[i + 2])
end
return {'ok', redis.call('ZCARD', opk), kem_count(m)}
