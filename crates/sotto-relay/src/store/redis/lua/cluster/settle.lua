-- The reconcile's mailbox step for a reservation still pending after a
-- relay stopped between its two steps (docs/relay.md §9, "Redis
-- Cluster"). ARGV: prefix, mailbox, the reservation's id, its bytes.
-- Answers {'used'} if the mailbox's step ran for it (the envelope was
-- stored, or the reservation given back already), else gives it back
-- now, fencing off a late mailbox step for it ('void'), and answers
-- {'void', freed envelopes, freed bytes}.

local m, id = ARGV[2], ARGV[3]
local done = mkey(m, 'done')
if redis.call('ZSCORE', done, id) then
  return {'used'}
end
redis.call('ZADD', done, now_secs(), id)
release(m, 1, tonumber(ARGV[4]))
local freed = freed_so_far(m)
return {'void', freed[1], freed[2]}
