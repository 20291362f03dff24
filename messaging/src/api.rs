//! HTTP endpoints of messaging: devices hand messages to their node and pick them up
//! (`/api/v1/messages…`), and other nodes deliver to this one (`/didcomm`).

use crate::policy::Policy;
use crate::service::Received;
use crate::standby::mirror::WATCHER_PATH;
use crate::standby::{EndStandby, NewStandby, StandbyCreated, HANDOVER_SUFFIX};
use crate::{Messaging, MessagingError};
use axum::body::Bytes;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRef, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde_json::json;
use sichat_accounts::{Accounts, AuthDevice, DIDCOMM_PATH};
use sichat_core::http::{Api, ApiError, ApiJson, ApiPath, ApiQuery};
use sichat_core::node::FormerUrl;
use std::sync::Arc;

#[derive(Clone)]
struct AppState {
    messaging: Arc<Messaging>,
}

impl FromRef<AppState> for Arc<Accounts> {
    fn from_ref(s: &AppState) -> Self {
        s.messaging.accounts().clone()
    }
}

/// Room for the forward's own fields around the largest envelope.
const BODY_OVERHEAD: usize = 16 * 1024;

pub fn router(messaging: Arc<Messaging>) -> Router {
    let limit = messaging.settings.max_message_bytes + BODY_OVERHEAD;
    let routes = Router::new()
        .route("/api/v1/messages", post(send))
        .route("/api/v1/messages/ws", get(pickup))
        .route("/api/v1/messages/policy", get(policy).put(set_policy))
        .route("/api/v1/messages/{id}", get(status))
        .route(DIDCOMM_PATH, post(deliver).get(epoch))
        .route(&format!("{DIDCOMM_PATH}{HANDOVER_SUFFIX}"), post(handover))
        .route("/api/v1/standbys", post(add_standby))
        .route("/api/v1/standbys/end", post(end_standby))
        .route(&format!("/{WATCHER_PATH}/log"), get(watcher_log).post(watcher_notified))
        .route(&format!("/{WATCHER_PATH}/resource"), get(watcher_resource));
    sichat_core::http::limit_body(routes, limit).with_state(AppState { messaging })
}

async fn send(State(s): State<AppState>, me: AuthDevice, body: Bytes) -> Result<Response, ApiError> {
    let status = s.messaging.send(&me, &body).await?;
    Ok((StatusCode::ACCEPTED, Json(status)).into_response())
}

async fn status(State(s): State<AppState>, me: AuthDevice, ApiPath(id): ApiPath<String>) -> Result<Response, ApiError> {
    Ok(Json(s.messaging.status(&me, &id).await?).into_response())
}

async fn policy(State(s): State<AppState>, me: AuthDevice) -> Result<Json<Policy>, ApiError> {
    Ok(Json(s.messaging.policy_of(&me.user_id).await?))
}

async fn set_policy(
    State(s): State<AppState>,
    me: AuthDevice,
    ApiJson(policy): ApiJson<Policy>,
) -> Result<Json<Policy>, ApiError> {
    Ok(Json(s.messaging.set_policy(&me, policy).await?))
}

/// The pickup WebSocket. The bearer token is kept to notice when the session ends. Past
/// the device's or the account's number of open sessions the upgrade is refused (`429`).
async fn pickup(
    State(s): State<AppState>,
    me: AuthDevice,
    headers: HeaderMap,
    Api(ws): Api<WebSocketUpgrade>,
) -> Result<Response, ApiError> {
    let slot = s.messaging.sessions.open(&me.user_id, &me.device_id)?;
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .trim()
        .to_owned();
    let messaging = s.messaging.clone();
    Ok(ws.max_message_size(256 * 1024).on_upgrade(move |socket| async move {
        crate::pickup::serve(messaging, me, token, socket).await;
        drop(slot);
    }))
}

/// Another node delivers a forward, signed by its node key.
async fn deliver(
    State(s): State<AppState>,
    former: Option<Extension<FormerUrl>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let at = former.map(|Extension(f)| f.url.to_string());
    let from = crate::federation::authenticate(&s.messaging, at.as_deref(), &method, &uri, &headers, &body).await?;
    // A messaging error answers as its own response (`recipient_moved` says where to).
    let received = match s.messaging.receive(&from, &body).await {
        // Not an account here: one this node stands by for, maybe.
        Err(MessagingError::UnknownRecipient(why)) => {
            let target = crate::federation::target_of(&s.messaging, at.as_deref(), &uri);
            match s.messaging.hold(&target, &headers, &body).await {
                Ok(Some(held)) => Ok(held),
                Ok(None) => Err(MessagingError::UnknownRecipient(why)),
                Err(e) => Err(e),
            }
        }
        other => other,
    };
    Ok(answer(&s.messaging, received))
}

/// A delivery's answer: taken (with this node's mailbox epoch), or why not.
fn answer(m: &Messaging, received: Result<Received, MessagingError>) -> Response {
    match received {
        Ok(Received::Stored) => {
            (StatusCode::ACCEPTED, Json(json!({"state": "delivered", "epoch": m.epoch}))).into_response()
        }
        Ok(Received::Duplicate) => {
            (StatusCode::OK, Json(json!({"state": "delivered", "duplicate": true, "epoch": m.epoch}))).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// The account's standby hands over a delivery it kept while this node was down.
async fn handover(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    answer(&s.messaging, s.messaging.take_handover(&headers, &body).await)
}

/// Stand by for an account of another node (its root key's grant, and an invite of this node).
async fn add_standby(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<NewStandby>,
) -> Result<(StatusCode, Json<StandbyCreated>), ApiError> {
    Ok((StatusCode::CREATED, Json(s.messaging.add_standby(req).await?)))
}

async fn end_standby(State(s): State<AppState>, ApiJson(req): ApiJson<EndStandby>) -> Result<StatusCode, ApiError> {
    s.messaging.end_standby(&req.request).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(serde::Deserialize)]
struct ScidQuery {
    scid: String,
}

#[derive(serde::Deserialize)]
struct ResourceQuery {
    scid: String,
    path: String,
}

#[derive(serde::Deserialize)]
struct DidQuery {
    did: String,
}

/// The did:webvh watcher API (`standby::mirror`): a DID log this node mirrors.
async fn watcher_log(State(s): State<AppState>, ApiQuery(q): ApiQuery<ScidQuery>) -> Result<Response, ApiError> {
    let log = s.messaging.mirrored_log(&q.scid).await?;
    Ok(([(header::CONTENT_TYPE, "text/jsonl"), (header::CACHE_CONTROL, "no-cache")], log).into_response())
}

async fn watcher_resource(
    State(s): State<AppState>,
    ApiQuery(q): ApiQuery<ResourceQuery>,
) -> Result<Response, ApiError> {
    let (content_type, body) = s.messaging.mirrored_resource(&q.scid, &q.path).await?;
    Ok(([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache".to_owned())], body).into_response())
}

async fn watcher_notified(State(s): State<AppState>, ApiQuery(q): ApiQuery<DidQuery>) -> Result<Response, ApiError> {
    s.messaging.watcher_notified(&q.did).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({}))).into_response())
}

/// Which copy of its mailboxes this node serves: other nodes ask, and deliver again what it
/// took under another (it was restored from a backup since).
async fn epoch(State(s): State<AppState>) -> Response {
    ([(header::CACHE_CONTROL, "no-store")], Json(json!({"epoch": s.messaging.epoch}))).into_response()
}
