//! `/api/v1/history…`: the account's sealed history (see [`crate::protocol::history`]), for
//! the account's devices.

use crate::protocol::*;
use crate::service::{Accounts, AuthDevice};
use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use sichat_core::http::{ApiError, ApiJson};
use std::sync::Arc;

pub fn router(accounts: Arc<Accounts>) -> Router {
    Router::new()
        .route("/api/v1/history", get(page).post(put))
        .route("/api/v1/history/keys", get(keys))
        .with_state(accounts)
}

#[derive(Deserialize)]
struct After {
    #[serde(default)]
    after: i64,
}

async fn page(
    State(a): State<Arc<Accounts>>,
    me: AuthDevice,
    Query(q): Query<After>,
) -> Result<Json<HistoryPage>, ApiError> {
    Ok(Json(a.history(&me, q.after).await?))
}

async fn put(
    State(a): State<Arc<Accounts>>,
    me: AuthDevice,
    ApiJson(body): ApiJson<PutHistory>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let kept = a.put_history(&me, &body).await?;
    Ok(Json(serde_json::json!({ "kept": kept })))
}

async fn keys(State(a): State<Arc<Accounts>>, me: AuthDevice) -> Result<Json<HistoryKeys>, ApiError> {
    Ok(Json(a.history_keys(&me).await?))
}
