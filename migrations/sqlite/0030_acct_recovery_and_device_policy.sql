-- A recovery key the root key named in advance (`set_recovery_key`): its public key,
-- multibase. It can sign one root operation, `recover`, which puts a new root key in place
-- of a lost one; in a did:webvh log it is an update key beside the root key.
ALTER TABLE acct_users ADD COLUMN recovery_key TEXT;

-- Whether the account's devices may revoke each other (`set_device_policy`, by the root
-- key), and which device revoked a device (NULL: the root key did), so the root key can
-- reinstate a device another device cut off.
ALTER TABLE acct_users ADD COLUMN devices_may_revoke BIGINT NOT NULL DEFAULT 0;
ALTER TABLE acct_devices ADD COLUMN revoked_by TEXT;

-- The sign-in numbers a device's wallet sent lately (JSON array, the last 64): a number
-- seen twice means two copies of one wallet sign in as the same device.
ALTER TABLE acct_devices ADD COLUMN login_seqs TEXT;
