use thiserror::Error;

#[derive(Debug, Error)]
pub enum HolderError {
    #[error("{0}")]
    BadOffer(String),
    #[error("the issuer refused: {0}")]
    Issuer(String),
    #[error("{0}")]
    BadCredential(String),
    #[error(transparent)]
    Net(#[from] sichat_core::net::FetchError),
}

impl From<sichat_core::CoreError> for HolderError {
    fn from(e: sichat_core::CoreError) -> Self {
        Self::BadCredential(e.to_string())
    }
}
