//! What messaging does for its own tables when an account is removed or a device revoked
//! ([`sichat_accounts::hooks`]). Runs on the accounts service's transaction.

use crate::mailbox;
use sichat_accounts::hooks::{AccountHooks, HookFuture, Removal, Revocation};
use sqlx::AnyConnection;

/// Messaging's [`AccountHooks`]; registered by the server at startup.
pub struct MessagingAccountHooks;

impl AccountHooks for MessagingAccountHooks {
    fn name(&self) -> &'static str {
        "messaging"
    }

    /// The mailbox (and with it every device's pending rows), what the account was still
    /// sending, its policy, its drop reports and usage, and the ids of what it received.
    fn account_removed<'a>(&'a self, c: &'a mut AnyConnection, removal: Removal<'a>) -> HookFuture<'a> {
        Box::pin(async move {
            // Pending rows go with their messages (ON DELETE CASCADE); the triggers on
            // msg_pending keep the queue totals, which are deleted after.
            for table in ["msg_mailbox", "msg_outbox", "msg_received", "msg_policies", "msg_drops", "msg_usage"] {
                sqlx::query(&format!("DELETE FROM {table} WHERE user_id = $1"))
                    .bind(removal.user_id)
                    .execute(&mut *c)
                    .await?;
            }
            for device_id in removal.device_ids {
                for table in ["msg_pending", "msg_queue_totals", "msg_drops_seen"] {
                    sqlx::query(&format!("DELETE FROM {table} WHERE device_id = $1"))
                        .bind(device_id)
                        .execute(&mut *c)
                        .await?;
                }
            }
            Ok(())
        })
    }

    /// The device's queue goes; messages no other device still owes are deleted.
    fn device_revoked<'a>(&'a self, c: &'a mut AnyConnection, revocation: Revocation<'a>) -> HookFuture<'a> {
        Box::pin(async move {
            mailbox::release_device(c, revocation.device_id).await?;
            for table in ["msg_queue_totals", "msg_drops_seen"] {
                sqlx::query(&format!("DELETE FROM {table} WHERE device_id = $1"))
                    .bind(revocation.device_id)
                    .execute(&mut *c)
                    .await?;
            }
            Ok(())
        })
    }
}
