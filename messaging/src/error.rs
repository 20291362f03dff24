use sichat_core::resolver::ResolveError;
use thiserror::Error;

/// What is wrong with an envelope, or with a request to pack one.
///
/// Decryption failures say nothing about *why* (bad tag, bad padding, wrong key): telling
/// them apart would help an attacker probe ciphertexts.
#[derive(Debug, Error)]
pub enum EnvelopeError {
    #[error("the message is {size} bytes; the limit is {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("not a JSON object: {0}")]
    NotJson(String),
    #[error("malformed plaintext message: {0}")]
    MalformedMessage(String),
    #[error("malformed JWE: {0}")]
    MalformedJwe(String),
    #[error("malformed JWS: {0}")]
    MalformedJws(String),
    #[error("unsupported algorithm: {0}")]
    UnsupportedAlgorithm(String),
    #[error("layers in an order DIDComm does not allow: {0}")]
    BadLayering(String),
    #[error("an unprotected (plaintext) message was refused")]
    Unprotected,
    #[error("the message is not encrypted to any of our keys (it names {})", kids.join(", "))]
    NotForUs { kids: Vec<String> },
    #[error("the message cannot be decrypted: it was altered, or not encrypted to this key")]
    DecryptionFailed,
    #[error("the signature does not verify")]
    BadSignature,
    #[error("the sender does not match `from`: {0}")]
    SenderMismatch(String),
    #[error("{recipient} is not among the message's `to`")]
    RecipientNotInTo { recipient: String },
    #[error("cannot use the sender's keys: {0}")]
    SenderKeys(#[from] ResolveError),
    #[error("cannot pack: {0}")]
    InvalidPack(String),
    #[error("malformed forward message: {0}")]
    MalformedForward(String),
}
