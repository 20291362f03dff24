//! DIDComm Messaging v2.1 envelopes: how a Sichat message is signed, encrypted, routed and
//! opened again; and how one node proves to another who sent a delivery.
//!
//! - [`message`]: the plaintext message (`application/didcomm-plain+json`) and [`MessageId`].
//! - [`envelope`]: packing (signed, authcrypt, anoncrypt) and [`unpack`], which finds the
//!   layers, decrypts, verifies, and checks the sender against `from` and us against `to`.
//! - [`jws`]: JWS in general JSON serialization (`application/didcomm-signed+json`, EdDSA).
//! - [`jwe`]: JWE in general JSON serialization to many recipients: ECDH-1PU+A256KW
//!   (authcrypt) and ECDH-ES+A256KW (anoncrypt) over X25519, with A256CBC-HS512.
//! - [`forward`]: the Routing 2.0 `forward` wrapper, wrap and unwrap.
//! - [`federation_auth`]: node-to-node authentication: RFC 9421 HTTP Message Signatures by
//!   the node key over an RFC 9530 `Content-Digest`, and who the signing node vouches for.
//! - [`EnvelopeError`]: everything that can be wrong with an envelope, by name.

pub mod envelope;
mod error;
pub mod federation_auth;
pub mod forward;
pub mod jwe;
pub mod jws;
pub mod message;

pub use envelope::{
    pack_anoncrypt, pack_authcrypt, pack_signed, unpack, AgreementKey, KeyResolver, RecipientKey, SigningKey,
    UnpackOptions, Unpacked,
};
pub use error::EnvelopeError;
pub use forward::{unwrap_forward, wrap_forward, Forward};
pub use message::{Attachment, Message, MessageId};
