-- The requests folder has its own share of the quota: its bytes are summed when a request
-- comes in, and its oldest messages are dropped first. Index that folder alone.
CREATE INDEX msg_mailbox_requests ON msg_mailbox (user_id, seq) WHERE folder = 'requests';

-- Nonces of signed node requests (RFC 9421), kept until their signatures expire (`expires`,
-- seconds): a captured delivery sent again is refused after a restart and by every replica.
CREATE TABLE msg_federation_nonces (
    node_did TEXT NOT NULL,
    nonce    TEXT NOT NULL,
    expires  BIGINT NOT NULL,
    PRIMARY KEY (node_did, nonce)
);
CREATE INDEX msg_federation_nonces_expiry ON msg_federation_nonces (expires);
