//! HTTP endpoints of the issuer. Handlers parse, call [`Issuer`], and map.

use crate::service::{IssueRequest, Issued, IssuedRecord, Issuer, NewType, StatusAction};
use crate::types::CredentialType;
use axum::extract::{FromRef, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use sichat_accounts::{Accounts, AuthDevice};
use sichat_core::http::{ApiError, ApiJson};
use std::sync::Arc;

#[derive(Clone)]
struct AppState {
    issuer: Arc<Issuer>,
    accounts: Arc<Accounts>,
}

impl FromRef<AppState> for Arc<Accounts> {
    fn from_ref(s: &AppState) -> Self {
        s.accounts.clone()
    }
}

pub fn router(issuer: Arc<Issuer>, accounts: Arc<Accounts>) -> Router {
    Router::new()
        .route("/api/v1/issuer/types", get(list_types).post(add_type))
        .route("/api/v1/issuer/credentials", get(issued).post(issue))
        .route("/api/v1/issuer/credentials/{id}/{action}", post(set_status))
        .route("/users/{name}/status/{list}", get(status_list))
        .route("/users/{name}/credential-types/{type_name}/schema.json", get(schema))
        .with_state(AppState { issuer, accounts })
}

async fn list_types(State(s): State<AppState>, me: AuthDevice) -> Result<Json<Vec<CredentialType>>, ApiError> {
    Ok(Json(s.issuer.types(&me.user_id).await?))
}

async fn add_type(
    State(s): State<AppState>,
    me: AuthDevice,
    ApiJson(new): ApiJson<NewType>,
) -> Result<impl IntoResponse, ApiError> {
    Ok((StatusCode::CREATED, Json(s.issuer.add_type(&me, new).await?)))
}

async fn issue(
    State(s): State<AppState>,
    me: AuthDevice,
    ApiJson(req): ApiJson<IssueRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let issued: Issued = s.issuer.issue(&me, req).await?;
    Ok((StatusCode::CREATED, Json(issued)))
}

async fn issued(State(s): State<AppState>, me: AuthDevice) -> Result<Json<Vec<IssuedRecord>>, ApiError> {
    Ok(Json(s.issuer.issued(&me).await?))
}

async fn set_status(
    State(s): State<AppState>,
    me: AuthDevice,
    Path((id, action)): Path<(String, String)>,
) -> Result<Json<IssuedRecord>, ApiError> {
    let action = match action.as_str() {
        "revoke" => StatusAction::Revoke,
        "suspend" => StatusAction::Suspend,
        "resume" => StatusAction::Resume,
        other => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no action {other:?}: revoke, suspend or resume"),
            ))
        }
    };
    Ok(Json(s.issuer.set_status(&me, &id, action).await?))
}

/// The signed status list credential. Clients revalidate every time (`no-cache`) and get a
/// cheap 304 while the list is unchanged, so a revocation is visible at once.
async fn status_list(
    State(s): State<AppState>,
    Path((name, list)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let served = s.issuer.status_list(&name, &list).await?;
    let cache = [(header::ETAG, served.etag.clone()), (header::CACHE_CONTROL, "no-cache".to_owned())];
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == served.etag || t.trim() == "*"));
    if matches {
        return Ok((StatusCode::NOT_MODIFIED, cache).into_response());
    }
    Ok((cache, [(header::CONTENT_TYPE, "application/vc+jwt")], served.jwt).into_response())
}

async fn schema(
    State(s): State<AppState>,
    Path((name, type_name)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let doc = s.issuer.schema_document(&name, &type_name).await?;
    Ok(([(header::CONTENT_TYPE, "application/schema+json")], Json(doc)))
}
