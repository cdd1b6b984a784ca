-- Shared by both key layouts (after lua/standalone.lua or
-- lua/cluster.lua, whose `remove_envelope` it uses).

-- Deletes the mailbox `m`: every envelope queued for it (by
-- `remove_envelope`), its
-- signed prekey with its access verifier, its one-time prekeys and its
-- KEM prekeys. Its device list and the record of who lists it are not
-- part of it.
local function remove_mailbox(m)
  for _, id in ipairs(redis.call('ZRANGE', mkey(m, 'queue'), 0, -1)) do
    remove_envelope(m, id)
  end
  redis.call('DEL', mkey(m, 'spk'), mkey(m, 'opk'), mkey(m, 'opk:keys'), mkey(m, 'opk:seq'),
    mkey(m, 'kem'), mkey(m, 'kem:keys'), mkey(m, 'kem:seq'), mkey(m, 'kem:last'),
    mkey(m, 'queue'), mkey(m, 'msgids'), mkey(m, 'bytes'), mkey(m, 'expiry'))
end
