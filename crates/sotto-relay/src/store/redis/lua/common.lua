-- Shared by every script (store/redis/scripts.rs puts it after the
-- script's flags line and before its body). ARGV[1] is the store's key
-- prefix; docs/relay.md §9 ("Redis") describes the keys.

local P = ARGV[1]

-- A key of the mailbox whose address is `m` (64 lower-case hex digits).
-- Its hash tag, `{m}`, puts all of one mailbox's keys in one slot.
local function mkey(m, name)
  return P .. ':{' .. m .. '}:' .. name
end

-- A store-wide key; all of them share the slot of the tag `{global}`.
local function gkey(name)
  return P .. ':{global}:' .. name
end

-- An envelope id as 20 decimal digits: ordering the strings orders the
-- ids, for any u64, where sorted-set scores (doubles) would stop at 2^53.
local function pad(n)
  return string.format('%020d', n)
end

-- Compares two access verifiers without stopping at the first difference.
local function same_verifier(a, b)
  if string.len(a) ~= string.len(b) then
    return false
  end
  local diff = 0
  for i = 1, string.len(a) do
    diff = bit.bor(diff, bit.bxor(string.byte(a, i), string.byte(b, i)))
  end
  return diff == 0
end

-- Drops one holder of shared body `bid`; deletes the body with its last
-- holder. Returns the bytes that freed (0 while others hold it).
local function release_body(bid)
  local bk = gkey('body:' .. bid)
  if redis.call('HINCRBY', bk, 'holders', -1) > 0 then
    return 0
  end
  local len = redis.call('HSTRLEN', bk, 'data')
  redis.call('DEL', bk)
  return len
end

-- Deletes envelope `id` (20 digits) of mailbox `m` and takes it off the
-- mailbox's usage, the expiry index and the store-wide totals. Returns
-- the bytes that freed in the store (as the totals count them), or nil
-- if no such envelope is queued in `m`.
local function remove_envelope(m, id)
  local ek = mkey(m, 'env:' .. id)
  local e = redis.call('HMGET', ek, 'mid', 'p', 'len', 'body')
  if not e[1] then
    return nil
  end
  redis.call('DEL', ek)
  redis.call('HDEL', mkey(m, 'msgids'), e[1])
  redis.call('ZREM', mkey(m, 'queue'), id)
  redis.call('ZREM', gkey('expiry'), id .. ':' .. m)
  if redis.call('ZCARD', mkey(m, 'queue')) == 0 then
    redis.call('DEL', mkey(m, 'bytes'))
  else
    redis.call('DECRBY', mkey(m, 'bytes'), e[3])
  end
  local freed = string.len(e[2])
  if e[4] then
    freed = freed + release_body(e[4])
  end
  redis.call('HINCRBY', gkey('totals'), 'envelopes', -1)
  redis.call('HINCRBY', gkey('totals'), 'bytes', -freed)
  return freed
end

-- Deletes the mailbox `m`: every envelope queued for it (as above), its
-- signed prekey with its access verifier, its one-time prekeys and its
-- KEM prekeys. Its device list and the record of who lists it are not
-- part of it.
local function remove_mailbox(m)
  for _, id in ipairs(redis.call('ZRANGE', mkey(m, 'queue'), 0, -1)) do
    remove_envelope(m, id)
  end
  redis.call('DEL', mkey(m, 'spk'), mkey(m, 'opk'), mkey(m, 'opk:keys'), mkey(m, 'opk:seq'),
    mkey(m, 'kem'), mkey(m, 'kem:keys'), mkey(m, 'kem:seq'), mkey(m, 'kem:last'),
    mkey(m, 'queue'), mkey(m, 'msgids'), mkey(m, 'bytes'))
end

-- `PreKeyCounts::kem` of mailbox `m`: its one-time KEM prekeys, or ''
-- without a last-resort KEM prekey.
local function kem_count(m)
  if redis.call('EXISTS', mkey(m, 'kem:last')) == 0 then
    return ''
  end
  return redis.call('ZCARD', mkey(m, 'kem'))
end
