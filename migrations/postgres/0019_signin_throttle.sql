-- The password sign-in throttle, in the database so that every replica sees the same
-- counts: attempts per account name and client address (`account` = '' for the address as
-- a whole), and until when the next attempt must wait. A success clears its account's row.
CREATE TABLE oidc_signin_throttle (
    account       TEXT NOT NULL,
    addr          TEXT NOT NULL,
    attempts      BIGINT NOT NULL,
    blocked_until BIGINT NOT NULL,
    last_at       BIGINT NOT NULL,
    PRIMARY KEY (account, addr)
);
CREATE INDEX oidc_signin_throttle_age ON oidc_signin_throttle (last_at);
