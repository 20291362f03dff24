-- Unknown sign-in approval codes per client address, counted in the database rather than in
-- each process, so that replicas share one limit: with N replicas an attacker would
-- otherwise get N times the guesses. A row's window starts at its first failure.
CREATE TABLE oidc_approval_failures (
    address       TEXT PRIMARY KEY,
    failures      BIGINT NOT NULL,
    window_start  BIGINT NOT NULL
);
-- When a client first completed a flow (a code or a token was issued to it). Clients that
-- registered and never did are removed by housekeeping after a week.
ALTER TABLE oidc_clients ADD COLUMN used_at BIGINT;
-- Clients from before cannot tell: count them as used, so none is removed by surprise.
UPDATE oidc_clients SET used_at = created_at;
