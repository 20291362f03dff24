-- RFC 8628 device authorization grants. A device (a TV, a CLI) shows `user_code`; the user
-- approves it on /oidc/device (signed in, with consent) or with `sichat login approve`; the
-- device polls the token endpoint with its `device_code`, kept as a hash. `status`:
-- pending, approved, denied or used.
CREATE TABLE oidc_device_grants (
    id               TEXT PRIMARY KEY,
    device_code_hash TEXT NOT NULL UNIQUE,
    user_code        TEXT NOT NULL UNIQUE,
    challenge        TEXT NOT NULL,
    client_id        TEXT NOT NULL,
    scope            TEXT NOT NULL,
    status           TEXT NOT NULL,
    user_id          TEXT,
    auth_time        BIGINT,
    amr              TEXT,
    interval_ms      BIGINT NOT NULL,
    last_polled_at   BIGINT,
    created_at       BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL,
    used_at          BIGINT
);
CREATE INDEX oidc_device_grants_expiry ON oidc_device_grants (expires_at);
CREATE INDEX oidc_device_grants_user ON oidc_device_grants (user_id);
