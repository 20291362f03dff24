//! What the verifier does for its own tables when an account is removed
//! ([`sichat_accounts::hooks`]): its presentation requests and their results go, so a
//! pending request can no longer be answered. Runs on the accounts service's transaction.

use sichat_accounts::hooks::{AccountHooks, HookFuture, Removal};
use sqlx::AnyConnection;

/// The verifier's [`AccountHooks`]; registered by the server at startup.
pub struct VerifierAccountHooks;

impl AccountHooks for VerifierAccountHooks {
    fn name(&self) -> &'static str {
        "verifier"
    }

    fn account_removed<'a>(&'a self, c: &'a mut AnyConnection, removal: Removal<'a>) -> HookFuture<'a> {
        Box::pin(async move {
            for table in ["verifier_requests"] {
                sqlx::query(&format!("DELETE FROM {table} WHERE user_id = $1"))
                    .bind(removal.user_id)
                    .execute(&mut *c)
                    .await?;
            }
            Ok(())
        })
    }
}
