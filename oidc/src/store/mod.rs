//! The provider's SQL, by table: every statement [`crate::provider`] runs lives here, as a
//! plain function over the [`Db`](sichat_core::db::Db) or the caller's connection (when it
//! runs inside the caller's transaction), returning typed rows.
//!
//! - [`codes`]: `oidc_codes` (reading a code to redeem it).
//! - [`tokens`]: `oidc_tokens` (refresh, introspection and UserInfo lookups; revocation).
//! - [`requests`]: `oidc_requests` and `oidc_pushed_requests` (authorization requests
//!   waiting for the user, and pushed ones).
//! - [`sessions`]: `oidc_sessions` and `oidc_session_clients` (browser sessions, and the
//!   sites each signed in to).
//! - [`logouts`]: `oidc_logout_notices` (the back-channel logout outbox).
//! - [`device`]: `oidc_device_grants` (RFC 8628 grants, their decisions and polls).
//! - [`activity`]: `oidc_signin_events` (sign-ins, for the user to see).
//! - [`assertions`]: `oidc_client_assertions` (`private_key_jwt` replay guard).
//! - [`consents`]: `oidc_consents` (the scope each user gave each site).
//! - [`passwords`]: `oidc_passwords` (sign-in passwords, argon2id).
//! - [`settings`]: the provider's row of `node_settings` (the pairwise-subject salt).
//! - [`purge`]: housekeeping, the expired rows of every `oidc_*` table with a lifetime.
//!
//! The hot writes of codes and tokens (group-committed on SQLite) are [`crate::writer`]'s.

pub(crate) mod activity;
pub(crate) mod assertions;
pub(crate) mod codes;
pub(crate) mod consents;
pub(crate) mod device;
pub(crate) mod logouts;
pub(crate) mod passwords;
pub(crate) mod purge;
pub(crate) mod requests;
pub(crate) mod sessions;
pub(crate) mod settings;
pub(crate) mod tokens;
