-- MailboxStore::publish_device_list. ARGV: prefix, the account's mailbox,
-- the version (20 digits), the list, the version the caller read before
-- comparing the lists ('' for none), how many devices the new list names,
-- their mailboxes, then the mailboxes of the devices it unlinks.
--
-- The caller decoded and compared the lists (store/unlinking.rs); if the
-- stored list changed since it read it, the script changes nothing and
-- answers {'retry'}. Otherwise {'stale', stored version} or {'ok'}.

local owner = ARGV[2]
local version, list, expected = ARGV[3], ARGV[4], ARGV[5]
local devices = mkey(owner, 'devices')
local stored = redis.call('HMGET', devices, 'version', 'list')
if stored[1] then
  if stored[1] == version and stored[2] == list then
    return {'ok'}
  end
  -- Both 20 digits: the strings compare as the numbers.
  if stored[1] >= version then
    return {'stale', stored[1]}
  end
end
if (stored[1] or '') ~= expected then
  return {'retry'}
end

redis.call('HSET', devices, 'version', version, 'list', list)
-- Who lists whom: `listed` (the devices the account's stored list
-- names) and, per device, `listed_by` (the accounts whose lists name it).
local listed = mkey(owner, 'listed')
for _, d in ipairs(redis.call('SMEMBERS', listed)) do
  redis.call('SREM', mkey(d, 'listed_by'), owner)
end
redis.call('DEL', listed)
local n = tonumber(ARGV[6])
for i = 7, 6 + n do
  redis.call('SADD', listed, ARGV[i])
  redis.call('SADD', mkey(ARGV[i], 'listed_by'), owner)
end
-- An account's own mailbox, or one another account still names, stays
-- (store/unlinking.rs).
for i = 7 + n, #ARGV do
  local d = ARGV[i]
  if redis.call('EXISTS', mkey(d, 'devices')) == 0
    and redis.call('EXISTS', mkey(d, 'listed_by')) == 0 then
    remove_mailbox(d)
  end
end
return {'ok'}
