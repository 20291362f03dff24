//! The verifier: credentials and presentations checked the way a careful verifier must,
//! with a reason for every "no"; and OpenID4VP 1.0 requests and responses.
//!
//! - [`account_hooks`]: what an account's removal ends here (its presentation requests).
//! - [`verify`]: the checks, and a structured [`verify::Report`].
//! - [`policy`]: which issuers are trusted for which types.
//! - [`oid4vp`]: OpenID4VP 1.0 requests (DCQL, signed request objects) and responses.
//! - [`api`]: the axum router.
//!
//! Tables: `verifier_*`.

pub mod account_hooks;
pub mod api;
pub mod oid4vp;
pub mod policy;
pub mod verify;

pub use verify::{Options, Report, Verifier};
