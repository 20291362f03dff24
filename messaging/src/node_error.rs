//! What can go wrong when a node sends, receives or hands out messages, and how each
//! maps to an HTTP answer.

use crate::EnvelopeError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use sichat_core::http::ApiError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum MessagingError {
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("the message is {size} bytes; this node accepts at most {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("the message is encrypted to {count} keys; this node accepts at most {limit}")]
    TooManyRecipients { count: usize, limit: usize },
    #[error("{0}")]
    UnknownRecipient(String),
    /// The recipient's account moved to another node: resolve its DID again (its document
    /// here names the new node's endpoint) and deliver there. `to` is that endpoint, for a
    /// sender whose copy of the document names this node still (answered as `moved_to`).
    #[error("{message}")]
    RecipientMoved { message: String, to: String },
    /// The recipient's account is being moved: try again shortly.
    #[error("{0}")]
    RecipientMoving(String),
    #[error("message id {0} was already used for different content")]
    DuplicateId(String),
    /// The recipient's policy refused the sender. Deliberately says nothing more.
    #[error("not accepted")]
    NotAccepted,
    #[error("too many messages: {0}")]
    RateLimited(String),
    #[error("the request is not signed by a node that may send it: {0}")]
    BadSignature(String),
    #[error("too many message connections: {0}")]
    TooManySessions(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl MessagingError {
    pub fn internal(e: impl std::fmt::Display) -> Self {
        Self::Internal(e.to_string())
    }
}

impl From<sqlx::Error> for MessagingError {
    fn from(e: sqlx::Error) -> Self {
        Self::internal(e)
    }
}

impl From<sichat_core::CoreError> for MessagingError {
    fn from(e: sichat_core::CoreError) -> Self {
        Self::internal(e)
    }
}

impl From<sichat_accounts::AccountError> for MessagingError {
    fn from(e: sichat_accounts::AccountError) -> Self {
        Self::internal(e)
    }
}

impl From<EnvelopeError> for MessagingError {
    fn from(e: EnvelopeError) -> Self {
        match e {
            EnvelopeError::TooLarge { size, limit } => Self::TooLarge { size, limit },
            other => Self::Malformed(other.to_string()),
        }
    }
}

impl From<MessagingError> for ApiError {
    fn from(e: MessagingError) -> Self {
        let (status, code) = match &e {
            MessagingError::Malformed(_) => (StatusCode::BAD_REQUEST, "malformed_message"),
            MessagingError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "message_too_large"),
            MessagingError::TooManyRecipients { .. } => (StatusCode::BAD_REQUEST, "too_many_recipients"),
            MessagingError::UnknownRecipient(_) => (StatusCode::NOT_FOUND, "unknown_recipient"),
            MessagingError::RecipientMoved { .. } => (StatusCode::MISDIRECTED_REQUEST, "recipient_moved"),
            MessagingError::RecipientMoving(_) => (StatusCode::SERVICE_UNAVAILABLE, "recipient_moving"),
            MessagingError::DuplicateId(_) => (StatusCode::CONFLICT, "duplicate_message"),
            MessagingError::NotAccepted => (StatusCode::FORBIDDEN, "not_accepted"),
            MessagingError::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            MessagingError::BadSignature(_) => (StatusCode::UNAUTHORIZED, "bad_signature"),
            MessagingError::TooManySessions(_) => (StatusCode::TOO_MANY_REQUESTS, "too_many_sessions"),
            MessagingError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            MessagingError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            MessagingError::Internal(detail) => return ApiError::internal(detail),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl IntoResponse for MessagingError {
    fn into_response(self) -> Response {
        if let MessagingError::RecipientMoved { message, to } = self {
            let body = serde_json::json!({"error": "recipient_moved", "message": message, "moved_to": to});
            return (StatusCode::MISDIRECTED_REQUEST, axum::Json(body)).into_response();
        }
        let limited = matches!(self, MessagingError::RateLimited(_));
        let mut resp = ApiError::from(self).into_response();
        if limited {
            resp.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
        }
        resp
    }
}
