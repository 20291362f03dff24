//! What other crates do when something ends for an account (the account is removed, a
//! device is revoked, the user signs out everywhere), and what each hands over when the
//! account moves to another node (export on the old node, import on the new).
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

/// Why an import refused a crate's part of a moved account: it names what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// The future of an export: the crate's part of the account, as JSON of its own shape.
pub type ExportFuture<'a> = Pin<Box<dyn Future<Output = Result<serde_json::Value, sqlx::Error>> + Send + 'a>>;
/// The future of an import.
pub type ImportFuture<'a> = Pin<Box<dyn Future<Output = Result<(), ImportError>> + Send + 'a>>;

/// What a crate exports of a moving account: its `part` for the bundle, and, when not all
/// of it fits there, where the rest starts ([`AccountHooks::export_page`] takes it on).
#[derive(Debug, Clone, PartialEq)]
pub struct Exported {
    pub part: serde_json::Value,
    pub more: Option<More>,
}

/// The rest of a crate's export, carried in pages after the bundle.
#[derive(Debug, Clone, PartialEq)]
pub struct More {
    /// Opaque to others: where the next page starts.
    pub cursor: String,
    /// How many items are left (for progress).
    pub items: u64,
}

/// One page of a crate's export: JSON of its own shape, and where the next starts (`None`:
/// this was the last).
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub page: serde_json::Value,
    pub next: Option<String>,
    pub items: u64,
}

/// The future of an export with its rest.
pub type ExportedFuture<'a> = Pin<Box<dyn Future<Output = Result<Exported, sqlx::Error>> + Send + 'a>>;
/// The future of one page of an export.
pub type PageFuture<'a> = Pin<Box<dyn Future<Output = Result<Page, ImportError>> + Send + 'a>>;

/// An account being moved in from another node: its id here (the id it had there), the
/// URL of the node it comes from and of this one, and its DIDs there (`did:web`, and the
/// `did:webvh` before the move) and here (the moved `did:webvh`).
#[derive(Debug, Clone, Copy)]
pub struct Arrival<'a> {
    pub user_id: &'a str,
    pub user_name: &'a str,
    pub from_origin: &'a str,
    pub old_web_did: &'a str,
    pub new_did: &'a str,
}

/// The node changed its public URL: an account follows it. Its old `did:web` DID and the
/// URL its links were made from (`from_url`, the former public URL without a final `/`).
#[derive(Debug, Clone, Copy)]
pub struct Rehosting<'a> {
    pub user_id: &'a str,
    pub user_name: &'a str,
    pub from_url: &'a str,
    pub old_web_did: &'a str,
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

    /// The account is moving to another node: this crate's part of everything the account
    /// owns, as JSON the same crate's [`AccountHooks::import_account`] reads on the other
    /// node (`null`: nothing). It travels sealed to the new node. Runs in a read
    /// transaction; the account keeps working here until the move is done.
    fn export_account<'a>(&'a self, _c: &'a mut AnyConnection, _user_id: &'a str) -> ExportFuture<'a> {
        Box::pin(std::future::ready(Ok(serde_json::Value::Null)))
    }

    /// [`AccountHooks::export_account`], for a crate whose data may not all fit the bundle:
    /// the rest is then exported page by page ([`AccountHooks::export_page`]) and imported
    /// on the new node ([`AccountHooks::import_page`]) before the account is created.
    fn export_with_more<'a>(&'a self, c: &'a mut AnyConnection, user_id: &'a str) -> ExportedFuture<'a> {
        Box::pin(async move { Ok(Exported { part: self.export_account(c, user_id).await?, more: None }) })
    }

    /// The page of the account's export that starts at `cursor` (from [`More`] or the last
    /// [`Page`]). Runs on the old node while the export is in flight.
    fn export_page<'a>(&'a self, _c: &'a mut AnyConnection, _user_id: &'a str, _cursor: &'a str) -> PageFuture<'a> {
        Box::pin(std::future::ready(Err(ImportError::Invalid(format!("{} exports no pages", self.name())))))
    }

    /// Store one page of an arriving account (from [`AccountHooks::export_page`] there), in
    /// the transaction that creates the account, after its part. Pages come in order.
    fn import_page<'a>(
        &'a self,
        _c: &'a mut AnyConnection,
        _arrival: Arrival<'a>,
        _page: serde_json::Value,
    ) -> ImportFuture<'a> {
        Box::pin(std::future::ready(Err(ImportError::Invalid(format!("{} takes no pages", self.name())))))
    }

    /// The account arrives from another node with this crate's `part` (from
    /// [`AccountHooks::export_account`] there): store it, inside the transaction that creates
    /// the account. Refuse anything malformed: the whole move is then refused.
    fn import_account<'a>(
        &'a self,
        _c: &'a mut AnyConnection,
        _arrival: Arrival<'a>,
        _part: serde_json::Value,
    ) -> ImportFuture<'a> {
        Box::pin(std::future::ready(Ok(())))
    }

    /// The account has moved away (the new node holds it now): end what this crate serves
    /// for it here (tokens, sessions), keeping what the old node still answers for.
    fn account_moved<'a>(&'a self, _c: &'a mut AnyConnection, _user_id: &'a str) -> HookFuture<'a> {
        Box::pin(std::future::ready(Ok(())))
    }

    /// The node changed its public URL (`sichatd admin change-url`): keep what the account
    /// published under the old one (URLs credentials name, the DID they were issued under)
    /// answering as it was. Runs once per account, in the accounts service's transaction.
    fn node_rehosted<'a>(&'a self, _c: &'a mut AnyConnection, _rehosting: Rehosting<'a>) -> HookFuture<'a> {
        Box::pin(std::future::ready(Ok(())))
    }
}
