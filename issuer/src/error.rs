use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use sichat_accounts::AccountError;
use sichat_core::http::ApiError;
use sichat_core::CoreError;
use thiserror::Error;

/// What can go wrong when issuing credentials or managing their status.
#[derive(Debug, Error)]
pub enum IssuerError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    InvalidType(String),
    #[error("unknown credential type {0:?}: see `sichat credential type list`")]
    UnknownType(String),
    #[error("{0}")]
    SchemaViolation(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Account(#[from] AccountError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<CoreError> for IssuerError {
    fn from(e: CoreError) -> Self {
        match e {
            CoreError::InvalidDid(m) => Self::InvalidRequest(format!("invalid DID: {m}")),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<sqlx::Error> for IssuerError {
    fn from(e: sqlx::Error) -> Self {
        Self::Internal(format!("database: {e}"))
    }
}

impl From<IssuerError> for ApiError {
    fn from(e: IssuerError) -> Self {
        let (status, code) = match &e {
            IssuerError::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            IssuerError::InvalidType(_) => (StatusCode::BAD_REQUEST, "invalid_type"),
            IssuerError::UnknownType(_) => (StatusCode::NOT_FOUND, "unknown_credential_type"),
            IssuerError::SchemaViolation(_) => (StatusCode::UNPROCESSABLE_ENTITY, "schema_violation"),
            IssuerError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            IssuerError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            IssuerError::Account(_) => {
                let IssuerError::Account(a) = e else { unreachable!() };
                return a.into();
            }
            IssuerError::Internal(detail) => return ApiError::internal(detail),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl IntoResponse for IssuerError {
    fn into_response(self) -> Response {
        ApiError::from(self).into_response()
    }
}
