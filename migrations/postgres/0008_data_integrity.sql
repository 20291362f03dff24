-- Credentials secured with Data Integrity (`ldp_vc`) as well as `vc+jwt`.
ALTER TABLE issuer_credentials ADD COLUMN format TEXT NOT NULL DEFAULT 'vc+jwt';
ALTER TABLE issuer_offers ADD COLUMN format TEXT NOT NULL DEFAULT 'vc+jwt';
