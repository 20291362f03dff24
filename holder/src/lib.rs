//! The holder's side of credentials.
//!
//! - [`account_hooks`]: what an account's removal ends here (the node's copies).
//! - [`oid4vci`]: the wallet side of OpenID4VCI 1.0 (pre-authorized code flow).
//! - [`check`]: checking a received `vc+jwt` against its issuer's DID document, and its
//!   Bitstring Status List entries, live.
//! - [`resolve`]: fetching `did:web` documents (bounded in time and size).
//! - [`store`]: the node's copy of its users' credentials (`holder_credentials`), and its
//!   axum router, so a lost device loses nothing.

pub mod account_hooks;
pub mod check;
mod error;
pub mod oid4vci;
pub mod resolve;
pub mod store;

pub use error::HolderError;
