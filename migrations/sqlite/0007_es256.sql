-- Issuing keys of more than one algorithm, and a signing algorithm per credential type.
ALTER TABLE acct_issuing_keys ADD COLUMN algorithm TEXT NOT NULL DEFAULT 'Ed25519';
ALTER TABLE issuer_types ADD COLUMN alg TEXT NOT NULL DEFAULT 'EdDSA';
