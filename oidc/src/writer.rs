//! The provider's hot writes, authorization codes and tokens, through
//! [`sichat_core::group_commit`]: on SQLite concurrent writes share a transaction (one
//! flush to disk for many grants), and nothing is handed out before its commit. Plain
//! token inserts (no code or refresh token spent) of a batch are grouped into multi-row
//! `INSERT`s. On PostgreSQL each write is its own transaction, and a plain token insert a
//! single autocommitted statement.

use crate::OidcError;
use sichat_core::db::{Backend, Db};
use sichat_core::group_commit::{GroupCommit, Grouped, WriteFuture};
use sqlx::{Any, AnyConnection};
use std::sync::Arc;

/// Columns of a token row, each a parameter of the `INSERT`.
const TOKEN_COLUMNS: usize = 13;
/// Rows per multi-row `INSERT` (832 parameters, under SQLite's oldest limit of 999).
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
    /// The browser session's `sid`, for the ID tokens of later refreshes.
    pub sid: Option<String>,
    /// The DPoP key thumbprint the token is bound to.
    pub jkt: Option<String>,
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
    /// The browser session it was issued in (its hash and `sid`): the site is listed as
    /// signed in from that session, for logout.
    pub session: Option<(String, String)>,
    /// Where the session signed in from: recorded with the sign-in to the site.
    pub address: Option<String>,
    /// The DPoP key the code is bound to (RFC 9449 §10).
    pub dpop_jkt: Option<String>,
    pub expires_at: i64,
}

/// What a grant spends: the code or refresh token it redeems, marked used only if it is
/// still unused (and, for a refresh token, unrevoked). This guard is what makes codes and
/// refresh tokens single-use under concurrency.
pub enum Spend {
    Code {
        hash: String,
        at: i64,
    },
    Refresh {
        hash: String,
        at: i64,
    },
    /// An approved device grant (RFC 8628), redeemed once.
    Device {
        id: String,
        at: i64,
    },
}

/// A DPoP proof's `jti` (RFC 9449 §11.1), kept until the proof is too old to be accepted.
pub struct ProofRow {
    pub jkt: String,
    pub jti: String,
    pub expires_at: i64,
}

/// One atomic write.
pub enum Write {
    Code(Box<CodeRow>),
    /// Tokens, stored only if the DPoP proof (when there is one) was not used before and
    /// `spend` (when there is one) succeeds.
    Tokens {
        spend: Option<Spend>,
        proof: Option<ProofRow>,
        tokens: Vec<TokenRow>,
    },
}

/// How a write ended, once committed.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Written,
    /// The code or refresh token was already spent (or revoked): nothing was written.
    AlreadySpent,
    /// The DPoP proof's `jti` was already recorded: nothing was written.
    ProofReplayed,
}

/// Where the provider's codes and tokens are written.
pub struct Writer {
    db: Db,
    writes: GroupCommit,
    plain: Arc<PlainTokens>,
}

impl Writer {
    /// On SQLite, starts the group-commit task; it ends when the writer is dropped.
    pub fn new(db: Db) -> Self {
        Self { writes: GroupCommit::new(db.clone(), "oidc"), db, plain: Arc::new(PlainTokens) }
    }

    /// Run `write` in the shared transaction (on SQLite; its own on PostgreSQL) and return
    /// its answer once committed: for the other writes of a hot flow. It must be
    /// repeatable (it runs again, alone, if its batch fails), and its errors are its own.
    pub async fn commit<T, F>(&self, write: F) -> Result<T, sqlx::Error>
    where
        T: Send + 'static,
        F: for<'c> Fn(&'c mut AnyConnection) -> WriteFuture<'c, T> + Send + Sync + 'static,
    {
        self.writes.write(write).await
    }

    /// Write `w` durably: returns once it is committed.
    pub async fn write(&self, w: Write) -> Result<Outcome, OidcError> {
        match w {
            Write::Tokens { spend: None, proof: None, tokens } if tokens.is_empty() => Ok(Outcome::Written),
            Write::Tokens { spend: None, proof: None, tokens } if self.db.backend() == Backend::Postgres => {
                // One INSERT is atomic by itself: no BEGIN and COMMIT round trips.
                insert_tokens(self.db.pool(), &tokens.iter().collect::<Vec<_>>()).await?;
                Ok(Outcome::Written)
            }
            Write::Tokens { spend: None, proof: None, tokens } => {
                self.writes.write_grouped(&self.plain, Arc::new(tokens)).await?;
                Ok(Outcome::Written)
            }
            w => {
                let w = Arc::new(w);
                let outcome = self
                    .writes
                    .write(move |c| {
                        let w = w.clone();
                        Box::pin(async move { apply(c, &w).await })
                    })
                    .await?;
                Ok(outcome)
            }
        }
    }
}

