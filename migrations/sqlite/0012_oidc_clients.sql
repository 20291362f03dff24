-- Initial access tokens for registration under the invite-only policy (single-use).
CREATE TABLE oidc_registration_tokens (
    token_hash  TEXT PRIMARY KEY,
    client_id   TEXT,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT
);
-- The jti of each private_key_jwt client assertion, until it expires: no replays.
CREATE TABLE oidc_client_assertions (
    client_id   TEXT NOT NULL,
    jti         TEXT NOT NULL,
    expires_at  BIGINT NOT NULL,
    PRIMARY KEY (client_id, jti)
);
CREATE INDEX oidc_client_assertions_expiry ON oidc_client_assertions (expires_at);
