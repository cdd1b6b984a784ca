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

-- `PreKeyCounts::kem` of mailbox `m`: its one-time KEM prekeys, or ''
-- without a last-resort KEM prekey.
local function kem_count(m)
  if redis.call('EXISTS', mkey(m, 'kem:last')) == 0 then
    return ''
  end
  return redis.call('ZCARD', mkey(m, 'kem'))
end