/// Plain token inserts of a batch, as few multi-row `INSERT`s.
struct PlainTokens;

impl Grouped for PlainTokens {
    type Item = Vec<TokenRow>;
    type Out = ();

    fn write_all<'c>(&'c self, c: &'c mut AnyConnection, items: Vec<Arc<Vec<TokenRow>>>) -> WriteFuture<'c, Vec<()>> {
        Box::pin(async move {
            let rows: Vec<&TokenRow> = items.iter().flat_map(|tokens| tokens.iter()).collect();
            for chunk in rows.chunks(ROWS_PER_INSERT) {
                insert_tokens(&mut *c, chunk).await?;
            }
            Ok(vec![(); items.len()])
        })
    }
}

/// `rows` in one `INSERT`, in a transaction or on its own.
async fn insert_tokens<'e, E>(exec: E, rows: &[&TokenRow]) -> Result<(), sqlx::Error>
where
    E: sqlx::Executor<'e, Database = Any>,
{
    let mut sql = String::from(
        "INSERT INTO oidc_tokens (token_hash, kind, client_id, user_id, scope, family, code_hash, auth_time, \
         amr, sid, jkt, created_at, expires_at) VALUES ",
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
            .bind(&t.sid)
            .bind(&t.jkt)
            .bind(t.created_at)
            .bind(t.expires_at);
    }
    q.execute(exec).await?;
    Ok(())
}

/// Record a DPoP proof's `jti`; false if it was already recorded.
pub(crate) async fn record_proof<'e, E>(exec: E, p: &ProofRow) -> Result<bool, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = Any>,
{
    let fresh = sqlx::query(
        "INSERT INTO oidc_dpop_proofs (jkt, jti, expires_at) VALUES ($1, $2, $3) ON CONFLICT (jkt, jti) DO NOTHING",
    )
    .bind(&p.jkt)
    .bind(&p.jti)
    .bind(p.expires_at)
    .execute(exec)
    .await?;
    Ok(fresh.rows_affected() == 1)
}

async fn apply(conn: &mut AnyConnection, w: &Write) -> Result<Outcome, sqlx::Error> {
    match w {
        Write::Code(c) => {
            let (session_hash, sid) = match &c.session {
                Some((hash, sid)) => (Some(hash.as_str()), Some(sid.as_str())),
                None => (None, None),
            };
            sqlx::query(
                "INSERT INTO oidc_codes (code_hash, client_id, user_id, redirect_uri, scope, nonce, code_challenge, \
                 auth_time, amr, sid, session_hash, dpop_jkt, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
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
            .bind(sid)
            .bind(session_hash)
            .bind(&c.dpop_jkt)
            .bind(c.expires_at)
            .execute(&mut *conn)
            .await?;
            let (user, client, method, address) =
                (&c.user_id, Some(c.client_id.as_str()), c.amr.as_deref(), c.address.as_deref());
            crate::provider::record_sign_in(conn, user, client, method, address, sichat_core::ids::now_ms()).await?;
            if let (Some(hash), Some(sid)) = (session_hash, sid) {
                sqlx::query(
                    "INSERT INTO oidc_session_clients (session_hash, client_id, sid, user_id, created_at) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (session_hash, client_id) DO NOTHING",
                )
                .bind(hash)
                .bind(&c.client_id)
                .bind(sid)
                .bind(&c.user_id)
                .bind(c.expires_at)
                .execute(&mut *conn)
                .await?;
            }
        }
        Write::Tokens { spend, proof, tokens } => {
            if let Some(p) = proof {
                if !record_proof(&mut *conn, p).await? {
                    return Ok(Outcome::ProofReplayed);
                }
            }
            let spent = match spend {
                None => 1,
                Some(Spend::Code { hash, at }) => {
                    sqlx::query("UPDATE oidc_codes SET used_at = $1 WHERE code_hash = $2 AND used_at IS NULL")
                        .bind(at)
                        .bind(hash)
                        .execute(&mut *conn)
                        .await?
                        .rows_affected()
                }
                Some(Spend::Refresh { hash, at }) => sqlx::query(
                    "UPDATE oidc_tokens SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL \
                     AND revoked_at IS NULL",
                )
                .bind(at)
                .bind(hash)
                .execute(&mut *conn)
                .await?
                .rows_affected(),
                Some(Spend::Device { id, at }) => sqlx::query(
                    "UPDATE oidc_device_grants SET status = 'used', used_at = $1 WHERE id = $2 AND status = 'approved'",
                )
                .bind(at)
                .bind(id)
                .execute(&mut *conn)
                .await?
                .rows_affected(),
            };
            if spent != 1 {
                return Ok(Outcome::AlreadySpent);
            }
            if !tokens.is_empty() {
                insert_tokens(&mut *conn, &tokens.iter().collect::<Vec<_>>()).await?;
            }
        }
    }
    Ok(Outcome::Written)
}
