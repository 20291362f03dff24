-- Social recovery: the friends among whom the recovery key's secret was split, and how many
-- must approve (JSON `{"threshold": k, "dids": [...]}`; NULL: none). Set with the recovery
-- key by `set_recovery_key`.
ALTER TABLE acct_users ADD COLUMN recovery_guardians TEXT;

-- A recovery someone opened for the account: the X25519 key friends seal their shares to.
-- status: open, cancelled (by a device of the account), done, expired, void (the recovery
-- key changed).
CREATE TABLE acct_recovery_requests (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES acct_users (id),
    agree_key  TEXT NOT NULL,
    status     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    closed_at  BIGINT,
    closed_by  TEXT
);
CREATE INDEX acct_recovery_requests_user ON acct_recovery_requests (user_id, status);

-- Each friend's signed approval of a request, kept as signed: the log of who approved.
CREATE TABLE acct_recovery_approvals (
    request_id  TEXT NOT NULL REFERENCES acct_recovery_requests (id),
    guardian    TEXT NOT NULL,
    approval    TEXT NOT NULL,
    approved_at BIGINT NOT NULL,
    PRIMARY KEY (request_id, guardian)
);
