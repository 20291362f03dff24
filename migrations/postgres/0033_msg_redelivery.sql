-- A delivered forward keeps its body for a while, with where it went and which copy of the
-- recipient node's mailboxes took it (its mailbox epoch): when that node is restored from a
-- backup (a new epoch), what it took under another epoch is delivered again.
ALTER TABLE msg_outbox ADD COLUMN delivered_to TEXT;
ALTER TABLE msg_outbox ADD COLUMN delivered_epoch TEXT;
ALTER TABLE msg_outbox ADD COLUMN delivered_at BIGINT;
ALTER TABLE msg_outbox ADD COLUMN requeued_at BIGINT;
ALTER TABLE msg_outbox ADD COLUMN redeliveries BIGINT NOT NULL DEFAULT 0;
CREATE INDEX msg_outbox_delivered_to ON msg_outbox (delivered_to, delivered_at) WHERE delivered_to IS NOT NULL;
