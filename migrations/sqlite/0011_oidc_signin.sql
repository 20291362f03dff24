-- Sign-in without a password: approval by a wallet's device key, and passkeys (WebAuthn).
-- A wallet approval: the browser holds a secret handle (stored hashed) and shows a short
-- code; the wallet signs the code and challenge. Bound to one pending request (or, with no
-- request, to the account page) and to the browser's CSRF cookie. Single-use, 2 minutes.
CREATE TABLE oidc_approvals (
    handle_hash  TEXT PRIMARY KEY,
    code         TEXT NOT NULL UNIQUE,
    challenge    TEXT NOT NULL,
    request_id   TEXT,
    csrf         TEXT NOT NULL,
    user_id      TEXT REFERENCES acct_users (id),
    device_id    TEXT,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    approved_at  BIGINT,
    consumed_at  BIGINT
);
-- A user's passkeys: webauthn-rs's `Passkey` (public key, counter) as JSON.
CREATE TABLE oidc_passkeys (
    id             TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL REFERENCES acct_users (id),
    credential_id  TEXT NOT NULL UNIQUE,
    name           TEXT NOT NULL,
    passkey        TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    last_used_at   BIGINT
);
CREATE INDEX oidc_passkeys_by_user ON oidc_passkeys (user_id);
-- A WebAuthn ceremony in progress: webauthn-rs's registration or authentication state,
-- kept here (never in the browser), bound to what started it, single-use, 2 minutes.
CREATE TABLE oidc_webauthn_ceremonies (
    id_hash     TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    user_id     TEXT NOT NULL REFERENCES acct_users (id),
    bound_to    TEXT NOT NULL,
    state       TEXT NOT NULL,
    expires_at  BIGINT NOT NULL
);
-- One-time links to register a passkey, made by `sichat passkey add` (stored hashed).
CREATE TABLE oidc_passkey_links (
    token_hash  TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES acct_users (id),
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT
);
