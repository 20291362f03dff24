-- Credentials a user holds, kept by their node so a lost device loses nothing.
CREATE TABLE holder_credentials (
    id          TEXT NOT NULL,
    user_id     TEXT NOT NULL REFERENCES acct_users (id),
    format      TEXT NOT NULL,
    credential  TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, id)
);
