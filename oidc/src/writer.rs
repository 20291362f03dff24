//! Group commit for the provider's hot writes: authorization codes and tokens.
//!
//! SQLite has one writer and pays a flush to disk per commit (`synchronous=FULL`), so one
//! commit per token would cap every grant at the disk's flush rate. Here concurrent writes
//! share a transaction instead, and each caller's answer waits for the shared `COMMIT`, so
//! nothing is handed out before it is durable. Batches form by themselves: whatever queued
//! up while the last one committed goes into the next. Plain token inserts (no code or
//! refresh token spent) of a batch become one multi-row `INSERT`. If anything in a batch
//! fails, the batch is rolled back and its writes run again one transaction each, so a
//! failing write fails alone. PostgreSQL commits concurrently on its pool, so there each
//! write is simply its own transaction, or for plain token inserts a single autocommitted
//! statement.

use crate::OidcError;
use sichat_core::db::{Backend, Db};
use sqlx::{Any, Transaction};
use tokio::sync::{mpsc, oneshot};

/// Writes per shared transaction, at most.
const MAX_BATCH: usize = 256;
/// Columns of a token row, each a parameter of the `INSERT`.
const TOKEN_COLUMNS: usize = 11;
/// Rows per multi-row `INSERT` (704 parameters, under SQLite's oldest limit of 999).
const ROWS_PER_INSERT: usize = 64;

/// A row of `oidc_tokens`.
pub struct TokenRow {
    pub token_hash: String,
    pub kind: &'static str,
    pub client_id: String,
    pub user_id: Option<String>,
    pub scope: String,
    pub family: String,
    pub code_hash: Option<String>,
    pub auth_time: Option<i64>,
    /// How the user signed in (stored `amr`), for a user's refresh token.
    pub amr: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
}

/// A row of `oidc_codes`.
pub struct CodeRow {
    pub code_hash: String,
    pub client_id: String,
    pub user_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub nonce: Option<String>,
    pub code_challenge: String,
    pub auth_time: i64,
    pub amr: Option<String>,
    pub expires_at: i64,
}

/// What a grant spends: the code or refresh token it redeems, marked used only if it is
/// still unused (and, for a refresh token, unrevoked). This guard is what makes codes and
/// refresh tokens single-use under concurrency.
pub enum Spend {
    Code { hash: String, at: i64 },
    Refresh { hash: String, at: i64 },
}

/// One atomic write.
pub enum Write {
    Code(CodeRow),
    /// Tokens, stored only if `spend` (when there is one) succeeds.
    Tokens {
        spend: Option<Spend>,
        tokens: Vec<TokenRow>,
    },
}

/// How a write ended, once committed.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Written,
    /// The code or refresh token was already spent (or revoked): nothing was written.
    AlreadySpent,
}

type Job = (Write, oneshot::Sender<Result<Outcome, OidcError>>);

/// Where the provider's codes and tokens are written.
pub struct Writer {
    db: Db,
    /// The group-commit task's queue (SQLite only).
    queue: Option<mpsc::Sender<Job>>,
}

impl Writer {
    /// On SQLite, starts the group-commit task; it ends when the writer is dropped.
    pub fn new(db: Db) -> Self {
        let queue = (db.backend() == Backend::Sqlite).then(|| {
            let (send, receive) = mpsc::channel(4 * MAX_BATCH);
            tokio::spawn(group_commit(db.clone(), receive));
            send
        });
        Self { db, queue }
    }

    /// Write `w` durably: returns once it is committed.
    pub async fn write(&self, w: Write) -> Result<Outcome, OidcError> {
        let Some(queue) = &self.queue else {
            if let Write::Tokens { spend: None, tokens } = &w {
                // One INSERT is atomic by itself: no BEGIN and COMMIT round trips.
                insert_tokens(self.db.pool(), &tokens.iter().collect::<Vec<_>>()).await?;
                return Ok(Outcome::Written);
            }
            let mut tx = self.db.pool().begin().await?;
            let outcome = apply(&mut tx, &w).await?;
            tx.commit().await?;
            return Ok(outcome);
        };
        let (send, receive) = oneshot::channel();
        queue.send((w, send)).await.map_err(|_| OidcError::internal("the token writer has stopped"))?;
        receive.await.map_err(|_| OidcError::internal("the token writer dropped a write"))?
    }
}

