-- Facts about the node itself, e.g. the public URL its DIDs were made from.
CREATE TABLE node_settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
