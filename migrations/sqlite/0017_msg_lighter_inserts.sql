-- The requests-folder count reads only requests-folder rows: index those alone, so that a
-- message to the inbox (nearly all of them) writes one index entry fewer.
DROP INDEX msg_received_sender;
CREATE INDEX msg_received_requests ON msg_received (user_id, received_at) WHERE folder = 'requests';
