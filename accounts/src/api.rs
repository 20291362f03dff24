//! HTTP endpoints of the accounts service. Handlers parse, call [`Accounts`], and map.

use crate::protocol::*;
use crate::service::{Accounts, AuthDevice};
use crate::AccountError;
use axum::extract::{FromRef, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use sichat_core::http::{ApiError, ApiJson, ApiPath};
use sichat_core::node::FormerUrl;
use std::sync::Arc;

pub mod history;
pub mod recovery;

type AppState = Arc<Accounts>;

/// Moving an account between nodes (see [`crate::protocol::moves`]). Bundles are large:
/// the server gives these routes a body limit of their own.
pub fn moves_router(accounts: Arc<Accounts>) -> Router {
    Router::new()
        .route("/api/v1/moves/tickets", post(move_ticket))
        .route("/api/v1/moves/export", post(move_export))
        .route("/api/v1/moves/export/page", post(move_export_page))
        .route("/api/v1/moves/pages", post(move_page))
        .route("/api/v1/moves/draft", post(move_draft))
        .route("/api/v1/moves/import", post(move_import))
        .with_state(accounts)
}

/// Requests for a moved account's URLs on its old node (`/users/<name>/…`, and
/// `/.well-known/<metadata>/users/<name>`), other than its DID document and log, which this
/// node keeps serving, are redirected (`308`) to the same URL on the new node; once the node
/// stops answering for the account (`moved_account_days`), they are gone (`410`).
pub async fn redirect_moved(State(a): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let name = match path.strip_prefix("/users/") {
        Some(rest) => {
            rest.split_once('/').filter(|(_, tail)| !matches!(*tail, "did.json" | "did.jsonl")).map(|(n, _)| n)
        }
        None => path
            .strip_prefix("/.well-known/")
            .and_then(|rest| rest.split_once("/users/"))
            .map(|(_, n)| n)
            .filter(|n| !n.contains('/')),
    };
    let Some(name) = name.filter(|n| UserName::parse(n).is_ok()) else { return next.run(req).await };
    match a.moved_away(name).await {
        Ok(Some(away)) if !away.answering => {
            ApiError::from(AccountError::AccountMoved { name: name.to_owned(), to: away.origin }).into_response()
        }
        Ok(Some(away)) => {
            let old = format!("/users/{name}");
            let moved = path.replacen(&old, &format!("/users/{}", away.name), 1);
            let query = req.uri().query().map(|q| format!("?{q}")).unwrap_or_default();
            let location = format!("{}{moved}{query}", away.origin.trim_end_matches('/'));
            match HeaderValue::from_str(&location) {
                Ok(v) => (StatusCode::PERMANENT_REDIRECT, [(header::LOCATION, v)]).into_response(),
                Err(_) => next.run(req).await,
            }
        }
        Ok(None) => next.run(req).await,
        Err(e) => ApiError::from(e).into_response(),
    }
}

async fn move_ticket(
    State(a): State<AppState>,
    ApiJson(body): ApiJson<MoveTicketRequest>,
) -> Result<impl IntoResponse, ApiError> {
    Ok((StatusCode::CREATED, Json(a.move_ticket(&body).await?)))
}

async fn export_issuing_keys(
    State(a): State<AppState>,
    ApiJson(body): ApiJson<SignedRequest>,
) -> Result<Json<SealedIssuingKeys>, ApiError> {
    Ok(Json(a.export_issuing_keys(&body.request).await?))
}

async fn move_export(
    State(a): State<AppState>,
    ApiJson(body): ApiJson<SignedRequest>,
) -> Result<Json<MoveExport>, ApiError> {
    Ok(Json(a.move_export(&body.request).await?))
}

async fn move_export_page(
    State(a): State<AppState>,
    ApiJson(body): ApiJson<MovePageRequest>,
) -> Result<Json<MovePage>, ApiError> {
    Ok(Json(a.move_export_page(&body).await?))
}

async fn move_page(
    State(a): State<AppState>,
    ApiJson(body): ApiJson<MovePageUpload>,
) -> Result<Json<MovePagesHeld>, ApiError> {
    Ok(Json(a.move_page_upload(&body).await?))
}

async fn move_draft(
    State(a): State<AppState>,
    ApiJson(body): ApiJson<MoveDraftRequest>,
) -> Result<Json<MoveDraft>, ApiError> {
    Ok(Json(a.move_draft(&body).await?))
}

async fn move_import(
    State(a): State<AppState>,
    ApiJson(body): ApiJson<SignedRequest>,
) -> Result<impl IntoResponse, ApiError> {
    Ok((StatusCode::CREATED, Json(a.move_import(&body.request).await?)))
}

/// Every accounts route, under `/api/v1` plus the users' DID documents.
pub fn router(accounts: Arc<Accounts>) -> Router {
    Router::new()
        .route("/api/v1/challenges", post(challenge))
        .route("/api/v1/accounts", post(register))
        .route("/api/v1/sessions/challenge", post(login_challenge))
        .route("/api/v1/sessions", post(login))
        .route("/api/v1/sessions/current", delete(logout))
        .route("/api/v1/sign-out-everywhere", post(sign_out_everywhere))
        .route("/api/v1/me", get(me))
        .route("/api/v1/devices", get(devices))
        .route("/api/v1/devices/{id}/revoke", post(revoke_device))
        .route("/api/v1/root-operations", post(root_operation))
        .route("/api/v1/account/issuing-keys", post(export_issuing_keys))
        .route("/api/v1/invites", post(create_invite).get(list_invites))
        .route("/api/v1/invites/{id}", delete(revoke_invite))
        .route("/api/v1/users/{name}", delete(remove_user))
        .route("/api/v1/did/draft", post(did_draft))
        .route("/api/v1/did/rehost-draft", post(rehost_draft))
        .route("/users/{name}/did.json", get(did_document))
        .route("/users/{name}/did.jsonl", get(did_log))
        .with_state(accounts)
}

impl<S> FromRequestParts<S> for AuthDevice
where
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(AccountError::Unauthorized)?;
        Ok(AppState::from_ref(state).authenticate(token.trim()).await?)
    }
}

