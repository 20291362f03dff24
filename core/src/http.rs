//! One error shape for every HTTP API: a status, a stable `error` code and a human `message`;
//! the extractors every handler uses ([`ApiJson`], [`ApiPath`], [`ApiQuery`], [`Api`]) so
//! that their rejections take that shape too, never axum's plain text or a Rust type name;
//! the client's address ([`ClientAddr`]); and the body limit every router applies ([`limit_body`]).

use crate::json::{self, JsonError};
use axum::body::Bytes;
use axum::extract::path::ErrorKind;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{self, header, HeaderMap, StatusCode};
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
        // Messages often carry a serde error from deep inside a crate: say it without Rust types.
        let body = ErrorBody { error: self.code.to_owned(), message: json::plain_words(&self.message) };
        (self.status, Json(body)).into_response()
    }
}

/// `Json<T>` whose rejections use [`ErrorBody`] with stable codes, and which refuses a
/// body nested deeper than [`json::MAX_DEPTH`] before parsing it. Messages say what was
/// wrong and where, never a Rust type.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(req.headers()) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "expected a body of Content-Type application/json",
            ));
        }
        let body = Bytes::from_request(req, state).await.map_err(|r| match r.status() {
            StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", "the request body is too large")
            }
            status => ApiError::new(status, "malformed_body", "the request body could not be read"),
        })?;
        json::from_slice_bounded(&body, json::MAX_DEPTH).map(Self).map_err(json_error)
    }
}

/// The error for a JSON body refused by [`json::from_slice_bounded`].
pub fn json_error(e: JsonError) -> ApiError {
    match e {
        JsonError::Malformed(m) => ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", m),
        JsonError::Invalid(m) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_json", m),
        too_deep @ JsonError::TooDeep(_) => {
            ApiError::new(StatusCode::BAD_REQUEST, "json_too_deep", too_deep.to_string())
        }
    }
}

/// `application/json` or any `application/…+json`, parameters aside.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(ct) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else { return false };
    let essence = ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// `Path<T>` whose rejections are the JSON error body, naming the bad segment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(v)) => Ok(Self(v)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => {
                Err(ApiError::new(StatusCode::BAD_REQUEST, "invalid_path", path_error(e.kind())))
            }
            Err(other) => Err(ApiError::internal(other.body_text())),
        }
    }
}

fn path_error(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::ParseErrorAtKey { key, value, .. } | ErrorKind::DeserializeError { key, value, .. } => {
            format!("the path segment {key} ({value:?}) is not valid here")
        }
        ErrorKind::ParseErrorAtIndex { index, value, .. } => {
            format!("path segment {} ({value:?}) is not valid here", index + 1)
        }
        ErrorKind::ParseError { value, .. } => format!("the path segment {value:?} is not valid here"),
        ErrorKind::InvalidUtf8InPathParam { key } => format!("the path segment {key} is not UTF-8"),
        _ => "the URL path is not valid here".into(),
    }
}

/// `Query<T>` whose rejections are the JSON error body.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(Self(v)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => {
                let why = std::error::Error::source(&e).map(ToString::to_string).unwrap_or_default();
                Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_query",
                    format!("the query string is not valid: {}", json::plain_words(&why)),
                ))
            }
            Err(other) => Err(ApiError::internal(other.body_text())),
        }
    }
}

/// Any other extractor (a `WebSocketUpgrade`, say) whose rejection becomes the JSON error
/// body: the same status, a code for it, and axum's message in plain words.
#[derive(Debug, Clone, Copy, Default)]
pub struct Api<E>(pub E);

impl<S: Send + Sync, E> FromRequestParts<S> for Api<E>
where
    E: FromRequestParts<S>,
    E::Rejection: IntoResponse,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let refused = match E::from_request_parts(parts, state).await {
            Ok(v) => return Ok(Self(v)),
            Err(r) => r.into_response(),
        };
        Err(rejection(refused).await)
    }
}

/// A plain-text rejection response as an [`ApiError`].
pub async fn rejection(response: Response) -> ApiError {
    let status = response.status();
    let text = axum::body::to_bytes(response.into_body(), 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::UPGRADE_REQUIRED => "upgrade_required",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::REQUEST_TIMEOUT => "request_timeout",
        s if s.is_server_error() => return ApiError::internal(text),
        _ => "bad_request",
    };
    let message = if text.trim().is_empty() {
        status.canonical_reason().unwrap_or("refused").into()
    } else {
        json::plain_words(text.trim())
    };
    ApiError::new(status, code, message)
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
    if resp.status() == StatusCode::PAYLOAD_TOO_LARGE && !is_json(resp.headers()) {
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
