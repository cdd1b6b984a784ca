-- MailboxStore::fetch: envelopes of mailbox ARGV[2] with id above
-- ARGV[3] (20 digits) that have not expired at hour ARGV[6], oldest
-- first: at most ARGV[4], stopping before the one that would bring their
-- encoded size over ARGV[5] bytes (but at least one).
--
-- Answers {more, {id, envelope, id, envelope, ...}}.

local m = ARGV[2]
local max_count = tonumber(ARGV[4])
local max_bytes = tonumber(ARGV[5])
local now_hour = tonumber(ARGV[6])
local queue = mkey(m, 'queue')
-- Bytes an envelope takes in a frame besides its own (Envelope::OVERHEAD).
local overhead = 12

local out, count, used, more = {}, 0, 0, 0
local cursor = '(' .. ARGV[3]
local done = false
while not done do
  local ids = redis.call('ZRANGEBYLEX', queue, cursor, '+', 'LIMIT', 0, 128)
  if #ids == 0 then
    break
  end
  for _, id in ipairs(ids) do
    local e = redis.call('HMGET', mkey(m, 'env:' .. id), 'p', 'exp', 'body')
    if e[1] and tonumber(e[2]) > now_hour then
      local envelope = e[1]
      if e[3] then
        local data = redis.call('HGET', gkey('body:' .. e[3]), 'data')
        if not data then
          return redis.error_reply("CORRUPT an envelope's shared body is missing")
        end
        envelope = envelope .. data
      end
      local size = overhead + string.len(envelope)
      if count >= max_count or (count > 0 and used + size > max_bytes) then
        more = 1
        done = true
        break
      end
      used = used + size
      count = count + 1
      out[#out + 1] = id
      out[#out + 1] = envelope
    end
  end
  cursor = '(' .. ids[#ids]
end
return {more, out}
