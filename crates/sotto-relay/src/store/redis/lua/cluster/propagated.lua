-- The account's last step of a device list published on a Cluster: the
-- devices' steps of version ARGV[3] are done, so its record in
-- `{account}:propagate` goes (unless a newer list replaced it meanwhile).

local key = mkey(ARGV[2], 'propagate')
if redis.call('HGET', key, 'version') == ARGV[3] then
  redis.call('DEL', key)
end
return 1
