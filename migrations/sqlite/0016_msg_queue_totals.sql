-- Each device's queue totals, kept by triggers on msg_pending (whatever deletes the rows:
-- acknowledgements, quota and expiry drops through the cascade), so that a queue status is
-- a few index lookups instead of a pass over every pending row.
CREATE TABLE msg_queue_totals (
    device_id TEXT PRIMARY KEY,
    messages  BIGINT NOT NULL,
    bytes     BIGINT NOT NULL,
    requests  BIGINT NOT NULL
);
INSERT INTO msg_queue_totals (device_id, messages, bytes, requests)
    SELECT device_id, COUNT(*), SUM(size), SUM(request) FROM msg_pending GROUP BY device_id;

CREATE TRIGGER msg_pending_added AFTER INSERT ON msg_pending BEGIN
    INSERT INTO msg_queue_totals (device_id, messages, bytes, requests)
        VALUES (NEW.device_id, 1, NEW.size, NEW.request)
        ON CONFLICT (device_id) DO UPDATE SET messages = messages + 1, bytes = bytes + excluded.bytes,
            requests = requests + excluded.requests;
END;

CREATE TRIGGER msg_pending_removed AFTER DELETE ON msg_pending BEGIN
    UPDATE msg_queue_totals SET messages = messages - 1, bytes = bytes - OLD.size, requests = requests - OLD.request
        WHERE device_id = OLD.device_id;
END;
