-- How the user signed in: RFC 8176 Authentication Method Reference values, space-separated
-- (e.g. `pwd`), recorded on the browser session and carried by its codes and by the tokens
-- issued from them, so ID tokens (also refreshed ones) carry `amr`. NULL on rows from
-- before: no `amr` is claimed for them.
ALTER TABLE oidc_sessions ADD COLUMN amr TEXT;
ALTER TABLE oidc_codes ADD COLUMN amr TEXT;
ALTER TABLE oidc_tokens ADD COLUMN amr TEXT;
