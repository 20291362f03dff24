-- did:webvh logs: one row per entry (JSON line), in version order, signed by the user's
-- root key. An account with entries here has the did:webvh DID of its last entry, and its
-- did:web document lists that DID in alsoKnownAs.
CREATE TABLE acct_did_log (
    user_id TEXT NOT NULL REFERENCES acct_users(id),
    version BIGINT NOT NULL,
    entry TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, version)
);
