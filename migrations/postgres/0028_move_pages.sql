-- Pages of a moving account that did not fit its bundle (a large mailbox), held on the new
-- node between the draft and the import, in the order the wallet handed them over. Each is
-- sealed to the move's ticket key; the import opens them and deletes them.
CREATE TABLE acct_move_pages (
    move_id TEXT NOT NULL REFERENCES acct_moves (id) ON DELETE CASCADE,
    seq     BIGINT NOT NULL,
    part    TEXT NOT NULL,
    last    BIGINT NOT NULL,
    page    TEXT NOT NULL,
    PRIMARY KEY (move_id, seq)
);
