//! What other crates do when something ends for an account: the account is removed, a
//! device is revoked, or the user signs out everywhere.
//!
//! Each crate that keeps rows for a user (tokens, consents, sessions, passkeys, offers,
//! presentation requests, mailbox) implements [`AccountHooks`] for the tables it owns, in its
//! own code, and registers it at startup with [`crate::Accounts::register_hooks`]. The
//! accounts service calls every registered hook **inside the transaction that makes the
//! change**: on SQLite there is one writer connection anyway, and one transaction means a
//! crash cannot leave half a removal (an account tombstoned whose tokens still work, or the
//! reverse). A hook that fails rolls the whole change back and the caller gets the error.
//!
//! Hooks only run SQL on the connection they are given; they must not take another
//! connection from the pool (on SQLite that would wait for ever on the one writer).
//!
//! What lives outside the database (a device's open connections) is ended once the change
//! has committed: the `*_committed` methods run then, on the process that made the change.
//! Other processes (replicas) must learn of it through the database, e.g. a PostgreSQL
//! `NOTIFY` sent inside the transaction, which is delivered only if it commits.

use sqlx::AnyConnection;
use std::future::Future;
use std::pin::Pin;

/// The future a hook returns.
pub type HookFuture<'a> = Pin<Box<dyn Future<Output = Result<(), sqlx::Error>> + Send + 'a>>;

/// An account being removed: its id and every device it ever had (active or revoked), for
/// crates that keep rows per device.
#[derive(Debug, Clone, Copy)]
pub struct Removal<'a> {
    pub user_id: &'a str,
    pub device_ids: &'a [String],
}

/// A device being revoked (by `revoke_device`, or left out of a root rotation).
#[derive(Debug, Clone, Copy)]
pub struct Revocation<'a> {
    pub user_id: &'a str,
    pub device_id: &'a str,
}

/// "Sign out everywhere": end every session a browser or a site holds for the user.
#[derive(Debug, Clone, Copy)]
pub struct SignOut<'a> {
    pub user_id: &'a str,
    /// A browser session to keep (the one that asked), as its owner knows it: the OpenID
    /// Provider's session token hash. Opaque to this crate.
    pub keep_browser_session: Option<&'a str>,
}

/// What a crate does for its own tables when something ends for an account. Every method
/// runs inside the accounts service's transaction, on `c`; it must be idempotent (deleting
/// what is there), so running it twice changes nothing more.
pub trait AccountHooks: Send + Sync + 'static {
    /// A short name for logs (`oidc`, `messaging`, …).
    fn name(&self) -> &'static str;

    /// The account is removed: delete everything this crate holds for it.
    fn account_removed<'a>(&'a self, c: &'a mut AnyConnection, removal: Removal<'a>) -> HookFuture<'a>;

    /// A device is revoked: end what it alone holds (its sessions, queues, approvals).
    fn device_revoked<'a>(&'a self, _c: &'a mut AnyConnection, _revocation: Revocation<'a>) -> HookFuture<'a> {
        Box::pin(std::future::ready(Ok(())))
    }

    /// The account's removal has committed: end what this process holds for it outside the
    /// database (open connections). Cannot fail or undo the removal.
    fn account_removed_committed(&self, _removal: Removal<'_>) {}

    /// The device's revocation has committed: as [`AccountHooks::account_removed_committed`].
    fn device_revoked_committed(&self, _revocation: Revocation<'_>) {}

    /// The user signs out everywhere (asked for, or after a password change).
    fn signed_out_everywhere<'a>(&'a self, _c: &'a mut AnyConnection, _sign_out: SignOut<'a>) -> HookFuture<'a> {
        Box::pin(std::future::ready(Ok(())))
    }
}
