//! The holder's side of credentials.
//!
//! - [`account_hooks`]: what an account's removal ends here (the node's copies), and what
//!   moves with it to another node.
//! - [`oid4vci`]: the wallet side of OpenID4VCI 1.0 (pre-authorized code flow), every
//!   request through the wallet's [`sichat_core::net::Fetcher`] and its network policy.
//! - [`dcql`]: which held credentials answer an OpenID4VP DCQL query, and whether the
//!   whole query can be answered.
//! - [`check`]: checking a received `vc+jwt` against its issuer's DID document, and its
//!   Bitstring Status List entries, live.
//! - [`store`]: the node's copy of its users' credentials (`holder_credentials`), and its
//!   axum router, so a lost device loses nothing.

pub mod account_hooks;
pub mod check;
pub mod dcql;
mod error;
pub mod oid4vci;
pub mod store;

pub use error::HolderError;
