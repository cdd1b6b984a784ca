-- MailboxStore::ack: deletes the envelopes of mailbox ARGV[2] whose ids
-- (20 digits) are ARGV[3...]; ids not queued there are ignored. Answers
-- how many were deleted. Runs when Redis is out of memory, as deleting
-- is what frees it.

local m = ARGV[2]
local removed = 0
for i = 3, #ARGV do
  if remove_envelope(m, ARGV[i]) then
    removed = removed + 1
  end
end
return removed
