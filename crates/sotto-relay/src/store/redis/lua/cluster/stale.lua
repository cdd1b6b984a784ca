-- The reservations pending for more than ARGV[2] seconds, for the
-- reconcile: {id, mailbox, bytes, id, mailbox, bytes, ...}. KEYS[1] is
-- the totals key (it routes the script to the `{global}` slot).

local cutoff = tonumber(redis.call('TIME')[1]) - tonumber(ARGV[2])
local out = {}
local all = redis.call('HGETALL', gkey('pending'))
for i = 1, #all, 2 do
  local m, len, t = string.match(all[i + 1], '^(%x+):(%d+):(%d+)$')
  if m and tonumber(t) <= cutoff then
    out[#out + 1] = all[i]
    out[#out + 1] = m
    out[#out + 1] = len
  end
end
return out
