-- OpenID Connect session ids and logout channels. A browser session's `sid` goes into the
-- codes and tokens it gives (and so into ID tokens); `oidc_session_clients` lists the sites
-- each browser session signed in to; `oidc_logout_notices` is the outbox of back-channel
-- logout tokens still to deliver (written with the logout itself, so none is lost).
ALTER TABLE oidc_codes ADD COLUMN sid TEXT;
ALTER TABLE oidc_codes ADD COLUMN session_hash TEXT;
ALTER TABLE oidc_tokens ADD COLUMN sid TEXT;

CREATE TABLE oidc_session_clients (
    session_hash TEXT NOT NULL,
    client_id    TEXT NOT NULL,
    sid          TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (session_hash, client_id)
);
CREATE INDEX oidc_session_clients_user ON oidc_session_clients (user_id, client_id);

CREATE TABLE oidc_logout_notices (
    id              TEXT PRIMARY KEY,
    client_id       TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    sid             TEXT,
    created_at      BIGINT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    last_error      TEXT
);
CREATE INDEX oidc_logout_notices_due ON oidc_logout_notices (next_attempt_at);
