-- DPoP (RFC 9449): the key (JWK thumbprint) a token is bound to, and each proof seen, by
-- key and jti, until it is too old to be accepted: none is used twice, on any replica.
ALTER TABLE oidc_tokens ADD COLUMN jkt TEXT;
CREATE TABLE oidc_dpop_proofs (
    jkt        TEXT NOT NULL,
    jti        TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (jkt, jti)
);
CREATE INDEX oidc_dpop_proofs_expiry ON oidc_dpop_proofs (expires_at);
