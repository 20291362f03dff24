//! What the holder does for its own tables when an account is removed
//! ([`sichat_accounts::hooks`]): the node's copies of the credentials the account held go.
//! Runs on the accounts service's transaction.

use sichat_accounts::hooks::{AccountHooks, HookFuture, Removal};
use sqlx::AnyConnection;

/// The holder's [`AccountHooks`]; registered by the server at startup.
pub struct HolderAccountHooks;

impl AccountHooks for HolderAccountHooks {
    fn name(&self) -> &'static str {
        "holder"
    }

    fn account_removed<'a>(&'a self, c: &'a mut AnyConnection, removal: Removal<'a>) -> HookFuture<'a> {
        Box::pin(async move {
            for table in ["holder_credentials"] {
                sqlx::query(&format!("DELETE FROM {table} WHERE user_id = $1"))
                    .bind(removal.user_id)
                    .execute(&mut *c)
                    .await?;
            }
            Ok(())
        })
    }
}
