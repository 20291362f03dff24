-- The DID a status list is issued under: the DID its credentials name as issuer, so
-- verifiers that require the list's issuer to be the credential's (the VC Bitstring Status
-- List checks) keep verifying after the account gets a did:webvh DID. NULL: the account's
-- did:web DID (lists made before this column).
ALTER TABLE issuer_status_lists ADD COLUMN issuer_did TEXT;
