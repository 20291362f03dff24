//! One error shape for every HTTP API: a status, a stable `error` code and a human `message`;
//! the client's address ([`ClientAddr`]); and the body limit every router applies ([`limit_body`]).

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequest, FromRequestParts, Request};
use axum::http::{self, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};

/// The JSON body of every error response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    pub message: String,
}

/// An error ready to be sent: status, stable code, and a message safe to show.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }

    /// A 500 whose details go to the log, never to the client.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error; the server log has details")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: self.code.to_owned(), message: self.message };
        (self.status, Json(body)).into_response()
    }
}

/// `Json<T>` whose rejections use [`ErrorBody`] with stable codes.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Self(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(r: JsonRejection) -> ApiError {
    let (code, status) = match r.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ("body_too_large", StatusCode::PAYLOAD_TOO_LARGE),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("unsupported_media_type", StatusCode::UNSUPPORTED_MEDIA_TYPE),
        StatusCode::UNPROCESSABLE_ENTITY => ("invalid_json", StatusCode::UNPROCESSABLE_ENTITY),
        _ => ("malformed_json", StatusCode::BAD_REQUEST),
    };
    ApiError::new(status, code, r.body_text())
}

impl<T: Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        Json(self.0).into_response()
    }
}

/// The address of the client a request came from: the TCP peer, or, behind a trusted
/// reverse proxy, the address that proxy forwarded. Every per-address limit keys on it.
///
/// The node's client-address middleware puts it in the request's extensions; without it
/// (an app served without that middleware) the extractor falls back to the TCP peer from
/// `ConnectInfo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientAddr(pub IpAddr);

impl ClientAddr {
    /// The client address of a request's parts, if the server recorded any.
    pub fn of(parts: &http::request::Parts) -> Option<Self> {
        Self::from_extensions(&parts.extensions)
    }

    pub fn from_extensions(ext: &http::Extensions) -> Option<Self> {
        ext.get::<ClientAddr>()
            .copied()
            .or_else(|| ext.get::<ConnectInfo<SocketAddr>>().map(|c| ClientAddr(c.0.ip().to_canonical())))
    }
}

impl std::fmt::Display for ClientAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut http::request::Parts, _: &S) -> Result<Self, ApiError> {
        Self::of(parts).ok_or_else(|| ApiError::internal("the server records no client address (no ConnectInfo)"))
    }
}

/// The largest request body `router` takes, everywhere in it: a declared `Content-Length`
/// over `limit` is refused at once, before the client sends the body; a body that turns
/// out larger while it is read is refused too. Both answer `413` with the JSON error body
/// (`body_too_large`), whichever extractor noticed.
pub fn limit_body<S: Clone + Send + Sync + 'static>(router: axum::Router<S>, limit: usize) -> axum::Router<S> {
    router
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn(move |req: Request, next: Next| refuse_large_bodies(limit, req, next)))
}

async fn refuse_large_bodies(limit: usize, req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return body_too_large(limit).into_response();
    }
    let resp = next.run(req).await;
    // axum's own rejections of an over-long body (the `Bytes`, `String` and `Form`
    // extractors) are plain text; endpoints that answer JSON themselves keep theirs.
    if resp.status() == StatusCode::PAYLOAD_TOO_LARGE && !is_json(&resp) {
        return body_too_large(limit).into_response();
    }
    resp
}

fn body_too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("the request body is larger than this endpoint takes ({limit} bytes)"),
    )
}

fn is_json(resp: &Response) -> bool {
    resp.headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.contains("+json"))
}
