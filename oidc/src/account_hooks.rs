//! What the OpenID Provider does for its own tables when an account is removed, a device is
//! revoked, or the user signs out everywhere ([`sichat_accounts::hooks`]). Everything runs
//! on the accounts service's transaction.

use sichat_accounts::hooks::{AccountHooks, HookFuture, Removal, Revocation, SignOut};
use sichat_core::ids::now_ms;
use sqlx::AnyConnection;

/// The OpenID Provider's [`AccountHooks`]; registered by the server at startup.
pub struct OidcAccountHooks;

impl AccountHooks for OidcAccountHooks {
    fn name(&self) -> &'static str {
        "oidc"
    }

    /// Every token, code, browser session, consent, password, passkey and pending sign-in
    /// of the account goes: nothing it held keeps working at any site.
    fn account_removed<'a>(&'a self, c: &'a mut AnyConnection, removal: Removal<'a>) -> HookFuture<'a> {
        Box::pin(async move {
            for table in [
                "oidc_tokens",
                "oidc_codes",
                "oidc_sessions",
                "oidc_consents",
                "oidc_passwords",
                "oidc_approvals",
                "oidc_passkeys",
                "oidc_webauthn_ceremonies",
                "oidc_passkey_links",
            ] {
                sqlx::query(&format!("DELETE FROM {table} WHERE user_id = $1"))
                    .bind(removal.user_id)
                    .execute(&mut *c)
                    .await?;
            }
            Ok(())
        })
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
            Ok(())
        })
    }
}
