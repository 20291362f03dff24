-- The OpenID Provider: signing keys, clients, pending requests, sign-in sessions,
-- passwords, consents, codes and tokens. Secrets and tokens are stored hashed or sealed.
CREATE TABLE oidc_keys (
    kid         TEXT PRIMARY KEY,
    alg         TEXT NOT NULL,
    sealed      BLOB NOT NULL,
    public_jwk  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    retired_at  BIGINT
);
CREATE TABLE oidc_clients (
    id                  TEXT PRIMARY KEY,
    secret_hash         TEXT,
    registration_hash   TEXT NOT NULL,
    metadata            TEXT NOT NULL,
    created_at          BIGINT NOT NULL
);
CREATE TABLE oidc_passwords (
    user_id     TEXT PRIMARY KEY REFERENCES acct_users (id),
    hash        TEXT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE TABLE oidc_requests (
    id          TEXT PRIMARY KEY,
    client_id   TEXT NOT NULL REFERENCES oidc_clients (id),
    params      TEXT NOT NULL,
    csrf        TEXT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE TABLE oidc_sessions (
    token_hash  TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES acct_users (id),
    auth_time   BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE TABLE oidc_consents (
    user_id     TEXT NOT NULL REFERENCES acct_users (id),
    client_id   TEXT NOT NULL REFERENCES oidc_clients (id),
    scope       TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (user_id, client_id)
);
CREATE TABLE oidc_codes (
    code_hash       TEXT PRIMARY KEY,
    client_id       TEXT NOT NULL REFERENCES oidc_clients (id),
    user_id         TEXT NOT NULL REFERENCES acct_users (id),
    redirect_uri    TEXT NOT NULL,
    scope           TEXT NOT NULL,
    nonce           TEXT,
    code_challenge  TEXT NOT NULL,
    auth_time       BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    used_at         BIGINT
);
-- Access and refresh tokens. A refresh token's family is every token descended from one
-- code; `code_hash` ties them to the code so a replayed code revokes them all.
CREATE TABLE oidc_tokens (
    token_hash  TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    client_id   TEXT NOT NULL REFERENCES oidc_clients (id),
    user_id     TEXT REFERENCES acct_users (id),
    scope       TEXT NOT NULL,
    family      TEXT NOT NULL,
    code_hash   TEXT,
    auth_time   BIGINT,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT,
    revoked_at  BIGINT
);
CREATE INDEX oidc_tokens_by_family ON oidc_tokens (family);
