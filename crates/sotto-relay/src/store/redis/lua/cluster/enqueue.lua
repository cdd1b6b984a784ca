-- MailboxStore::enqueue on a Cluster, the mailbox's step: one recipient,
-- whose bytes the `account` script reserved (docs/relay.md §9, "Redis
-- Cluster"). KEYS[1] is the mailbox's queue.
--
-- ARGV: prefix, mailbox, now (hour), expiry hour, max envelopes per
-- mailbox, max bytes per mailbox, message id, the envelope (a `SendMulti`
-- recipient's header followed by the body), the verifier of the access
-- key it presented ('' for none), its first-contact decision ('y', 'n'
-- or '' not asked yet), the reservation's envelope id ('' for none: the
-- store-wide limit refused it), which is also the envelope's id unless
-- the mailbox holds a higher one.
--
-- Answers {kind, a, b, freed envelopes, freed bytes} where kind is
-- 'stored' (a = id, b = '1' if it replaced an expired envelope), 'duplicate' (a = id), 'unknown', 'denied', 'full'
-- (a, b = the mailbox's envelopes and bytes), 'storage' (no reservation,
-- every other check passed), 'ask' (no access and no decision: nothing
-- written) or 'void' (the reservation was given back by a reconcile:
-- nothing written). A refusal gives the
-- reservation back through the mailbox's `out` counters; the last two
-- fields are those counters, for the `account` script.

local m = ARGV[2]
local now_hour, expiry = tonumber(ARGV[3]), ARGV[4]
local max_envelopes, max_bytes = tonumber(ARGV[5]), tonumber(ARGV[6])
local mid, payload, key, decision, id = ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11]
local len = string.len(payload)
local done = mkey(m, 'done')
local now = now_secs()

local function answer(kind, a, b)
  local freed = freed_so_far(m)
  return {kind, a or '', b or '', freed[1], freed[2]}
end

-- A refusal: the reservation, if any, is given back, once.
local function refuse(kind, a, b)
  if id ~= '' then
    release(m, 1, len)
    redis.call('ZADD', done, now, id)
  end
  return answer(kind, a, b)
end

if id ~= '' and redis.call('ZSCORE', done, id) then
  return answer('void')
end

local reg = redis.call('HMGET', mkey(m, 'spk'), 'public', 'verifier')
if not reg[1] then
  return refuse('unknown')
end
if reg[2] and not (key ~= '' and same_verifier(key, reg[2])) and decision ~= 'y' then
  if decision == 'n' then
    return refuse('denied')
  end
  return answer('ask')
end

local queue, msgids, bytes_key = mkey(m, 'queue'), mkey(m, 'msgids'), mkey(m, 'bytes')
local envelopes = redis.call('ZCARD', queue)
local bytes = tonumber(redis.call('GET', bytes_key) or '0')
-- An unexpired envelope with this message id answers; an expired one is
-- replaced, and the limits are checked as if it were gone.
local old = redis.call('HGET', msgids, mid)
if old then
  local e = redis.call('HMGET', mkey(m, 'env:' .. old), 'exp', 'len')
  if not e[1] then
    old = nil
  elseif tonumber(e[1]) > now_hour then
    return refuse('duplicate', old)
  else
    envelopes = envelopes - 1
    bytes = bytes - tonumber(e[2])
  end
end
if envelopes + 1 > max_envelopes or bytes + len > max_bytes then
  return refuse('full', envelopes, string.format('%d', bytes))
end
if id == '' then
  return answer('storage')
end
-- Ids become visible in a mailbox in increasing order: if a store that
-- reserved later was faster, the envelope takes the next id above it
-- (unique in the mailbox, above every id given out before its
-- reservation; another mailbox may hold the same number).
local eid = id
local last = redis.call('GET', mkey(m, 'last'))
if last and last >= id then
  eid = pad(tonumber(last) + 1)
end

if old then
  remove_envelope(m, old)
end
local ek = mkey(m, 'env:' .. eid)
redis.call('HSET', ek, 'mid', mid, 'p', payload, 'exp', expiry, 'len', len)
redis.call('HSET', msgids, mid, eid)
redis.call('ZADD', queue, 0, eid)
redis.call('INCRBY', bytes_key, len)
redis.call('ZADD', mkey(m, 'expiry'), expiry, eid)
redis.call('SET', mkey(m, 'last'), eid)
-- The reservation is used: a reconcile that finds it pending leaves the
-- bytes counted. Entries older than an hour are dropped (a reservation
-- is settled within seconds, or by the reconcile at the next start).
redis.call('ZADD', done, now, id)
redis.call('ZREMRANGEBYSCORE', done, '-inf', now - 3600)
-- Wakes the owner's connections on every relay process (store/redis/
-- feed.rs), in the same atomic step as the write.
redis.call('PUBLISH', mkey(m, 'changed'), 'e')
-- b is '1' when an expired envelope was replaced: `out` grew.
return answer('stored', eid, old and '1' or '')
