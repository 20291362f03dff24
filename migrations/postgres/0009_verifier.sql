-- OpenID4VP presentation requests and their results.
CREATE TABLE verifier_requests (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES acct_users (id),
    nonce       TEXT NOT NULL,
    request     TEXT NOT NULL,
    status      TEXT NOT NULL,
    result      TEXT,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    answered_at BIGINT
);
CREATE INDEX verifier_requests_by_user ON verifier_requests (user_id, created_at);
