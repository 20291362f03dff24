//! `/oidc/userinfo`: the claims an access token releases.

use super::*;

impl Provider {
    /// A live access token: its user, client, scope and DPoP key.
    pub async fn access(&self, token: &str) -> Result<Option<Access>, OidcError> {
        let row = store::tokens::live_access(&self.db, &token_key(token), now_ms()).await?;
        Ok(row.map(|r| Access { user_id: r.user_id, client_id: r.client_id, scope: r.scope, jkt: r.jkt }))
    }

    /// `/oidc/userinfo` for `presented` (the token as `Bearer`, or as `DPoP` with a proof).
    pub async fn userinfo(&self, presented: Presented<'_>, method: &str) -> Result<Value, OidcError> {
        let denied = |why: &str| OidcError::new(StatusCode::UNAUTHORIZED, "invalid_token", why);
        let (token, proof) = match presented {
            Presented::Bearer(t) => (t, None),
            Presented::Dpop(t, proof) => (t, Some(proof)),
        };
        let access = self.access(token).await?.ok_or_else(|| denied("unknown, expired or revoked access token"))?;
        match (&access.jkt, proof) {
            (None, None) => {}
            (None, Some(_)) => return Err(denied("this access token is not bound to a DPoP key: send it as Bearer")),
            (Some(_), None) => {
                return Err(denied("this access token is bound to a DPoP key: send it as DPoP, with a proof"))
            }
            (Some(bound), Some(proof)) => {
                let url = self.url("oidc/userinfo");
                let proven = self
                    .check_dpop(proof, ProofFor { method, url: &url, access_token: Some(token) })
                    .await
                    .map_err(|e| OidcError::new(StatusCode::UNAUTHORIZED, e.code, e.description))?;
                if &proven != bound {
                    return Err(OidcError::new(
                        StatusCode::UNAUTHORIZED,
                        "invalid_dpop_proof",
                        "the proof is not by the key the token is bound to",
                    ));
                }
            }
        }
        let Access { user_id, client_id, scope, .. } = access;
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

/// A live access token.
pub struct Access {
    pub user_id: Option<String>,
    pub client_id: String,
    pub scope: String,
    pub jkt: Option<String>,
}

/// How a request presents its access token.
pub enum Presented<'a> {
    Bearer(&'a str),
    /// `Authorization: DPoP <token>` and the `DPoP` proof.
    Dpop(&'a str, &'a str),
}