async fn challenge(State(a): State<AppState>) -> Result<Json<Challenge>, ApiError> {
    Ok(Json(a.challenge().await?))
}

async fn register(
    State(a): State<AppState>,
    ApiJson(body): ApiJson<SignedRequest>,
) -> Result<impl IntoResponse, ApiError> {
    Ok((StatusCode::CREATED, Json(a.register(&body.request).await?)))
}

async fn login_challenge(
    State(a): State<AppState>,
    ApiJson(body): ApiJson<LoginChallengeRequest>,
) -> Result<Json<LoginChallenge>, ApiError> {
    Ok(Json(a.login_challenge(&body.certificate).await?))
}

async fn login(State(a): State<AppState>, ApiJson(body): ApiJson<LoginRequest>) -> Result<Json<Session>, ApiError> {
    Ok(Json(a.login(&body.response).await?))
}

async fn logout(State(a): State<AppState>, me: AuthDevice) -> Result<StatusCode, ApiError> {
    a.logout(&me).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// End every browser session and site token of the caller's account (the OpenID Provider's
/// sessions, refresh and access tokens), through every crate's hook.
async fn sign_out_everywhere(State(a): State<AppState>, me: AuthDevice) -> Result<StatusCode, ApiError> {
    a.sign_out_everywhere(&me.user_id, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn me(State(a): State<AppState>, me: AuthDevice) -> Result<Json<Account>, ApiError> {
    Ok(Json(a.account(&me.user_id).await?))
}

#[derive(serde::Deserialize)]
struct DevicesQuery {
    #[serde(default)]
    revoked: bool,
}

async fn devices(
    State(a): State<AppState>,
    me: AuthDevice,
    axum::extract::Query(q): axum::extract::Query<DevicesQuery>,
) -> Result<Json<Vec<Device>>, ApiError> {
    Ok(Json(a.devices(&me, q.revoked).await?))
}

/// `POST /api/v1/devices/{id}/revoke`: the session's device revokes another.
async fn revoke_device(
    State(a): State<AppState>,
    me: AuthDevice,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    a.revoke_by_device(&me, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn root_operation(
    State(a): State<AppState>,
    ApiJson(body): ApiJson<SignedRequest>,
) -> Result<Json<Account>, ApiError> {
    Ok(Json(a.root_operation(&body.request).await?))
}

async fn create_invite(
    State(a): State<AppState>,
    me: AuthDevice,
    ApiJson(body): ApiJson<CreateInvite>,
) -> Result<impl IntoResponse, ApiError> {
    Ok((StatusCode::CREATED, Json(a.create_invite(Some(&me), body).await?)))
}

async fn list_invites(State(a): State<AppState>, me: AuthDevice) -> Result<Json<Vec<Invite>>, ApiError> {
    Ok(Json(a.list_invites(Some(&me)).await?))
}

async fn revoke_invite(
    State(a): State<AppState>,
    me: AuthDevice,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    a.revoke_invite(Some(&me), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn remove_user(
    State(a): State<AppState>,
    me: AuthDevice,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    a.remove_user(Some(&me), &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The account's `did:web` document; asked at a URL the node left (the server marks such
/// requests with [`FormerUrl`]), the document of the DID made from that URL.
async fn did_document(
    State(a): State<AppState>,
    former: Option<Extension<FormerUrl>>,
    ApiPath(name): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    let doc = match former {
        Some(Extension(f)) => a.former_did_document(&f, &name).await?,
        None => a.did_document(&name).await?,
    };
    Ok(([(header::CONTENT_TYPE, "application/did+json"), (header::CACHE_CONTROL, "no-cache")], Json(doc)))
}

/// The account's `did:webvh` log (JSON Lines, the method's `text/jsonl`).
async fn did_log(State(a): State<AppState>, ApiPath(name): ApiPath<String>) -> Result<impl IntoResponse, ApiError> {
    let log = a.did_log(&name).await?;
    Ok(([(header::CONTENT_TYPE, "text/jsonl; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], log))
}

/// What the caller's root key signs for its `did:webvh` to follow the node's new URL.
async fn rehost_draft(State(a): State<AppState>, me: AuthDevice) -> Result<Json<MoveDraft>, ApiError> {
    Ok(Json(a.rehost_draft(&me).await?))
}

/// The document the caller's root key signs to upgrade the account to `did:webvh`.
async fn did_draft(State(a): State<AppState>, me: AuthDevice) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(a.did_draft(&me).await?))
}
