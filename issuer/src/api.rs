//! HTTP endpoints of the issuer. Handlers parse, call [`Issuer`], and map.

use crate::oid4vci::{CredentialRequest, NewOffer, OAuthError, OfferCreated, TokenRequest};
use crate::service::{IssueRequest, Issued, IssuedRecord, Issuer, NewType, StatusAction};
use crate::types::CredentialType;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, FromRef, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use sichat_accounts::{Accounts, AuthDevice};
use sichat_core::http::{ApiError, ApiJson, ApiPath};
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
        .route("/api/v1/issuer/published", get(published))
        .route("/api/v1/issuer/credentials/reinstate", post(reinstate))
        .route("/api/v1/issuer/credentials/{id}/{action}", post(set_status))
        .route("/api/v1/issuer/offers", get(offers).post(create_offer))
        .route("/.well-known/openid-credential-issuer/users/{name}", get(issuer_metadata))
        .route("/.well-known/oauth-authorization-server/users/{name}", get(as_metadata))
        .route("/users/{name}/oid4vci/offers/{code}", get(offer_by_reference))
        .route("/users/{name}/oid4vci/token", post(token))
        .route("/users/{name}/oid4vci/nonce", post(nonce))
        .route("/users/{name}/oid4vci/credential", post(credential))
        .route("/users/{name}/resources", get(resources))
        .route("/users/{name}/status/{list}", get(status_list))
        .route("/api/v1/membership", get(membership))
        .route("/status/{list}", get(membership_status_list))
        .route(&format!("/{}", crate::credential::CONTEXT_PATH), get(context))
        .route("/credential-types/MembershipCredential/schema.json", get(membership_schema))
        .route("/users/{name}/credential-types/{type_name}/schema.json", get(schema))
        .with_state(AppState { issuer, accounts })
}

async fn list_types(State(s): State<AppState>, me: AuthDevice) -> Result<Json<Vec<CredentialType>>, ApiError> {
    let mut types = s.issuer.types(&me.user_id).await?;
    types.push(crate::membership::membership_type());
    Ok(Json(types))
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

/// After a restore: credentials the issuing wallet kept, put back in the issuance log.
async fn reinstate(
    State(s): State<AppState>,
    me: AuthDevice,
    ApiJson(req): ApiJson<crate::reinstate::Reinstate>,
) -> Result<Json<Vec<crate::reinstate::Reinstated>>, ApiError> {
    Ok(Json(s.issuer.reinstate(&me, &req).await?))
}

async fn published(State(s): State<AppState>, me: AuthDevice) -> Result<Json<crate::published::Published>, ApiError> {
    Ok(Json(s.issuer.published(&me).await?))
}

async fn issued(State(s): State<AppState>, me: AuthDevice) -> Result<Json<Vec<IssuedRecord>>, ApiError> {
    Ok(Json(s.issuer.issued(&me).await?))
}

async fn set_status(
    State(s): State<AppState>,
    me: AuthDevice,
    ApiPath((id, action)): ApiPath<(String, String)>,
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

async fn membership(State(s): State<AppState>, me: AuthDevice) -> Result<Json<Issued>, ApiError> {
    Ok(Json(s.issuer.membership(&me).await?))
}

async fn membership_status_list(
    State(s): State<AppState>,
    ApiPath(list): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    Ok(serve_list(s.issuer.membership_status_list(&list).await?, &headers))
}

/// The node's JSON-LD context. It never changes: cache it for a day.
async fn context(State(s): State<AppState>) -> impl IntoResponse {
    let public = s.issuer.accounts.node().public_url().as_str().to_owned();
    (
        [(header::CONTENT_TYPE, "application/ld+json"), (header::CACHE_CONTROL, "public, max-age=86400")],
        Json(crate::credential::context_document(&public)),
    )
}

async fn membership_schema(State(s): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    Ok(([(header::CONTENT_TYPE, "application/schema+json")], Json(s.issuer.membership_schema()?)))
}

async fn resources(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<crate::published::Resources>, ApiError> {
    Ok(Json(s.issuer.resources(&name).await?))
}

/// A user's status list.
async fn status_list(
    State(s): State<AppState>,
    ApiPath((name, list)): ApiPath<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    Ok(serve_list(s.issuer.status_list(&name, &list).await?, &headers))
}

/// A signed status list credential. Clients revalidate every time (`no-cache`) and get a
/// cheap 304 while the list is unchanged, so a revocation is visible at once.
fn serve_list(served: crate::service::ServedList, headers: &HeaderMap) -> Response {
    let cache = [(header::ETAG, served.etag.clone()), (header::CACHE_CONTROL, "no-cache".to_owned())];
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == served.etag || t.trim() == "*"));
    if matches {
        return (StatusCode::NOT_MODIFIED, cache).into_response();
    }
    (cache, [(header::CONTENT_TYPE, "application/vc+jwt")], served.jwt).into_response()
}

async fn schema(
    State(s): State<AppState>,
    ApiPath((name, type_name)): ApiPath<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let doc = s.issuer.schema_document(&name, &type_name).await?;
    Ok(([(header::CONTENT_TYPE, "application/schema+json")], Json(doc)))
}

// ---- OpenID4VCI ----

const NO_STORE: (header::HeaderName, &str) = (header::CACHE_CONTROL, "no-store");

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = Json(
            serde_json::json!({"error": self.error, "error_description": sichat_core::json::plain_words(&self.description)}),
        );
        let mut resp = (self.status, [NO_STORE], body).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            let challenge = format!("Bearer error=\"{}\"", self.error);
            if let Ok(v) = challenge.parse() {
                resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
        }
        resp
    }
}

async fn create_offer(
    State(s): State<AppState>,
    me: AuthDevice,
    ApiJson(offer): ApiJson<NewOffer>,
) -> Result<impl IntoResponse, ApiError> {
    let created: OfferCreated = s.issuer.create_offer(&me, offer).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

async fn offers(State(s): State<AppState>, me: AuthDevice) -> Result<Json<Vec<serde_json::Value>>, ApiError> {
    Ok(Json(s.issuer.offers(&me).await?))
}

async fn issuer_metadata(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(s.issuer.issuer_metadata(&name).await?))
}

async fn as_metadata(State(s): State<AppState>, ApiPath(name): ApiPath<String>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(s.issuer.authorization_server_metadata(&name).await?))
}

async fn offer_by_reference(
    State(s): State<AppState>,
    ApiPath((name, code)): ApiPath<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(([NO_STORE], Json(s.issuer.offer_by_reference(&name, &code).await?)))
}

async fn token(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
    form: Result<Form<TokenRequest>, FormRejection>,
) -> Result<impl IntoResponse, OAuthError> {
    let Form(req) = form.map_err(|e| OAuthError {
        status: StatusCode::BAD_REQUEST,
        error: "invalid_request",
        description: e.body_text(),
    })?;
    Ok(([NO_STORE], Json(s.issuer.token(&name, req).await?)))
}

async fn nonce(State(s): State<AppState>, ApiPath(name): ApiPath<String>) -> Result<impl IntoResponse, ApiError> {
    Ok(([NO_STORE], Json(s.issuer.nonce(&name).await?)))
}

async fn credential(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
    headers: HeaderMap,
    body: Result<ApiJson<CredentialRequest>, ApiError>,
) -> Result<impl IntoResponse, OAuthError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    let ApiJson(req) = body.map_err(|e| OAuthError {
        status: StatusCode::BAD_REQUEST,
        error: "invalid_credential_request",
        description: e.message,
    })?;
    Ok(([NO_STORE], Json(s.issuer.credential(&name, token, req).await?)))
}
