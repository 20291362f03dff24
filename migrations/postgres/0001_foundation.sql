-- The node's own keys, sealed under the master key.
CREATE TABLE node_keys (
    id            TEXT PRIMARY KEY,
    purpose       TEXT NOT NULL,
    algorithm     TEXT NOT NULL,
    public_key    TEXT NOT NULL,
    sealed_secret BYTEA NOT NULL,
    created_at    BIGINT NOT NULL,
    retired_at    BIGINT
);

-- Accounts. A removed account stays as a tombstone so its name (and DID) is never reused.
CREATE TABLE acct_users (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    root_key   TEXT NOT NULL,
    quota      BIGINT NOT NULL,
    invite_id  TEXT NOT NULL,
    status     TEXT NOT NULL DEFAULT 'active',
    created_at BIGINT NOT NULL,
    removed_at BIGINT
);

-- The invite tree. inviter_id NULL: minted by the node (sichatd admin invite).
CREATE TABLE acct_invites (
    id         TEXT PRIMARY KEY,
    code_hash  TEXT NOT NULL UNIQUE,
    inviter_id TEXT REFERENCES acct_users (id),
    quota      BIGINT NOT NULL,
    label      TEXT,
    status     TEXT NOT NULL DEFAULT 'open',
    used_by    TEXT REFERENCES acct_users (id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);
CREATE INDEX acct_invites_inviter ON acct_invites (inviter_id);

CREATE TABLE acct_issuing_keys (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES acct_users (id),
    public_key    TEXT NOT NULL,
    sealed_secret BYTEA NOT NULL,
    created_at    BIGINT NOT NULL
);
CREATE INDEX acct_issuing_keys_user ON acct_issuing_keys (user_id);

CREATE TABLE acct_devices (
    id              TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL REFERENCES acct_users (id),
    name            TEXT NOT NULL,
    sign_key        TEXT NOT NULL UNIQUE,
    agree_key       TEXT NOT NULL,
    certificate     TEXT NOT NULL,
    cert_expires_at BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    revoked_at      BIGINT
);
CREATE INDEX acct_devices_user ON acct_devices (user_id);

-- Single-use challenges: registration, root-key operations and device login nonces.
CREATE TABLE acct_challenges (
    id         TEXT PRIMARY KEY,
    purpose    TEXT NOT NULL,
    subject    TEXT,
    expires_at BIGINT NOT NULL
);
CREATE INDEX acct_challenges_expiry ON acct_challenges (expires_at);

-- Device sessions. Only the SHA-256 of the bearer token is kept.
CREATE TABLE acct_sessions (
    token_hash TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES acct_users (id),
    device_id  TEXT NOT NULL REFERENCES acct_devices (id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX acct_sessions_device ON acct_sessions (device_id);
CREATE INDEX acct_sessions_expiry ON acct_sessions (expires_at);
