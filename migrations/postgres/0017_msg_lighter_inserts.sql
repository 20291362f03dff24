-- The requests-folder count reads only requests-folder rows: index those alone, so that a
-- message to the inbox (nearly all of them) writes one index entry fewer.
DROP INDEX msg_received_sender;
CREATE INDEX msg_received_requests ON msg_received (user_id, received_at) WHERE folder = 'requests';

-- Envelopes and forwards are a few KB of ciphertext that does not compress. Past ~2 KB a
-- row was compressed (in vain) and its envelope moved to the TOAST table on every insert;
-- rows of up to a page now stay inline and uncompressed. Larger ones still go out of line.
ALTER TABLE msg_mailbox SET (toast_tuple_target = 8160);
ALTER TABLE msg_outbox SET (toast_tuple_target = 8160);
ALTER TABLE msg_mailbox ALTER COLUMN envelope SET STORAGE EXTERNAL;
ALTER TABLE msg_outbox ALTER COLUMN body SET STORAGE EXTERNAL;
