-- A recovery key the root key named in advance (`set_recovery_key`): its public key,
-- multibase. It can sign one root operation, `recover`, which puts a new root key in place
-- of a lost one; in a did:webvh log it is an update key beside the root key.
ALTER TABLE acct_users ADD COLUMN recovery_key TEXT;
