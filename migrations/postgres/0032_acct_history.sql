-- The account's history key (X25519, multibase), derived from its recovery key's secret:
-- history items are sealed to it as well as to the devices, so a recovered wallet reads them.
ALTER TABLE acct_users ADD COLUMN history_key TEXT;

-- The account's history: messages and contacts, each sealed by a wallet to the account's
-- devices and history key. The node never sees inside. `id` is opaque (a hash the wallet
-- makes); writing an id again replaces the item and gives it the next `seq`.
CREATE TABLE acct_history (
    user_id    TEXT NOT NULL REFERENCES acct_users (id),
    id         TEXT NOT NULL,
    seq        BIGINT NOT NULL,
    bytes      BIGINT NOT NULL,
    jwe        TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, id)
);
CREATE INDEX acct_history_seq ON acct_history (user_id, seq);
