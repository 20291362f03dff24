//! `/oidc/userinfo`: the claims an access token releases.

use super::*;

impl Provider {
    /// A live access token: its user, client and scope.
    pub async fn access(&self, token: &str) -> Result<Option<(Option<String>, String, String)>, OidcError> {
        let row = sqlx::query(
            "SELECT user_id, client_id, scope FROM oidc_tokens WHERE token_hash = $1 AND kind = 'access' \
             AND revoked_at IS NULL AND expires_at > $2",
        )
        .bind(token_key(token))
        .bind(now_ms())
        .fetch_optional(&mut *self.db.read().await?)
        .await?;
        row.map(|r| Ok((r.try_get("user_id")?, r.try_get("client_id")?, r.try_get("scope")?))).transpose()
    }

    pub async fn userinfo(&self, token: &str) -> Result<Value, OidcError> {
        let denied = |why: &str| OidcError::new(StatusCode::UNAUTHORIZED, "invalid_token", why);
        let (user_id, client_id, scope) =
            self.access(token).await?.ok_or_else(|| denied("unknown, expired or revoked access token"))?;
        let user_id = user_id.ok_or_else(|| denied("this token is not a user's"))?;
        if !scope_set(&scope).contains(&"openid") {
            return Err(OidcError::new(StatusCode::FORBIDDEN, "insufficient_scope", "the token lacks openid"));
        }
        let client = self.client(&client_id).await?.ok_or_else(|| denied("the client is gone"))?;
        let account = self.accounts.account(&user_id).await.map_err(|_| denied("the account is gone"))?;
        let mut out = json!({"sub": self.subject(&client, &user_id).await?});
        if scope_set(&scope).contains(&"profile") {
            out["preferred_username"] = json!(account.name);
            out["name"] = json!(account.name);
        }
        if let Some(map) = out.as_object_mut() {
            map.extend(self.backed_claims(&user_id, &scope).await?);
        }
        Ok(out)
    }
}
