-- MailboxStore::kem_prekey_count of mailbox ARGV[2] on a Cluster (where
-- MULTI pipelines are not available): its one-time KEM prekeys, or ''
-- without a last-resort KEM prekey.

return kem_count(ARGV[2])
