-- A standby node for the account (`sichat standby add`): its DIDComm endpoint follows this
-- node's in the account's DID documents, and it hands over what it kept while this node
-- was down. `standby_node` is its DID, which signs the handovers.
ALTER TABLE acct_users ADD COLUMN standby_node TEXT;
ALTER TABLE acct_users ADD COLUMN standby_endpoint TEXT;
