-- RFC 9449 §10: a code bound to the DPoP key the authorization request named (dpop_jkt).
ALTER TABLE oidc_codes ADD COLUMN dpop_jkt TEXT;
