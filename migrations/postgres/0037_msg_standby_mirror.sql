-- A standby is a did:webvh watcher for the accounts it stands by for: it mirrors their DID
-- logs (verified, never older than what it holds) and their status lists, which verifiers
-- read here while the account's node is down.
CREATE TABLE msg_standby_mirror (
    scid       TEXT PRIMARY KEY,
    did        TEXT NOT NULL,
    account    TEXT NOT NULL,
    log        TEXT NOT NULL,
    entries    BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX msg_standby_mirror_account ON msg_standby_mirror (account);

-- DID-relative resources mirrored for a log (its status lists), by path under the DID.
CREATE TABLE msg_standby_mirror_files (
    scid         TEXT NOT NULL,
    path         TEXT NOT NULL,
    content_type TEXT NOT NULL,
    body         BYTEA NOT NULL,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (scid, path)
);
