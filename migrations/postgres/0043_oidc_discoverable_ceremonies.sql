-- Passkey sign-ins with no user name (discoverable credentials): the ceremony belongs to no
-- account until the passkey names one.
CREATE TABLE oidc_discoverable_ceremonies (
    id_hash    TEXT PRIMARY KEY,
    bound_to   TEXT NOT NULL,
    state      TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX oidc_discoverable_ceremonies_expiry ON oidc_discoverable_ceremonies (expires_at);
