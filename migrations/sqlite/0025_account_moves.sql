-- Accounts moving between nodes. On the new node a move starts as a ticket (an invite
-- taken, an X25519 key the old node seals the account to), then holds the sealed bundle
-- and the chosen name (drafted), then is done when the account is created. On the old
-- node it records the export (one in flight per account) and, once done, where the
-- account went: the node keeps answering for the old DIDs and URLs from it.
CREATE TABLE acct_moves (
    id          TEXT PRIMARY KEY,
    direction   TEXT NOT NULL,
    status      TEXT NOT NULL,
    ticket_hash TEXT NOT NULL,
    user_id     TEXT REFERENCES acct_users (id),
    user_name   TEXT,
    peer_origin TEXT,
    invite_id   TEXT REFERENCES acct_invites (id),
    ticket_key  BLOB,
    bundle      TEXT,
    new_did     TEXT,
    old_dids    TEXT,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    finished_at BIGINT,
    UNIQUE (direction, ticket_hash)
);
CREATE INDEX acct_moves_user ON acct_moves (user_id, direction, status);
CREATE INDEX acct_moves_name ON acct_moves (user_name, direction, status);

-- The DIDs an account had on the nodes it came from: messages still addressed to them
-- (by senders that resolved the old DID) reach the account here.
CREATE TABLE acct_did_aliases (
    did     TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES acct_users (id)
);
