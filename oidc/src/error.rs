use axum::http::StatusCode;
use thiserror::Error;

/// An OAuth 2.0 / OpenID Connect error: its code, a description, and the HTTP status.
#[derive(Debug, Error)]
#[error("{code}: {description}")]
pub struct OidcError {
    pub status: StatusCode,
    pub code: &'static str,
    pub description: String,
}

impl OidcError {
    pub fn new(status: StatusCode, code: &'static str, description: impl Into<String>) -> Self {
        Self { status, code, description: description.into() }
    }
    pub fn bad(code: &'static str, description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, description)
    }
    pub fn invalid_client(description: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_client", description)
    }
    pub fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "internal error")
    }
}

impl From<sqlx::Error> for OidcError {
    fn from(e: sqlx::Error) -> Self {
        Self::internal(e)
    }
}

impl From<sichat_core::CoreError> for OidcError {
    fn from(e: sichat_core::CoreError) -> Self {
        Self::internal(e)
    }
}

impl From<sichat_accounts::AccountError> for OidcError {
    fn from(e: sichat_accounts::AccountError) -> Self {
        Self::internal(e)
    }
}
