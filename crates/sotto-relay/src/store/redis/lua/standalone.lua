-- The standalone server's envelope removal (store/redis/scripts.rs puts
-- it after lua/common.lua, before lua/mailbox.lua): a script may touch
-- the mailbox's keys and the store-wide ones together.

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
