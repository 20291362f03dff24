//! HTTP endpoints of the verifier: requests made by users, and the wallet-facing
//! OpenID4VP endpoints (request object by reference, `direct_post` response).

use crate::oid4vp::{NewRequest, Presentations, RequestCreated, RequestState, VpError, REQUEST_TYP};
use crate::verify::Report;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, FromRef, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use sichat_accounts::{Accounts, AuthDevice};
use sichat_core::http::{ApiError, ApiJson, ApiPath};
use sichat_issuer::oid4vci::OAuthError;
use std::sync::Arc;

#[derive(Clone)]
struct AppState {
    vp: Arc<Presentations>,
    accounts: Arc<Accounts>,
}

impl FromRef<AppState> for Arc<Accounts> {
    fn from_ref(s: &AppState) -> Self {
        s.accounts.clone()
    }
}

pub fn router(vp: Arc<Presentations>, accounts: Arc<Accounts>) -> Router {
    Router::new()
        .route("/api/v1/verifier/requests", post(create))
        .route("/api/v1/verifier/requests/{id}", get(state))
        .route("/users/{name}/oid4vp/requests/{id}", get(request_object))
        .route("/users/{name}/oid4vp/responses/{id}", post(respond))
        .with_state(AppState { vp, accounts })
}

impl From<VpError> for ApiError {
    fn from(e: VpError) -> Self {
        match e {
            VpError::InvalidRequest(m) => ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", m),
            VpError::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, "not_found", m),
            VpError::Replayed(m) => ApiError::new(StatusCode::CONFLICT, "already_answered", m),
            VpError::NotAnAnswer(m) => ApiError::new(StatusCode::BAD_REQUEST, "invalid_presentation", m),
            VpError::Account(a) => a.into(),
            VpError::Internal(d) => ApiError::internal(d),
        }
    }
}

impl From<VpError> for OAuthError {
    fn from(e: VpError) -> Self {
        match e {
            VpError::InvalidRequest(m) => OAuthError::bad("invalid_request", m),
            VpError::NotFound(m) => OAuthError::new(StatusCode::NOT_FOUND, "invalid_request", m),
            VpError::Replayed(m) => OAuthError::bad("invalid_request", m),
            VpError::NotAnAnswer(m) => OAuthError::bad("invalid_request", m),
            other => {
                tracing::error!(error = %other, "internal error");
                OAuthError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "internal error")
            }
        }
    }
}

async fn create(
    State(s): State<AppState>,
    me: AuthDevice,
    ApiJson(req): ApiJson<NewRequest>,
) -> Result<(StatusCode, Json<RequestCreated>), ApiError> {
    Ok((StatusCode::CREATED, Json(s.vp.create(&me, req).await?)))
}

async fn state(
    State(s): State<AppState>,
    me: AuthDevice,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<RequestState>, ApiError> {
    Ok(Json(s.vp.state(&me, &id).await?))
}

async fn request_object(
    State(s): State<AppState>,
    ApiPath((name, id)): ApiPath<(String, String)>,
) -> Result<Response, OAuthError> {
    let jwt = s.vp.request_object(&name, &id).await?;
    let content_type = format!("application/{REQUEST_TYP}");
    Ok(([(header::CONTENT_TYPE, content_type.as_str()), (header::CACHE_CONTROL, "no-store")], jwt).into_response())
}

#[derive(Deserialize)]
struct DirectPost {
    vp_token: Option<String>,
    state: Option<String>,
}

/// `direct_post`: 200 with an empty object when the presentation is verified; 400
/// `invalid_presentation` with the first failed check's reason when its credentials fail
/// (the result is kept either way); 400 `invalid_request` when it is not the holder's
/// signed answer to this request at all (only counted: the request stays open).
async fn respond(
    State(s): State<AppState>,
    ApiPath((name, id)): ApiPath<(String, String)>,
    form: Result<Form<DirectPost>, FormRejection>,
) -> Result<Response, OAuthError> {
    let Form(post) = form.map_err(|e| OAuthError::new(e.status(), "invalid_request", e.body_text()))?;
    if post.state.as_deref().is_some_and(|st| st != id) {
        return Err(OAuthError::bad("invalid_request", "state does not match this request"));
    }
    let report: Report = s.vp.respond(&name, &id, post.vp_token.as_deref()).await?;
    if report.valid {
        return Ok(([(header::CACHE_CONTROL, "no-store")], Json(serde_json::json!({}))).into_response());
    }
    let why = report.first_failure().map(|c| format!("{}: {}", c.check, c.reason)).unwrap_or_default();
    Err(OAuthError::bad("invalid_presentation", format!("the presentation was not accepted: {why}")))
}
