//! Sign-in events: each sign-in to the node's pages (with how and from where) and each
//! site a browser session or a device signed in to, for the account page and `sichat oidc
//! activity` (`GET /api/v1/oidc/activity`). Kept 90 days.

use super::*;

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

/// Record one sign-in (in the caller's transaction): [`store::activity::record`].
pub(crate) use crate::store::activity::record;

impl Provider {
    /// The user's latest sign-ins, newest first.
    pub async fn activity(&self, user_id: &str, limit: i64) -> Result<Vec<SignInEvent>, OidcError> {
        let rows = store::activity::latest(&self.db, user_id, limit.clamp(1, 500)).await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let name = r
                    .metadata
                    .and_then(|m| serde_json::from_str::<Value>(&m).ok())
                    .and_then(|m| m.get("client_name").and_then(Value::as_str).map(str::to_owned));
                let site = r.client_id.as_ref().map(|id| name.unwrap_or_else(|| id.clone()));
                SignInEvent {
                    at: r.at,
                    site,
                    client_id: r.client_id,
                    method: crate::amr::from_stored(r.method.as_deref()),
                    address: r.address,
                }
            })
            .collect())
    }
}
