use thiserror::Error;

/// What can go wrong in the shared foundations, in domain terms.
#[derive(Debug, Error)]
pub enum CoreError {
    #[error("invalid key: {0}")]
    InvalidKey(String),
    #[error("invalid DID: {0}")]
    InvalidDid(String),
    #[error("malformed JWS: {0}")]
    MalformedJws(String),
    #[error("JWS signature does not verify")]
    BadSignature,
    #[error("unexpected JWS type: expected {expected}, got {got}")]
    WrongJwsType { expected: String, got: String },
    #[error("{0}")]
    Sealed(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database file {path}: {source}")]
    DatabaseFile { path: std::path::PathBuf, source: std::io::Error },
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
}
