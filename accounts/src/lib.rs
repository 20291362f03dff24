//! Accounts of a Sichat node: registration by invite, the invite tree with quotas, device
//! certificates, the mutual device login, sessions, and root-key operations.
//!
//! - [`protocol`]: wire types shared with the `sichat` wallet.
//! - [`service`]: the rules, as plain async functions on [`Accounts`].
//! - [`api`]: the axum router.
//! - [`hooks`]: [`hooks::AccountHooks`], what other crates do for their own tables when an
//!   account is removed, a device revoked, or the user signs out everywhere.
//!
//! Tables: `acct_*` (see `migrations/`). Messaging and the OpenID Provider authenticate
//! devices through [`Accounts::authenticate`], which is why this is a crate of its own.

pub mod api;
mod error;
pub mod hooks;
pub mod protocol;
pub mod service;
mod store;

pub use error::AccountError;
pub use service::{Accounts, AuthDevice, Settings, Standing, DIDCOMM_PATH};
