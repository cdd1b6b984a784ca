-- MailboxStore::ack on a Cluster, the mailbox's step: deletes the
-- envelopes of mailbox ARGV[2] whose ids (20 digits) are ARGV[3...]; ids
-- not queued there are ignored. Answers {deleted, freed envelopes, freed
-- bytes}: the mailbox's `out` counters, for the `account` script. Runs
-- when Redis is out of memory, as deleting is what frees it.

local m = ARGV[2]
local removed = 0
for i = 3, #ARGV do
  if remove_envelope(m, ARGV[i]) then
    removed = removed + 1
  end
end
local freed = freed_so_far(m)
return {removed, freed[1], freed[2]}
