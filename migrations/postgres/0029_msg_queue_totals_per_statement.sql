-- The queue totals are kept per statement instead of per row: a statement that adds or
-- removes many pending rows (an imported mailbox, a device's acknowledgements, a moved
-- account's mailbox deleted) updates each device's totals once, not once per row.
DROP TRIGGER msg_pending_added ON msg_pending;
DROP TRIGGER msg_pending_removed ON msg_pending;
DROP FUNCTION msg_pending_added();
DROP FUNCTION msg_pending_removed();

CREATE FUNCTION msg_pending_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO msg_queue_totals AS t (device_id, messages, bytes, requests)
        SELECT device_id, COUNT(*), SUM(size), SUM(request) FROM added GROUP BY device_id
        ON CONFLICT (device_id) DO UPDATE SET messages = t.messages + excluded.messages,
            bytes = t.bytes + excluded.bytes, requests = t.requests + excluded.requests;
    RETURN NULL;
END
$$;
CREATE TRIGGER msg_pending_added AFTER INSERT ON msg_pending REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION msg_pending_added();

CREATE FUNCTION msg_pending_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE msg_queue_totals t SET messages = t.messages - r.messages, bytes = t.bytes - r.bytes,
            requests = t.requests - r.requests
        FROM (SELECT device_id, COUNT(*) AS messages, SUM(size) AS bytes, SUM(request) AS requests
              FROM removed GROUP BY device_id) r
        WHERE t.device_id = r.device_id;
    RETURN NULL;
END
$$;
CREATE TRIGGER msg_pending_removed AFTER DELETE ON msg_pending REFERENCING OLD TABLE AS removed
    FOR EACH STATEMENT EXECUTE FUNCTION msg_pending_removed();
