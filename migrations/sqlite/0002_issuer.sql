-- Credential types a user defined (built-in types live in the code).
CREATE TABLE issuer_types (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES acct_users (id),
    name         TEXT NOT NULL,
    display_name TEXT NOT NULL,
    schema       TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    UNIQUE (user_id, name)
);

-- Bitstring Status Lists: the raw bitstring (131,072 bits) of each list.
CREATE TABLE issuer_status_lists (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES acct_users (id),
    purpose    TEXT NOT NULL,
    bits       BLOB NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX issuer_status_lists_user ON issuer_status_lists (user_id, purpose);

-- The issuance log: what was issued, to whom, when, and its status. No keys.
CREATE TABLE issuer_credentials (
    id               TEXT PRIMARY KEY,
    user_id          TEXT NOT NULL REFERENCES acct_users (id),
    type_name        TEXT NOT NULL,
    subject          TEXT NOT NULL,
    claims           TEXT NOT NULL,
    revocation_list  TEXT NOT NULL REFERENCES issuer_status_lists (id),
    revocation_index BIGINT NOT NULL,
    suspension_list  TEXT REFERENCES issuer_status_lists (id),
    suspension_index BIGINT,
    status           TEXT NOT NULL,
    issued_at        BIGINT NOT NULL,
    valid_until      BIGINT,
    UNIQUE (revocation_list, revocation_index),
    UNIQUE (suspension_list, suspension_index)
);
CREATE INDEX issuer_credentials_user ON issuer_credentials (user_id, issued_at);
