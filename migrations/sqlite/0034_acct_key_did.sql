-- The did:key an account started as, when a wallet that worked alone joined this node
-- (`sichat join`): its key is the root key that signed the registration, and the account's
-- DID documents name it in `alsoKnownAs`.
ALTER TABLE acct_users ADD COLUMN key_did TEXT;
