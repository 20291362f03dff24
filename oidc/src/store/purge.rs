//! Housekeeping: the expired rows of the `oidc_*` tables with a lifetime (requests, codes,
//! sessions, tokens, assertions, registration tokens, approvals, passkey ceremonies and
//! links, device grants, DPoP proofs, pushed requests), the site lists of ended sessions,
//! and closed windows of `oidc_approval_failures`.

use sichat_core::db::Db;

/// Delete every row expired at `now`; how many.
pub(crate) async fn expired(db: &Db, now: i64) -> Result<u64, sqlx::Error> {
    let mut n = 0;
    for sql in [
        "DELETE FROM oidc_requests WHERE expires_at <= $1",
        "DELETE FROM oidc_codes WHERE expires_at <= $1",
        "DELETE FROM oidc_sessions WHERE expires_at <= $1",
        "DELETE FROM oidc_tokens WHERE expires_at <= $1",
        "DELETE FROM oidc_client_assertions WHERE expires_at <= $1",
        "DELETE FROM oidc_registration_tokens WHERE expires_at <= $1",
        "DELETE FROM oidc_approvals WHERE expires_at <= $1",
        "DELETE FROM oidc_webauthn_ceremonies WHERE expires_at <= $1",
        "DELETE FROM oidc_passkey_links WHERE expires_at <= $1",
        "DELETE FROM oidc_device_grants WHERE expires_at <= $1",
        "DELETE FROM oidc_dpop_proofs WHERE expires_at <= $1",
        "DELETE FROM oidc_pushed_requests WHERE expires_at <= $1",
        "DELETE FROM oidc_discoverable_ceremonies WHERE expires_at <= $1",
        "DELETE FROM oidc_session_clients WHERE session_hash NOT IN (SELECT token_hash FROM oidc_sessions) \
         AND created_at <= $1",
    ] {
        n += sqlx::query(sql).bind(now).execute(db.pool()).await?.rows_affected();
    }
    Ok(n)
}

/// Delete the approval failure windows that started at or before `before`; how many.
pub(crate) async fn approval_failures(db: &Db, before: i64) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query("DELETE FROM oidc_approval_failures WHERE window_start <= $1")
        .bind(before)
        .execute(db.pool())
        .await?
        .rows_affected())
}