async fn group_commit(db: Db, mut queue: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        metrics::histogram!("sichat_oidc_group_commit_writes").record(batch.len() as f64);
        let outcomes = match commit(&db, &batch).await {
            Ok(outcomes) => outcomes,
            Err(e) => {
                // Find the culprit: each write alone, in its own transaction.
                tracing::warn!(error = %e, writes = batch.len(), "group commit failed; writing one by one");
                let mut outcomes = Vec::with_capacity(batch.len());
                for (w, _) in &batch {
                    outcomes.push(alone(&db, w).await);
                }
                outcomes
            }
        };
        for ((_, reply), outcome) in batch.drain(..).zip(outcomes) {
            let _ = reply.send(outcome);
        }
    }
}

async fn alone(db: &Db, w: &Write) -> Result<Outcome, OidcError> {
    let mut tx = db.pool().begin().await?;
    let outcome = apply(&mut tx, w).await?;
    tx.commit().await?;
    Ok(outcome)
}

/// One transaction for the whole batch; any error rolls all of it back.
async fn commit(db: &Db, batch: &[Job]) -> Result<Vec<Result<Outcome, OidcError>>, OidcError> {
    let mut tx = db.pool().begin().await?;
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut plain: Vec<&TokenRow> = Vec::new();
    for (w, _) in batch {
        match w {
            Write::Tokens { spend: None, tokens } => {
                plain.extend(tokens);
                outcomes.push(Ok(Outcome::Written));
            }
            w => outcomes.push(Ok(apply(&mut tx, w).await?)),
        }
    }
    for rows in plain.chunks(ROWS_PER_INSERT) {
        insert_tokens(&mut *tx, rows).await?;
    }
    tx.commit().await?;
    Ok(outcomes)
}

/// `rows` in one `INSERT`, in a transaction or on its own.
async fn insert_tokens<'e, E>(exec: E, rows: &[&TokenRow]) -> Result<(), OidcError>
where
    E: sqlx::Executor<'e, Database = Any>,
{
    let mut sql = String::from(
        "INSERT INTO oidc_tokens (token_hash, kind, client_id, user_id, scope, family, code_hash, auth_time, \
         amr, created_at, expires_at) VALUES ",
    );
    for i in 0..rows.len() {
        sql.push_str(if i == 0 { "(" } else { ", (" });
        for c in 1..=TOKEN_COLUMNS {
            let sep = if c == 1 { "" } else { ", " };
            sql.push_str(&format!("{sep}${}", i * TOKEN_COLUMNS + c));
        }
        sql.push(')');
    }
    let mut q = sqlx::query(&sql);
    for t in rows {
        q = q
            .bind(&t.token_hash)
            .bind(t.kind)
            .bind(&t.client_id)
            .bind(&t.user_id)
            .bind(&t.scope)
            .bind(&t.family)
            .bind(&t.code_hash)
            .bind(t.auth_time)
            .bind(&t.amr)
            .bind(t.created_at)
            .bind(t.expires_at);
    }
    q.execute(exec).await?;
    Ok(())
}

async fn apply(tx: &mut Transaction<'_, Any>, w: &Write) -> Result<Outcome, OidcError> {
    match w {
        Write::Code(c) => {
            sqlx::query(
                "INSERT INTO oidc_codes (code_hash, client_id, user_id, redirect_uri, scope, nonce, code_challenge, \
                 auth_time, amr, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(&c.code_hash)
            .bind(&c.client_id)
            .bind(&c.user_id)
            .bind(&c.redirect_uri)
            .bind(&c.scope)
            .bind(&c.nonce)
            .bind(&c.code_challenge)
            .bind(c.auth_time)
            .bind(&c.amr)
            .bind(c.expires_at)
            .execute(&mut **tx)
            .await?;
        }
        Write::Tokens { spend, tokens } => {
            let spent = match spend {
                None => 1,
                Some(Spend::Code { hash, at }) => {
                    sqlx::query("UPDATE oidc_codes SET used_at = $1 WHERE code_hash = $2 AND used_at IS NULL")
                        .bind(at)
                        .bind(hash)
                        .execute(&mut **tx)
                        .await?
                        .rows_affected()
                }
                Some(Spend::Refresh { hash, at }) => sqlx::query(
                    "UPDATE oidc_tokens SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL \
                     AND revoked_at IS NULL",
                )
                .bind(at)
                .bind(hash)
                .execute(&mut **tx)
                .await?
                .rows_affected(),
            };
            if spent != 1 {
                return Ok(Outcome::AlreadySpent);
            }
            if !tokens.is_empty() {
                insert_tokens(&mut **tx, &tokens.iter().collect::<Vec<_>>()).await?;
            }
        }
    }
    Ok(Outcome::Written)
}
