-- Sign-ins, as the user sees them on the account page and with `sichat oidc activity`: to
-- the node's pages (client_id NULL) and to each site, with how (amr) and from where. The
-- address a browser session signed in from is kept with it for the sites it signs in to.
ALTER TABLE oidc_sessions ADD COLUMN address TEXT;
CREATE TABLE oidc_signin_events (
    id        TEXT PRIMARY KEY,
    user_id   TEXT NOT NULL,
    client_id TEXT,
    method    TEXT,
    address   TEXT,
    at        BIGINT NOT NULL
);
CREATE INDEX oidc_signin_events_user ON oidc_signin_events (user_id, at);
