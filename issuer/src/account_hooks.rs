//! What the issuer does for its own tables when something ends for an account
//! ([`sichat_accounts::hooks`]), and what it hands over when the account moves.
//!
//! - Removed: its pending credential offers and nonces go, so no one can redeem an offer of
//!   a removed account. The issuance log, types and status lists stay: credentials issued
//!   before the removal must still show their status, and the membership list marks the
//!   removed account from them.
//! - Moving: the types, status lists and issuance log travel ([`crate::moves`]); once the
//!   account has moved, its pending offers and nonces here go too, as the account issues
//!   from its new node.
//!
//! - The node changed its public URL: the account's status lists keep the URLs and the DID
//!   their credentials name (`published_url`, `issuer_did`, as for a list that moved in), so
//!   they go on verifying; new credentials go into new lists under the new URL.
//!
//! Runs on the accounts service's transaction.

use crate::moves;
use sichat_accounts::hooks::{AccountHooks, Arrival, ExportFuture, HookFuture, ImportFuture, Rehosting, Removal};
use sichat_core::node::NodeIdentity;
use sqlx::AnyConnection;
use std::sync::Arc;

/// The issuer's [`AccountHooks`]; registered by the server at startup.
pub struct IssuerAccountHooks {
    /// This node: an export names the status lists by this node's URLs for them.
    node: Arc<NodeIdentity>,
}

impl IssuerAccountHooks {
    pub fn new(node: Arc<NodeIdentity>) -> Self {
        Self { node }
    }
}

/// End the account's pending offers and the nonces of their redemptions.
async fn end_offers(c: &mut AnyConnection, user_id: &str) -> Result<(), sqlx::Error> {
    for table in ["issuer_offers", "issuer_nonces"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE user_id = $1")).bind(user_id).execute(&mut *c).await?;
    }
    Ok(())
}

impl AccountHooks for IssuerAccountHooks {
    fn name(&self) -> &'static str {
        "issuer"
    }

    fn account_removed<'a>(&'a self, c: &'a mut AnyConnection, removal: Removal<'a>) -> HookFuture<'a> {
        Box::pin(end_offers(c, removal.user_id))
    }

    fn export_account<'a>(&'a self, c: &'a mut AnyConnection, user_id: &'a str) -> ExportFuture<'a> {
        Box::pin(async move {
            match moves::export(c, &self.node, user_id).await? {
                Some(part) => serde_json::to_value(part).map_err(|e| sqlx::Error::Encode(Box::new(e))),
                None => Ok(serde_json::Value::Null),
            }
        })
    }

    fn import_account<'a>(
        &'a self,
        c: &'a mut AnyConnection,
        arrival: Arrival<'a>,
        part: serde_json::Value,
    ) -> ImportFuture<'a> {
        Box::pin(moves::import(c, arrival, part))
    }

    fn account_moved<'a>(&'a self, c: &'a mut AnyConnection, user_id: &'a str) -> HookFuture<'a> {
        Box::pin(end_offers(c, user_id))
    }

    fn node_rehosted<'a>(&'a self, c: &'a mut AnyConnection, r: Rehosting<'a>) -> HookFuture<'a> {
        let prefix = format!("{}/users/{}/status/", r.from_url, r.user_name);
        Box::pin(async move { crate::store::keep_list_urls(c, r.user_id, &prefix, r.old_web_did).await })
    }
}
