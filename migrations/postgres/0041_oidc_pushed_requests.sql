-- Pushed authorization requests (RFC 9126): what a client pushed, by the hash of its
-- request_uri, for 60 seconds and one use.
CREATE TABLE oidc_pushed_requests (
    id_hash    TEXT PRIMARY KEY,
    client_id  TEXT NOT NULL,
    params     TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);
CREATE INDEX oidc_pushed_requests_expiry ON oidc_pushed_requests (expires_at);
