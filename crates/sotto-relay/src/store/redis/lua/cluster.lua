-- The Cluster key layout's envelope removal (store/redis/scripts.rs puts
-- it after lua/common.lua, before lua/mailbox.lua). On a Cluster a script
-- touches the keys of one slot only: one mailbox's, or the store-wide
-- ones (`{global}`). What a mailbox step frees in the store-wide totals
-- is added to the mailbox's own `out` counters (`n` envelopes, `bytes`),
-- which only grow; the relay then hands them to the `account` script on
-- the `{global}` slot, which applies what it has not applied yet
-- (docs/relay.md §9, "Redis Cluster").

-- Adds `n` envelopes and `bytes` to what mailbox `m` has freed.
local function release(m, n, bytes)
  local out = mkey(m, 'out')
  redis.call('HINCRBY', out, 'n', n)
  redis.call('HINCRBY', out, 'bytes', bytes)
end

-- What mailbox `m` has freed so far: {envelopes, bytes}.
local function freed_so_far(m)
  local o = redis.call('HMGET', mkey(m, 'out'), 'n', 'bytes')
  return {o[1] or '0', o[2] or '0'}
end

-- The server's time, in whole seconds.
local function now_secs()
  return tonumber(redis.call('TIME')[1])
end

-- Deletes envelope `id` (20 digits) of mailbox `m`, takes it off the
-- mailbox's usage and expiry index and adds it to what the mailbox freed.
-- Returns its bytes, or nil if no such envelope is queued in `m`.
local function remove_envelope(m, id)
  local ek = mkey(m, 'env:' .. id)
  local e = redis.call('HMGET', ek, 'mid', 'p', 'len')
  if not e[1] then
    return nil
  end
  redis.call('DEL', ek)
  redis.call('HDEL', mkey(m, 'msgids'), e[1])
  redis.call('ZREM', mkey(m, 'queue'), id)
  redis.call('ZREM', mkey(m, 'expiry'), id)
  if redis.call('ZCARD', mkey(m, 'queue')) == 0 then
    redis.call('DEL', mkey(m, 'bytes'))
  else
    redis.call('DECRBY', mkey(m, 'bytes'), e[3])
  end
  local freed = string.len(e[2])
  release(m, 1, freed)
  return freed
end
