//! What the issuer does for its own tables when an account is removed
//! ([`sichat_accounts::hooks`]): its pending credential offers and nonces go, so no one can
//! redeem an offer of a removed account. The issuance log, types and status lists stay:
//! credentials issued before the removal must still show their status, and the membership
//! list marks the removed account from them. Runs on the accounts service's transaction.

use sichat_accounts::hooks::{AccountHooks, HookFuture, Removal};
use sqlx::AnyConnection;

/// The issuer's [`AccountHooks`]; registered by the server at startup.
pub struct IssuerAccountHooks;

impl AccountHooks for IssuerAccountHooks {
    fn name(&self) -> &'static str {
        "issuer"
    }

    fn account_removed<'a>(&'a self, c: &'a mut AnyConnection, removal: Removal<'a>) -> HookFuture<'a> {
        Box::pin(async move {
            for table in ["issuer_offers", "issuer_nonces"] {
                sqlx::query(&format!("DELETE FROM {table} WHERE user_id = $1"))
                    .bind(removal.user_id)
                    .execute(&mut *c)
                    .await?;
            }
            Ok(())
        })
    }
}
