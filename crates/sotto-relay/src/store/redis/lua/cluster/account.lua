-- The `{global}` slot's step of every Cluster operation
-- (docs/relay.md §9, "Redis Cluster"): store-wide totals, the envelope id
-- counter, reservations and the expiry index. KEYS[1] is the totals key
-- (it routes the script to the slot's node). ARGV[1] is the prefix, then
-- operations, each an opcode and its fields, applied in order:
--
-- - `R m len hour max_total`: reserves `len` bytes and one envelope for
--   mailbox `m` if the totals stay within `max_total`, gives out the next
--   envelope id, records the reservation in `pending` and puts `m` in the
--   expiry bucket of `hour`. Answers {'ok', id} or {'storage', bytes
--   held}.
-- - `D id`: the reservation `id` is settled (used, or given back through
--   the mailbox's `out` counters): forgets it.
-- - `S m n bytes`: mailbox `m` has freed `n` envelopes and `bytes` in
--   all; takes off the totals what was not taken off yet.
-- - `X m hour`: mailbox `m` has nothing left that expires by `hour`:
--   takes it out of that hour's bucket (and the bucket off the list when
--   empty).
--
-- Answers the answers of the `R` operations, in order.

local totals, seen, pending = gkey('totals'), gkey('seen'), gkey('pending')
local now = nil
local out = {}
local i = 2
while i <= #ARGV do
  local op = ARGV[i]
  if op == 'R' then
    local m, len, hour = ARGV[i + 1], tonumber(ARGV[i + 2]), ARGV[i + 3]
    local max_total = tonumber(ARGV[i + 4])
    local held = tonumber(redis.call('HGET', totals, 'bytes') or '0')
    if held + len > max_total then
      out[#out + 1] = {'storage', string.format('%d', held)}
    else
      now = now or redis.call('TIME')[1]
      local id = pad(redis.call('INCR', gkey('next_id')))
      redis.call('HINCRBY', totals, 'envelopes', 1)
      redis.call('HINCRBY', totals, 'bytes', ARGV[i + 2])
      redis.call('HSET', pending, id, m .. ':' .. ARGV[i + 2] .. ':' .. now)
      redis.call('SADD', gkey('exp:' .. hour), m)
      redis.call('ZADD', gkey('exp_hours'), hour, hour)
      out[#out + 1] = {'ok', id}
    end
    i = i + 5
  elseif op == 'D' then
    redis.call('HDEL', pending, ARGV[i + 1])
    i = i + 2
  elseif op == 'S' then
    local m, n, bytes = ARGV[i + 1], tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
    local s = redis.call('HGET', seen, m)
    local sn, sb = 0, 0
    if s then
      local a, b = string.match(s, '^(%d+):(%d+)$')
      sn, sb = tonumber(a), tonumber(b)
    end
    -- Both counters grow together, by one envelope at least: the larger
    -- count is the later state.
    if n > sn then
      redis.call('HSET', seen, m, ARGV[i + 2] .. ':' .. ARGV[i + 3])
      redis.call('HINCRBY', totals, 'envelopes', string.format('%d', sn - n))
      redis.call('HINCRBY', totals, 'bytes', string.format('%d', sb - bytes))
    end
    i = i + 4
  elseif op == 'X' then
    local bucket = gkey('exp:' .. ARGV[i + 2])
    redis.call('SREM', bucket, ARGV[i + 1])
    if redis.call('SCARD', bucket) == 0 then
      redis.call('ZREM', gkey('exp_hours'), ARGV[i + 2])
    end
    i = i + 3
  else
    return redis.error_reply('ERR unknown account operation')
  end
end
return out
