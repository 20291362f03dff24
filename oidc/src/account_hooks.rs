//! What the OpenID Provider does for its own tables when an account is removed, a device is
//! revoked, or the user signs out everywhere ([`sichat_accounts::hooks`]), and what it hands
//! over when the account moves ([`crate::moves`]: what keeps its pairwise subjects). Everything
//! runs on the accounts service's transaction.

use crate::moves;
use crate::subjects::Subjects;
use sichat_accounts::hooks::{
    AccountHooks, Arrival, ExportFuture, HookFuture, ImportFuture, Removal, Revocation, SignOut,
};
use sichat_core::ids::now_ms;
use sqlx::AnyConnection;
use std::sync::Arc;

/// The OpenID Provider's [`AccountHooks`]; registered by the server at startup
/// ([`crate::Provider::account_hooks`]).
pub struct OidcAccountHooks {
    /// This node's master key and salt: to open, seal and work out subjects.
    subjects: Arc<Subjects>,
}

impl OidcAccountHooks {
    pub fn new(subjects: Arc<Subjects>) -> Self {
        Self { subjects }
    }
}

/// Delete the account's rows of `tables`.
async fn delete_rows(c: &mut AnyConnection, tables: &[&str], user_id: &str) -> Result<(), sqlx::Error> {
    for table in tables {
        sqlx::query(&format!("DELETE FROM {table} WHERE user_id = $1")).bind(user_id).execute(&mut *c).await?;
    }
    Ok(())
}

impl AccountHooks for OidcAccountHooks {
    fn name(&self) -> &'static str {
        "oidc"
    }

    /// Every token, code, browser session, consent, password, passkey, pending sign-in and
    /// subject secret of the account goes: nothing it held keeps working at any site.
    fn account_removed<'a>(&'a self, c: &'a mut AnyConnection, removal: Removal<'a>) -> HookFuture<'a> {
        Box::pin(delete_rows(
            c,
            &[
                "oidc_tokens",
                "oidc_codes",
                "oidc_sessions",
                "oidc_consents",
                "oidc_passwords",
                "oidc_approvals",
                "oidc_passkeys",
                "oidc_webauthn_ceremonies",
                "oidc_passkey_links",
                "oidc_subject_pins",
                "oidc_subject_secrets",
                "oidc_device_grants",
                "oidc_session_clients",
                "oidc_logout_notices",
                "oidc_signin_events",
            ],
            removal.user_id,
        ))
    }

    /// A wallet approval made by the device and not yet turned into a session is void.
    fn device_revoked<'a>(&'a self, c: &'a mut AnyConnection, revocation: Revocation<'a>) -> HookFuture<'a> {
        Box::pin(async move {
            sqlx::query("DELETE FROM oidc_approvals WHERE device_id = $1 AND consumed_at IS NULL")
                .bind(revocation.device_id)
                .execute(&mut *c)
                .await?;
            Ok(())
        })
    }

    /// Every other browser session ends, and every token sites hold for the user is revoked
    /// (refresh and access), as are codes not yet exchanged.
    fn signed_out_everywhere<'a>(&'a self, c: &'a mut AnyConnection, sign_out: SignOut<'a>) -> HookFuture<'a> {
        Box::pin(async move {
            // The sites those sessions signed in to are told (back channel), with this
            // transaction: nothing is lost if the node stops before it sends.
            let ended = crate::provider::sessions_of(c, sign_out.user_id, sign_out.keep_browser_session).await?;
            crate::provider::notify_sessions(c, &ended, now_ms()).await?;
            sqlx::query("DELETE FROM oidc_sessions WHERE user_id = $1 AND token_hash <> $2")
                .bind(sign_out.user_id)
                .bind(sign_out.keep_browser_session.unwrap_or(""))
                .execute(&mut *c)
                .await?;
            sqlx::query("UPDATE oidc_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL")
                .bind(now_ms())
                .bind(sign_out.user_id)
                .execute(&mut *c)
                .await?;
            sqlx::query("DELETE FROM oidc_codes WHERE user_id = $1 AND used_at IS NULL")
                .bind(sign_out.user_id)
                .execute(&mut *c)
                .await?;
            sqlx::query("DELETE FROM oidc_device_grants WHERE user_id = $1 AND status = 'approved'")
                .bind(sign_out.user_id)
                .execute(&mut *c)
                .await?;
            Ok(())
        })
    }

    fn export_account<'a>(&'a self, c: &'a mut AnyConnection, user_id: &'a str) -> ExportFuture<'a> {
        Box::pin(async move {
            let part = moves::export(c, &self.subjects, user_id).await?;
            serde_json::to_value(part).map_err(|e| sqlx::Error::Encode(Box::new(e)))
        })
    }

    fn import_account<'a>(
        &'a self,
        c: &'a mut AnyConnection,
        arrival: Arrival<'a>,
        part: serde_json::Value,
    ) -> ImportFuture<'a> {
        Box::pin(moves::import(c, &self.subjects, arrival, part))
    }

    /// The new node signs the user in from now on: every token, code, browser session and
    /// consent here ends. The subject secret stays (this node signs nothing more with it).
    fn account_moved<'a>(&'a self, c: &'a mut AnyConnection, user_id: &'a str) -> HookFuture<'a> {
        Box::pin(delete_rows(
            c,
            &[
                "oidc_tokens",
                "oidc_codes",
                "oidc_sessions",
                "oidc_consents",
                "oidc_device_grants",
                "oidc_session_clients",
            ],
            user_id,
        ))
    }
}
