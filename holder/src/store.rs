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
