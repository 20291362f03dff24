use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use sichat_core::http::ApiError;
use sichat_core::CoreError;
use thiserror::Error;

/// What can go wrong with accounts, invites, devices and sessions.
#[derive(Debug, Error)]
pub enum AccountError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("malformed JWS: {0}")]
    MalformedJws(String),
    #[error("the signature does not verify with the expected key")]
    InvalidSignature,
    #[error("invalid device certificate: {0}")]
    InvalidCertificate(String),
    #[error("the device certificate has expired: on the wallet that holds the root key run `sichat device renew` (it renews every device), then run the command here again")]
    CertificateExpired,
    #[error("the request is addressed to {got}, not to this node ({expected})")]
    WrongAudience { expected: String, got: String },
    #[error("unknown, expired or already used challenge: request a new one")]
    ChallengeInvalid,
    #[error("no such invite code: check it, or ask for a new invite")]
    InviteNotFound,
    #[error("this invite has already been used: ask for a new invite")]
    InviteUsed,
    #[error("this invite has expired or was revoked: ask for a new invite")]
    InviteExpired,
    #[error("invalid user name: {0}")]
    InvalidName(String),
    #[error("the name {0:?} is taken: choose another")]
    NameTaken(String),
    #[error("quota exceeded: {available} left to give, {requested} requested")]
    QuotaExceeded { available: i64, requested: i64 },
    #[error("missing, expired or revoked session: log in again")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("the account {0:?} has been removed")]
    AccountRemoved(String),
    #[error("the account {name:?} has moved to {to}: its wallet signs in there now")]
    AccountMoved { name: String, to: String },
    #[error("{0}")]
    Conflict(String),
    #[error(
        "{0} is the account's last active device: without it nothing can sign in, receive messages \
         or approve sign-ins until the root key adds a new device; confirm (last_device) to revoke it anyway"
    )]
    LastDevice(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<CoreError> for AccountError {
    fn from(e: CoreError) -> Self {
        match e {
            CoreError::BadSignature => Self::InvalidSignature,
            CoreError::MalformedJws(m) => Self::MalformedJws(m),
            CoreError::WrongJwsType { .. } => Self::MalformedJws(e.to_string()),
            CoreError::InvalidKey(m) => Self::InvalidRequest(format!("invalid key: {m}")),
            CoreError::InvalidDid(m) => Self::InvalidRequest(format!("invalid DID: {m}")),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<sqlx::Error> for AccountError {
    fn from(e: sqlx::Error) -> Self {
        Self::Internal(format!("database: {e}"))
    }
}

impl AccountError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::MalformedJws(_) => "malformed_jws",
            Self::InvalidSignature => "invalid_signature",
            Self::InvalidCertificate(_) => "invalid_certificate",
            Self::CertificateExpired => "certificate_expired",
            Self::WrongAudience { .. } => "wrong_audience",
            Self::ChallengeInvalid => "challenge_invalid",
            Self::InviteNotFound => "invite_not_found",
            Self::InviteUsed => "invite_used",
            Self::InviteExpired => "invite_expired",
            Self::InvalidName(_) => "invalid_name",
            Self::NameTaken(_) => "name_taken",
            Self::QuotaExceeded { .. } => "quota_exceeded",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::AccountRemoved(_) => "account_removed",
            Self::AccountMoved { .. } => "account_moved",
            Self::Conflict(_) => "conflict",
            Self::LastDevice(_) => "last_device",
            Self::Internal(_) => "internal",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidRequest(_)
            | Self::MalformedJws(_)
            | Self::InvalidCertificate(_)
            | Self::WrongAudience { .. }
            | Self::ChallengeInvalid
            | Self::InvalidName(_) => StatusCode::BAD_REQUEST,
            Self::InvalidSignature | Self::CertificateExpired | Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::QuotaExceeded { .. } | Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::InviteNotFound | Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::InviteUsed | Self::NameTaken(_) | Self::Conflict(_) | Self::LastDevice(_) => StatusCode::CONFLICT,
            Self::InviteExpired | Self::AccountRemoved(_) | Self::AccountMoved { .. } => StatusCode::GONE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::Internal(detail) => ApiError::internal(detail),
            other => ApiError::new(other.status(), other.code(), other.to_string()),
        }
    }
}

impl IntoResponse for AccountError {
    fn into_response(self) -> Response {
        ApiError::from(self).into_response()
    }
}
