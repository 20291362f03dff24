//! The OpenID Provider: every user of the node can sign in to sites that speak OpenID
//! Connect, with the node as their identity provider.
//!
//! - [`keys`]: the ID token signing keys (RS256), sealed at rest, and the JWKS.
//! - [`clients`]: Dynamic Client Registration (RFC 7591/7592).
//! - [`provider`]: authorization requests, sign-in, consent, codes and tokens.
//! - [`pages`]: the server-rendered sign-in, consent and error pages.
//! - [`writer`]: codes and tokens written durably, group-committed on SQLite.
//! - [`api`]: the axum router.
//!
//! Tables: `oidc_*`.

pub mod api;
pub mod clients;
mod error;
pub mod keys;
pub mod pages;
pub mod provider;
pub mod writer;

pub use error::OidcError;
pub use provider::Provider;
