//! The issuer: W3C Verifiable Credentials (Data Model 2.0) signed with a user's issuing
//! key, so the node issues while the user is offline.
//!
//! - [`account_hooks`]: what an account's removal ends here (pending offers and nonces), and
//!   what moves with it to another node.
//! - [`moves`]: the issuer's part of a moving account (types, status lists, issuance log).
//! - [`types`]: credential types and their JSON Schemas.
//! - [`credential`]: building a credential and securing it as `vc+jwt`.
//! - [`data_integrity`]: Data Integrity proofs (`eddsa-rdfc-2022`, `ecdsa-rdfc-2019`) via `ssi`.
//! - [`status`]: Bitstring Status List encoding.
//! - [`membership`]: the node-issued MembershipCredential and its derived status list.
//! - [`oid4vci`]: OpenID4VCI 1.0 pre-authorized code flow (offers, token, nonce, credential).
//! - [`published`]: what the node publishes for an account, for `sichat export`.
//! - [`service`]: issuing, the issuance log, revocation and suspension, served lists.
//! - [`api`]: the axum router.
//!
//! Tables: `issuer_*`.

pub mod account_hooks;
pub mod api;
pub mod credential;
pub mod data_integrity;
mod error;
pub mod membership;
pub mod moves;
pub mod oid4vci;
pub mod published;
pub mod reinstate;
pub mod service;
pub mod status;
mod store;
pub mod types;

pub use error::IssuerError;
pub use service::Issuer;
