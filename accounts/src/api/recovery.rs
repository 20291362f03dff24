//! `/api/v1/recovery/…`: social recovery (see [`crate::protocol::recovery`]).
//!
//! - `POST /api/v1/recovery/requests` opens a recovery (a wallet that lost its root key);
//! - `GET /api/v1/recovery/requests/{id}` shows it, with the approvals (shares sealed to the
//!   request's key);
//! - `POST /api/v1/recovery/requests/{id}/approvals` takes a friend's signed approval;
//! - `GET /api/v1/recovery/requests` lists the account's recoveries, and
//!   `POST /api/v1/recovery/cancel` cancels them, for a device of the account.

use crate::protocol::*;
use crate::service::{Accounts, AuthDevice};
use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use sichat_core::http::{ApiError, ApiJson, ApiPath};
use sichat_core::resolver::Resolver;
use std::sync::Arc;

#[derive(Clone)]
struct RecoveryState {
    accounts: Arc<Accounts>,
    resolver: Arc<Resolver>,
}

impl FromRef<RecoveryState> for Arc<Accounts> {
    fn from_ref(s: &RecoveryState) -> Self {
        s.accounts.clone()
    }
}

/// The recovery routes; `resolver` finds the friends' keys.
pub fn router(accounts: Arc<Accounts>, resolver: Arc<Resolver>) -> Router {
    Router::new()
        .route("/api/v1/recovery/requests", post(open).get(list))
        .route("/api/v1/recovery/requests/{id}", get(show))
        .route("/api/v1/recovery/requests/{id}/approvals", post(approve))
        .route("/api/v1/recovery/cancel", post(cancel))
        .with_state(RecoveryState { accounts, resolver })
}

async fn open(
    State(s): State<RecoveryState>,
    ApiJson(body): ApiJson<OpenRecovery>,
) -> Result<impl IntoResponse, ApiError> {
    Ok((StatusCode::CREATED, Json(s.accounts.open_recovery(&body).await?)))
}

async fn show(State(s): State<RecoveryState>, ApiPath(id): ApiPath<String>) -> Result<Json<RecoveryRequest>, ApiError> {
    Ok(Json(s.accounts.recovery_request(&id).await?))
}

async fn approve(
    State(s): State<RecoveryState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<PostApproval>,
) -> Result<Json<RecoveryRequest>, ApiError> {
    Ok(Json(s.accounts.approve_recovery(&s.resolver, &id, &body.approval).await?))
}

async fn list(State(s): State<RecoveryState>, me: AuthDevice) -> Result<Json<Vec<RecoveryRequest>>, ApiError> {
    Ok(Json(s.accounts.recoveries_of(&me).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Cancel {
    /// One request; none: every open one.
    #[serde(default)]
    id: Option<String>,
}

async fn cancel(
    State(s): State<RecoveryState>,
    me: AuthDevice,
    ApiJson(body): ApiJson<Cancel>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let n = s.accounts.cancel_recovery(&me, body.id.as_deref()).await?;
    Ok(Json(serde_json::json!({ "cancelled": n })))
}
