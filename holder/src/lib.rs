//! The holder's side of credentials.
//!
//! - [`oid4vci`]: the wallet side of OpenID4VCI 1.0 (pre-authorized code flow).
//! - [`check`]: checking a received `vc+jwt` against its issuer's DID document, and its
//!   Bitstring Status List entries, live.
//! - [`resolve`]: fetching `did:web` documents (bounded in time and size).

pub mod check;
mod error;
pub mod oid4vci;
pub mod resolve;

pub use error::HolderError;
