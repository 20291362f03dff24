//! Messaging: DIDComm Messaging v2.1 envelopes, and the node that routes them: devices hand
//! forwards to their own node, which delivers them to the recipient's node (signed with its
//! node key), where the recipient's policy picks a folder and the mailbox keeps them until
//! every device of the recipient has picked them up.
//!
//! Envelopes (usable without a node, as the wallet does):
//! - [`account_hooks`]: what an account's removal or a device's revocation ends here.
//! - [`message`]: the plaintext message (`application/didcomm-plain+json`) and [`MessageId`].
//! - [`envelope`]: packing (signed, authcrypt, anoncrypt) and [`unpack`], which finds the
//!   layers, decrypts, verifies, and checks the sender against `from` and us against `to`.
//! - [`jws`]: JWS in general JSON serialization (`application/didcomm-signed+json`, EdDSA).
//! - [`jwe`]: JWE in general JSON serialization to many recipients: ECDH-1PU+A256KW
//!   (authcrypt) and ECDH-ES+A256KW (anoncrypt) over X25519, with A256CBC-HS512.
//! - [`forward`]: the Routing 2.0 `forward` wrapper, wrap and unwrap.
//! - [`EnvelopeError`]: everything that can be wrong with an envelope, by name.
//!
//! The node:
//! - [`service`]: [`Messaging`]: sending into the outbox, the delivery worker, receiving
//!   under the recipient's [`policy`], housekeeping.
//! - [`moves`]: the mailbox, policy and received ids an account takes to another node.
//! - [`mailbox`] and [`outbox`]: their tables. [`live`]: waking connected devices.
//! - [`pickup`]: Message Pickup 3.0 over a WebSocket, at most so many per device and account
//!   ([`sessions`]). [`api`]: the HTTP endpoints.
//! - [`standby`]: keeping the messages of another node's account while that node is down,
//!   and handing them over when it is back.
//! - `federation`: posting to other nodes and authenticating their deliveries, with
//!   [`federation_auth`] (RFC 9421 signatures by the node key).

pub mod account_hooks;
pub mod api;
pub mod envelope;
mod error;
mod federation;
pub mod federation_auth;
pub mod forward;
pub mod jwe;
pub mod jws;
pub mod live;
pub mod mailbox;
pub mod message;
pub mod moves;
mod node_error;
pub mod outbox;
pub mod pickup;
pub mod policy;
pub mod service;
pub mod sessions;
pub mod standby;

pub use envelope::{
    pack_anoncrypt, pack_authcrypt, pack_signed, unpack, AgreementKey, KeyResolver, RecipientKey, SigningKey,
    UnpackOptions, Unpacked,
};
pub use error::EnvelopeError;
pub use forward::{forwarded, unwrap_forward, wrap_forward, Forward, PRESENTATION_ATTACHMENT};
pub use message::{Attachment, Message, MessageId};
pub use node_error::MessagingError;
pub use service::{Messaging, Settings};
