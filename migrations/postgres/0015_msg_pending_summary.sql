-- What a device's queue status needs, kept on its pending rows: the status of a queue of
-- 100,000 messages then reads these narrow rows instead of every envelope's page.
ALTER TABLE msg_pending ADD COLUMN size BIGINT NOT NULL DEFAULT 0;
ALTER TABLE msg_pending ADD COLUMN request BIGINT NOT NULL DEFAULT 0;
ALTER TABLE msg_pending ADD COLUMN received_at BIGINT NOT NULL DEFAULT 0;
UPDATE msg_pending SET
    size = (SELECT m.size FROM msg_mailbox m WHERE m.seq = msg_pending.seq),
    request = (SELECT CASE WHEN m.folder = 'requests' THEN 1 ELSE 0 END FROM msg_mailbox m WHERE m.seq = msg_pending.seq),
    received_at = (SELECT m.received_at FROM msg_mailbox m WHERE m.seq = msg_pending.seq);
