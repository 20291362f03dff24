-- Accounts of other nodes this node is a standby for (`sichat standby add`), one row per
-- DID they are known by: it keeps what is delivered to them while their node is down and
-- hands it over when that node is back. `grant_jws` is the root key's grant.
CREATE TABLE msg_standbys (
    did              TEXT PRIMARY KEY,
    account          TEXT NOT NULL,
    primary_endpoint TEXT NOT NULL,
    grant_jws        TEXT NOT NULL,
    invite_id        TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    ended_at         BIGINT
);
CREATE INDEX msg_standbys_account ON msg_standbys (account);

-- Deliveries held for such an account: the request as the sender's node signed it (its
-- target URI, the signature headers, the body), handed over whole so that the account's
-- node checks the sender's signature itself.
CREATE TABLE msg_standby_held (
    id              TEXT PRIMARY KEY,
    account         TEXT NOT NULL,
    forward_id      TEXT NOT NULL,
    target_uri      TEXT NOT NULL,
    headers         TEXT NOT NULL,
    body            BYTEA NOT NULL,
    received_at     BIGINT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    last_error      TEXT,
    UNIQUE (account, forward_id)
);
CREATE INDEX msg_standby_held_due ON msg_standby_held (next_attempt_at);
