//! `oidc_codes`: authorization codes, read to be redeemed at the token endpoint. They are
//! written and spent by [`crate::writer`].

use sichat_core::db::Db;
use sqlx::Row;

/// A stored authorization code (by its hash).
#[derive(Debug)]
pub(crate) struct Code {
    pub client_id: String,
    pub user_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub nonce: Option<String>,
    pub code_challenge: String,
    pub auth_time: i64,
    pub amr: Option<String>,
    pub sid: Option<String>,
    /// The DPoP key the code is bound to (RFC 9449 §10), if the request named one.
    pub dpop_jkt: Option<String>,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

/// The code stored under `code_hash`, used or not.
pub(crate) async fn find(db: &Db, code_hash: &str) -> Result<Option<Code>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT client_id, user_id, redirect_uri, scope, nonce, code_challenge, auth_time, amr, sid, dpop_jkt, \
         expires_at, used_at FROM oidc_codes WHERE code_hash = $1",
    )
    .bind(code_hash)
    .fetch_optional(db.pool())
    .await?;
    row.map(|r| {
        Ok(Code {
            client_id: r.try_get("client_id")?,
            user_id: r.try_get("user_id")?,
            redirect_uri: r.try_get("redirect_uri")?,
            scope: r.try_get("scope")?,
            nonce: r.try_get("nonce")?,
            code_challenge: r.try_get("code_challenge")?,
            auth_time: r.try_get("auth_time")?,
            amr: r.try_get("amr")?,
            sid: r.try_get("sid")?,
            dpop_jkt: r.try_get("dpop_jkt")?,
            expires_at: r.try_get("expires_at")?,
            used_at: r.try_get("used_at")?,
        })
    })
    .transpose()
}
