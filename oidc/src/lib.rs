//! The OpenID Provider: every user of the node can sign in to sites that speak OpenID
//! Connect, with the node as their identity provider.
//!
//! - [`account_hooks`]: what an account's removal, a device's revocation or signing out
//!   everywhere ends here; [`moves`]: what an account takes along to another node.
//! - [`amr`]: how a user signed in, as RFC 8176 `amr` values.
//! - [`keys`]: the ID token signing keys (RS256, EdDSA, ES256), sealed at rest, rotated,
//!   and the JWKS.
//! - [`clients`]: Dynamic Client Registration (RFC 7591/7592) under the node's policy, and
//!   clients identified by a metadata document URL.
//! - [`claims`]: claims backed by the user's credentials, verified when released.
//! - [`provider`]: sign-in, sessions and consent, with one submodule per endpoint area:
//!   `authorize`, `token` (also revocation and introspection), `device`, `userinfo`, `logout`.
//! - [`pages`]: the server-rendered consent and error pages.
//! - [`approval`]: sign-in approved by a wallet's device key (`sichat login approve`), also
//!   for a device's user code.
//! - [`device`]: `/oidc/device`, where a user approves a device (RFC 8628); the grant
//!   itself is the provider's `device` submodule.
//! - [`passkeys`]: passkeys (WebAuthn) and their one-time registration links.
//! - [`signin`], [`signin_pages`]: the sign-in page's other ways in, and the account page.
//! - [`subjects`]: pairwise `sub` values, from a secret of each account's own.
//! - [`throttle`]: the password sign-in throttle, per account and address, in the database.
//! - `store`: the provider's SQL, one submodule per table group (codes, tokens, requests,
//!   sessions, consents, device grants, logout notices, sign-in events, …).
//! - [`writer`]: codes and tokens written durably, group-committed on SQLite.
//! - [`wire`]: the typed forms and answers of the endpoints clients call.
//! - [`api`]: the axum router; the endpoints clients call with their own credentials
//!   (token, UserInfo, revocation, introspection, PAR, device authorization) in
//!   `api/client_calls.rs`.
//!
//! Tables: `oidc_*`.

pub mod account_hooks;
pub mod amr;
pub mod api;
pub mod approval;
pub mod claims;
pub mod clients;
pub mod device;
mod error;
pub mod keys;
pub mod moves;
pub mod pages;
pub mod passkeys;
pub mod provider;
pub mod signin;
pub mod signin_pages;
pub(crate) mod store;
pub mod subjects;
pub mod throttle;
pub mod wire;
pub mod writer;

pub use error::OidcError;
pub use provider::{Provider, Settings};
