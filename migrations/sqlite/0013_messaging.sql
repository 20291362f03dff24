-- Messaging: the outbox of messages users send, the mailbox of messages they receive.

-- Forwards handed over by a user's device, until the recipient's node has them.
CREATE TABLE msg_outbox (
    id              TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL REFERENCES acct_users (id),
    sender          TEXT NOT NULL,
    recipient       TEXT NOT NULL,
    body            TEXT NOT NULL,
    body_hash       TEXT NOT NULL,
    state           TEXT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX msg_outbox_due ON msg_outbox (state, next_attempt_at);
CREATE INDEX msg_outbox_age ON msg_outbox (updated_at);

-- Messages waiting for a user's devices. `seq` orders them as they arrived.
CREATE TABLE msg_mailbox (
    seq          INTEGER PRIMARY KEY,
    id           TEXT NOT NULL,
    user_id      TEXT NOT NULL REFERENCES acct_users (id),
    sender       TEXT NOT NULL,
    folder       TEXT NOT NULL,
    envelope     TEXT NOT NULL,
    size         BIGINT NOT NULL,
    presentation BIGINT NOT NULL DEFAULT 0,
    received_at  BIGINT NOT NULL,
    UNIQUE (user_id, id)
);
CREATE INDEX msg_mailbox_user ON msg_mailbox (user_id, seq);
CREATE INDEX msg_mailbox_age ON msg_mailbox (received_at);

-- Which device has not yet acknowledged which message.
CREATE TABLE msg_pending (
    device_id TEXT NOT NULL,
    seq       BIGINT NOT NULL REFERENCES msg_mailbox (seq) ON DELETE CASCADE,
    PRIMARY KEY (device_id, seq)
);
CREATE INDEX msg_pending_seq ON msg_pending (seq);

-- Every forward accepted for a user, kept after delivery: a redelivery by the sending
-- node is recognised, a replay of the id with other content refused.
CREATE TABLE msg_received (
    user_id     TEXT NOT NULL,
    id          TEXT NOT NULL,
    body_hash   TEXT NOT NULL,
    sender      TEXT NOT NULL,
    folder      TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, id)
);
CREATE INDEX msg_received_age ON msg_received (received_at);
CREATE INDEX msg_received_sender ON msg_received (user_id, sender, received_at);

-- Each user's inbound policy (JSON).
CREATE TABLE msg_policies (
    user_id    TEXT PRIMARY KEY REFERENCES acct_users (id),
    policy     TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- What the quota or the age limit dropped, reported to the user's devices.
CREATE TABLE msg_drops (
    seq     INTEGER PRIMARY KEY,
    user_id TEXT NOT NULL,
    reason  TEXT NOT NULL,
    count   BIGINT NOT NULL,
    bytes   BIGINT NOT NULL,
    at      BIGINT NOT NULL
);
CREATE INDEX msg_drops_user ON msg_drops (user_id, seq);
-- The last drop report each device has acknowledged.
CREATE TABLE msg_drops_seen (
    device_id TEXT PRIMARY KEY,
    seq       BIGINT NOT NULL
);

-- Bytes and messages each user's mailbox holds, kept with every change: the quota check
-- must not sum the whole mailbox on every message.
CREATE TABLE msg_usage (
    user_id  TEXT PRIMARY KEY,
    bytes    BIGINT NOT NULL,
    messages BIGINT NOT NULL
);
