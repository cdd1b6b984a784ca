-- MailboxStore::enqueue and enqueue_many: queues envelopes for one or
-- more recipients, in order, with every check, in one atomic step.
--
-- ARGV: prefix, now (hour), expiry hour, max envelopes per mailbox, max
-- bytes per mailbox, max bytes in the store, the shared body ('' for
-- none), n; then per recipient: mailbox, message id, payload (or
-- header), the verifier of the access key it presented ('' for none),
-- and its first-contact decision: 'y' (admitted), 'n' (refused) or ''
-- (not asked yet).
--
-- Access depends on nothing the recipients before it store, so it is
-- checked for all of them first, before anything is written: if a
-- recipient without access has no decision, the script writes nothing
-- and answers {'ask', i...} (0-based indices, in order); the caller asks
-- the relay's first-contact allowance and runs it again.
--
-- Otherwise one reply per recipient: {'stored', id}, {'duplicate', id},
-- {'unknown'}, {'denied'}, {'full', envelopes, bytes} or {'storage',
-- queued bytes, bytes it needed}. Every stored envelope is announced on
-- its mailbox's channel `{m}:changed`.

local now_hour = tonumber(ARGV[2])
local expiry = ARGV[3]
local max_envelopes = tonumber(ARGV[4])
local max_bytes = tonumber(ARGV[5])
local max_total = tonumber(ARGV[6])
local body = ARGV[7]
local body_len = string.len(body)
local n = tonumber(ARGV[8])

local function arg(j, field)
  return ARGV[9 + 5 * j + field]
end

-- Registration and access, for every recipient, before any write.
local access = {}
local ask = {}
for j = 0, n - 1 do
  local reg = redis.call('HMGET', mkey(arg(j, 0), 'spk'), 'public', 'verifier')
  local key, decision = arg(j, 3), arg(j, 4)
  if not reg[1] then
    access[j] = 'unknown'
  elseif (not reg[2]) or (key ~= '' and same_verifier(key, reg[2])) or decision == 'y' then
    access[j] = 'ok'
  elseif decision == 'n' then
    access[j] = 'denied'
  else
    ask[#ask + 1] = j
  end
end
if #ask > 0 then
  return {'ask', unpack(ask)}
end

local totals = gkey('totals')
-- The id of the shared body, once the first envelope holding it is
-- stored.
local bid = nil

local function enqueue_one(m, mid, payload)
  local queue, msgids, bytes_key = mkey(m, 'queue'), mkey(m, 'msgids'), mkey(m, 'bytes')
  local envelopes = redis.call('ZCARD', queue)
  local bytes = tonumber(redis.call('GET', bytes_key) or '0')
  local stored = tonumber(redis.call('HGET', totals, 'bytes') or '0')
  -- An unexpired envelope with this message id answers; an expired one
  -- is gone for the recipient already, and is replaced: the limits are
  -- checked as if it were gone.
  local old = redis.call('HGET', msgids, mid)
  if old then
    local e = redis.call('HMGET', mkey(m, 'env:' .. old), 'p', 'exp', 'len', 'body')
    if not e[1] then
      old = nil
    elseif tonumber(e[2]) > now_hour then
      return {'duplicate', old}
    else
      envelopes = envelopes - 1
      bytes = bytes - tonumber(e[3])
      local freed = string.len(e[1])
      if e[4] then
        local bk = gkey('body:' .. e[4])
        if tonumber(redis.call('HGET', bk, 'holders') or '0') <= 1 then
          freed = freed + redis.call('HSTRLEN', bk, 'data')
        end
      end
      stored = stored - freed
    end
  end
  local len = string.len(payload) + body_len
  -- The body is stored, and counted, with the first envelope holding it.
  local stored_len = string.len(payload)
  if body_len > 0 and not bid then
    stored_len = stored_len + body_len
  end
  if envelopes + 1 > max_envelopes or bytes + len > max_bytes then
    return {'full', envelopes, bytes}
  end
  if stored + stored_len > max_total then
    return {'storage', stored, stored_len}
  end
  if old then
    remove_envelope(m, old)
  end
  if body_len > 0 and not bid then
    bid = string.format('%d', redis.call('INCR', gkey('next_body')))
    redis.call('HSET', gkey('body:' .. bid), 'data', body, 'holders', 0)
  end
  local id = pad(redis.call('INCR', gkey('next_id')))
  local ek = mkey(m, 'env:' .. id)
  redis.call('HSET', ek, 'mid', mid, 'p', payload, 'exp', expiry, 'len', len)
  if body_len > 0 then
    redis.call('HSET', ek, 'body', bid)
    redis.call('HINCRBY', gkey('body:' .. bid), 'holders', 1)
  end
  redis.call('HSET', msgids, mid, id)
  redis.call('ZADD', queue, 0, id)
  redis.call('INCRBY', bytes_key, len)
  redis.call('ZADD', gkey('expiry'), expiry, id .. ':' .. m)
  redis.call('HINCRBY', totals, 'envelopes', 1)
  redis.call('HINCRBY', totals, 'bytes', stored_len)
  -- Wakes the owner's connections on every relay process (store/redis/
  -- feed.rs), in the same atomic step as the write.
  redis.call('PUBLISH', mkey(m, 'changed'), 'e')
  return {'stored', id}
end

local out = {}
for j = 0, n - 1 do
  if access[j] == 'ok' then
    out[j + 1] = enqueue_one(arg(j, 0), arg(j, 1), arg(j, 2))
  else
    out[j + 1] = {access[j]}
  end
end
return out
