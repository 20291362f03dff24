//! Sign-in events: each sign-in to the node's pages (with how and from where) and each
//! site a browser session or a device signed in to, for the account page and `sichat oidc
//! activity` (`GET /api/v1/oidc/activity`). Kept 90 days.

use super::*;
use sqlx::AnyConnection;

/// How long events are kept.
pub const KEEP_MS: i64 = 90 * 24 * 3_600_000;

/// One sign-in, as the user sees it.
#[derive(Debug, Clone, Serialize)]
pub struct SignInEvent {
    /// Milliseconds since the epoch.
    pub at: i64,
    /// The site signed in to; `None` for the node's own pages.
    pub client_id: Option<String>,
    pub site: Option<String>,
    /// RFC 8176 `amr` values.
    pub method: Vec<String>,
    pub address: Option<String>,
}

/// Record one sign-in (in the caller's transaction).
pub(crate) async fn record(
    c: &mut AnyConnection,
    user_id: &str,
    client_id: Option<&str>,
    method: Option<&str>,
    address: Option<&str>,
    at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO oidc_signin_events (id, user_id, client_id, method, address, at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(new_id())
    .bind(user_id)
    .bind(client_id)
    .bind(method)
    .bind(address)
    .bind(at)
    .execute(c)
    .await?;
    Ok(())
}

impl Provider {
    /// The user's latest sign-ins, newest first.
    pub async fn activity(&self, user_id: &str, limit: i64) -> Result<Vec<SignInEvent>, OidcError> {
        let rows = sqlx::query(
            "SELECT e.at, e.client_id, e.method, e.address, k.metadata FROM oidc_signin_events e \
             LEFT JOIN oidc_clients k ON k.id = e.client_id WHERE e.user_id = $1 ORDER BY e.at DESC LIMIT $2",
        )
        .bind(user_id)
        .bind(limit.clamp(1, 500))
        .fetch_all(&mut *self.db.read().await?)
        .await?;
        rows.iter()
            .map(|r| {
                let client_id: Option<String> = r.try_get("client_id")?;
                let meta: Option<String> = r.try_get("metadata")?;
                let name = meta
                    .and_then(|m| serde_json::from_str::<Value>(&m).ok())
                    .and_then(|m| m.get("client_name").and_then(Value::as_str).map(str::to_owned));
                let site = client_id.as_ref().map(|id| name.unwrap_or_else(|| id.clone()));
                let method: Option<String> = r.try_get("method")?;
                Ok(SignInEvent {
                    at: r.try_get("at")?,
                    site,
                    client_id,
                    method: crate::amr::from_stored(method.as_deref()),
                    address: r.try_get("address")?,
                })
            })
            .collect()
    }
}
