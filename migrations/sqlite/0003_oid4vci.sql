-- OpenID4VCI credential offers (pre-authorized code flow). Codes and tokens are kept
-- only as SHA-256 hashes; the PIN hash is salted with the code.
CREATE TABLE issuer_offers (
    id               TEXT PRIMARY KEY,
    user_id          TEXT NOT NULL REFERENCES acct_users (id),
    type_name        TEXT NOT NULL,
    subject          TEXT,
    claims           TEXT NOT NULL,
    suspendable      BIGINT NOT NULL,
    valid_until      BIGINT,
    code_hash        TEXT NOT NULL UNIQUE,
    tx_code_hash     TEXT,
    tx_attempts      BIGINT NOT NULL DEFAULT 0,
    token_hash       TEXT UNIQUE,
    token_expires_at BIGINT,
    status           TEXT NOT NULL,
    credential_id    TEXT,
    created_at       BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL
);
CREATE INDEX issuer_offers_user ON issuer_offers (user_id, created_at);

-- c_nonce values from the Nonce Endpoint: single use.
CREATE TABLE issuer_nonces (
    nonce      TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES acct_users (id),
    expires_at BIGINT NOT NULL
);
