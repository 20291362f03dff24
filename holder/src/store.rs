//! The node keeps a copy of every credential its users hold (`holder_credentials`).
//! It accepts only credentials whose subject is the caller's own DID.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sichat_accounts::{Accounts, AuthDevice};
use sichat_core::db::Db;
use sichat_core::http::{ApiError, ApiJson, ApiPath};
use sqlx::Row;
use std::sync::Arc;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredCredential {
    pub id: String,
    pub format: String,
    pub credential: String,
    pub received_at: i64,
}

#[derive(Clone)]
struct AppState {
    db: Db,
    accounts: Arc<Accounts>,
}

impl axum::extract::FromRef<AppState> for Arc<Accounts> {
    fn from_ref(s: &AppState) -> Self {
        s.accounts.clone()
    }
}

pub fn router(db: Db, accounts: Arc<Accounts>) -> Router {
    Router::new()
        .route("/api/v1/holder/credentials", get(list).post(put))
        .route("/api/v1/holder/credentials/{id}", delete(remove))
        .with_state(AppState { db, accounts })
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_credential", message)
}

async fn put(
    State(s): State<AppState>,
    me: AuthDevice,
    ApiJson(c): ApiJson<StoredCredential>,
) -> Result<StatusCode, ApiError> {
    if !matches!(c.format.as_str(), "vc+jwt" | "ldp_vc") {
        return Err(bad("only vc+jwt and ldp_vc credentials are kept"));
    }
    if c.id.is_empty() || c.id.len() > 128 {
        return Err(bad("id must be 1-128 characters"));
    }
    let vc: Value = crate::check::unverified(&c.format, &c.credential).map_err(|e| bad(e.to_string()))?;
    let did = s.accounts.user_did(&me.user_name)?;
    if vc.pointer("/credentialSubject/id").and_then(Value::as_str) != Some(did.as_str()) {
        return Err(bad(format!("its subject is not {did}: the node keeps only your own credentials")));
    }
    sqlx::query(
        "INSERT INTO holder_credentials (id, user_id, format, credential, received_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (user_id, id) DO UPDATE SET credential = excluded.credential, received_at = excluded.received_at",
    )
    .bind(&c.id)
    .bind(&me.user_id)
    .bind(&c.format)
    .bind(&c.credential)
    .bind(c.received_at)
    .execute(s.db.pool())
    .await
    .map_err(ApiError::internal)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list(State(s): State<AppState>, me: AuthDevice) -> Result<Json<Vec<StoredCredential>>, ApiError> {
    let rows = sqlx::query(
        "SELECT id, format, credential, received_at FROM holder_credentials WHERE user_id = $1 ORDER BY received_at",
    )
    .bind(&me.user_id)
    .fetch_all(s.db.pool())
    .await
    .map_err(ApiError::internal)?;
    let out = rows
        .iter()
        .map(|r| {
            Ok(StoredCredential {
                id: r.try_get("id")?,
                format: r.try_get("format")?,
                credential: r.try_get("credential")?,
                received_at: r.try_get("received_at")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map_err(ApiError::internal)?;
    Ok(Json(out))
}

async fn remove(
    State(s): State<AppState>,
    me: AuthDevice,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let r = sqlx::query("DELETE FROM holder_credentials WHERE user_id = $1 AND id = $2")
        .bind(&me.user_id)
        .bind(&id)
        .execute(s.db.pool())
        .await
        .map_err(ApiError::internal)?;
    if r.rows_affected() == 0 {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("your node keeps no credential {id}")));
    }
    Ok(StatusCode::NO_CONTENT)
}

// ---- an account moving between nodes (see `crate::account_hooks`) ----

/// The holder's part of a moved account: the node's copies of its credentials.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HolderPart {
    pub credentials: Vec<MovedCredential>,
}

/// A row of `holder_credentials`, less its owner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
#[serde(deny_unknown_fields)]
pub struct MovedCredential {
    pub id: String,
    /// `vc+jwt` or `ldp_vc`.
    pub format: String,
    pub credential: String,
    pub received_at: i64,
}

impl HolderPart {
    /// Whether every credential is one this node would keep: what is wrong, naming it. The
    /// subject is not checked against the account's DID: it names the DID of the old node.
    pub fn check(&self) -> Result<(), String> {
        let mut ids = std::collections::HashSet::new();
        for c in &self.credentials {
            if c.id.is_empty() || c.id.len() > 128 {
                let shown: String = c.id.chars().take(40).collect();
                return Err(format!("credential id {shown:?} must be 1-128 characters"));
            }
            let bad = |why: &dyn std::fmt::Display| format!("credential {}: {why}", c.id);
            if !ids.insert(c.id.as_str()) {
                return Err(bad(&"appears twice"));
            }
            if !matches!(c.format.as_str(), "vc+jwt" | "ldp_vc") {
                return Err(bad(&format!("format {:?} is neither vc+jwt nor ldp_vc", c.format)));
            }
            crate::check::unverified(&c.format, &c.credential).map_err(|e| bad(&e))?;
        }
        Ok(())
    }
}

/// The account's credentials kept here, every column but the owner.
pub async fn credentials_of(c: &mut sqlx::AnyConnection, user_id: &str) -> Result<Vec<MovedCredential>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, format, credential, received_at FROM holder_credentials WHERE user_id = $1 ORDER BY received_at, id",
    )
    .bind(user_id)
    .fetch_all(c)
    .await
}

/// Which of the account's credentials `ids` are already kept here.
pub async fn kept_ids(c: &mut sqlx::AnyConnection, user_id: &str, ids: &[&str]) -> Result<Vec<String>, sqlx::Error> {
    // Bounded statements: SQLite builds before 3.32 allow 999 parameters.
    const CHUNK: usize = 500;
    let mut found = Vec::new();
    for chunk in ids.chunks(CHUNK) {
        let params = (2..chunk.len() + 2).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
        let sql = format!("SELECT id FROM holder_credentials WHERE user_id = $1 AND id IN ({params})");
        let mut q = sqlx::query_scalar(&sql).bind(user_id);
        for id in chunk {
            q = q.bind(*id);
        }
        found.extend(q.fetch_all(&mut *c).await?);
    }
    Ok(found)
}

pub async fn insert_moved(c: &mut sqlx::AnyConnection, user_id: &str, m: &MovedCredential) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO holder_credentials (id, user_id, format, credential, received_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&m.id)
    .bind(user_id)
    .bind(&m.format)
    .bind(&m.credential)
    .bind(m.received_at)
    .execute(c)
    .await?;
    Ok(())
}
