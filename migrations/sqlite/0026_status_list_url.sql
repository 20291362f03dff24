-- The URL a status list was first published at, for lists that moved in with their
-- account from another node: credentials name that URL, the old node redirects it here,
-- and the list keeps it as its id. NULL: this node's URL for the list.
ALTER TABLE issuer_status_lists ADD COLUMN published_url TEXT;
