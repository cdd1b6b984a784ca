-- A device's step of a device list published on a Cluster: ARGV is the
-- prefix, the device's mailbox, the account's, and what to do: 'add'
-- (the account's list names the device), 'del' (it no longer does) or
-- 'unlink' (the device was unlinked: its mailbox is removed unless it
-- has a device list of its own or another account's list names it;
-- store/unlinking.rs). Answers {removed (0 or 1), freed envelopes, freed
-- bytes}.

local d, owner, op = ARGV[2], ARGV[3], ARGV[4]
local listed_by = mkey(d, 'listed_by')
local removed = 0
if op == 'add' then
  redis.call('SADD', listed_by, owner)
elseif op == 'del' then
  redis.call('SREM', listed_by, owner)
elseif op == 'unlink' then
  redis.call('SREM', listed_by, owner)
  if redis.call('EXISTS', mkey(d, 'devices')) == 0
      and redis.call('EXISTS', listed_by) == 0 then
    remove_mailbox(d)
    removed = 1
  end
else
  return redis.error_reply('ERR unknown device operation')
end
local freed = freed_so_far(d)
return {removed, freed[1], freed[2]}
