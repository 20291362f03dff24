-- Pairwise subjects (`sub`) derived from a secret of the account's own, so they can move
-- with the account to another node (`oidc::subjects`). `secret_sealed`: 32 random bytes,
-- sealed under the master key with context `oidc_subject_secrets:<user_id>`. NULL: a
-- legacy account, whose subjects keep the node-salt formula they had before (every account
-- that exists when this migration runs, so no site sees a new `sub`).
CREATE TABLE oidc_subject_secrets (
    user_id         TEXT PRIMARY KEY REFERENCES acct_users (id),
    secret_sealed   BYTEA,
    created_at      BIGINT NOT NULL
);
INSERT INTO oidc_subject_secrets (user_id, secret_sealed, created_at)
    SELECT id, NULL, CAST(EXTRACT(EPOCH FROM now()) AS BIGINT) * 1000 FROM acct_users;
-- A subject fixed for one sector (the host of a client's redirect URIs): what a site saw
-- on the node the account moved from. Wins over the secret.
CREATE TABLE oidc_subject_pins (
    user_id     TEXT NOT NULL REFERENCES acct_users (id),
    sector      TEXT NOT NULL,
    sub         TEXT NOT NULL,
    PRIMARY KEY (user_id, sector)
);
