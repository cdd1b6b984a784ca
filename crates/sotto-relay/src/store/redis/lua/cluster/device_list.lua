-- MailboxStore::publish_device_list on a Cluster, the account's step
-- (docs/relay.md §9, "Redis Cluster"). ARGV as lua/publish_device_list.lua:
-- prefix, the account's mailbox, the version (20 digits), the list, the
-- version the caller read before comparing the lists ('' for none), how
-- many devices the new list names, their mailboxes, then the mailboxes of
-- the devices it unlinks.
--
-- Stores the list and the account's `listed` set, and records in
-- `{account}:propagate` what the devices' own steps must do: `add` (the
-- listed devices, whose `listed_by` gains the account), `del` (devices
-- listed before and not now, whose `listed_by` loses it) and `unlink`
-- (the unlinked devices, whose mailboxes go unless claimed), each as
-- concatenated 64-digit mailboxes, with the `version`. The relay runs
-- those steps and then deletes the record; a reconcile finishes a record
-- a stopped relay left. Answers {'retry'} (the stored list changed since
-- the caller read it), {'stale', stored version} or {'ok'}.

local owner = ARGV[2]
local version, list, expected = ARGV[3], ARGV[4], ARGV[5]
local devices = mkey(owner, 'devices')
local stored = redis.call('HMGET', devices, 'version', 'list')
if stored[1] then
  if stored[1] == version and stored[2] == list then
    return {'ok'}
  end
  if stored[1] >= version then
    return {'stale', stored[1]}
  end
end
if (stored[1] or '') ~= expected then
  return {'retry'}
end

redis.call('HSET', devices, 'version', version, 'list', list)
local listed = mkey(owner, 'listed')
local n = tonumber(ARGV[6])
local now_listed = {}
local add = {}
for i = 7, 6 + n do
  now_listed[ARGV[i]] = true
  add[#add + 1] = ARGV[i]
end
local del = {}
for _, d in ipairs(redis.call('SMEMBERS', listed)) do
  if not now_listed[d] then
    del[#del + 1] = d
  end
end
redis.call('DEL', listed)
if n > 0 then
  redis.call('SADD', listed, unpack(add))
end
local unlink = {}
for i = 7 + n, #ARGV do
  unlink[#unlink + 1] = ARGV[i]
end
redis.call('HSET', mkey(owner, 'propagate'), 'version', version, 'add', table.concat(add),
  'del', table.concat(del), 'unlink', table.concat(unlink))
return {'ok'}
