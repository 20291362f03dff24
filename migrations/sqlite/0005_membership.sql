-- MembershipCredentials the node issued to its users. Their revocation list is derived
-- from account state: a removed account's membership reads as revoked.
CREATE TABLE issuer_memberships (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL UNIQUE REFERENCES acct_users (id),
    list_id    TEXT NOT NULL,
    list_index BIGINT NOT NULL,
    credential TEXT NOT NULL,
    issued_at  BIGINT NOT NULL,
    UNIQUE (list_id, list_index)
);
