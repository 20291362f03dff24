//! `/oidc/logout` (RP-Initiated Logout 1.0): which hints are trusted, and where the browser
//! may be sent afterwards.
//!
//! A logout URL can be loaded by any page (an image tag), so the node signs the browser out
//! without asking only when the `id_token_hint` is an ID token it signed for this very
//! browser's user; anything else is confirmed on a page that names the site. The browser
//! is sent to a `post_logout_redirect_uri` only with a valid hint of the client that
//! registered it: open registration lets anyone register any address, and a bare
//! `client_id` would make the endpoint an open redirector.

use super::*;

/// What an `id_token_hint` we signed says.
#[derive(Debug, Clone)]
pub struct LogoutHint {
    /// The client it was issued to (`aud`).
    pub client_id: String,
    /// The user, as that client knows them (`sub`).
    pub subject: String,
}

/// What a logout request may do.
pub struct LogoutPlan {
    /// The site asking, if known: named on the confirmation page.
    pub client: Option<Arc<Client>>,
    /// Where to send the browser afterwards: registered, and vouched for by a valid hint.
    pub redirect: Option<String>,
    /// The hint proves the request comes from a site this browser's user signed in to.
    pub hinted_for: Option<LogoutHint>,
}

impl Provider {
    /// The claims of an `id_token_hint`, if we signed it (expired ones count: the RP keeps the
    /// last ID token it got).
    pub fn logout_hint(&self, id_token: &str) -> Option<LogoutHint> {
        let claims: Value = serde_json::from_slice(&self.keys().verify(id_token)?).ok()?;
        if claims.get("iss")?.as_str()? != self.issuer {
            return None;
        }
        let client_id = match claims.get("aud")? {
            Value::String(a) => a.clone(),
            Value::Array(a) if a.len() == 1 => a[0].as_str()?.to_owned(),
            _ => return None,
        };
        let subject = claims.get("sub")?.as_str()?.to_owned();
        Some(LogoutHint { client_id, subject })
    }

    /// Check a logout request's parameters: the hint, the client, the return address.
    pub async fn plan_logout(
        &self,
        id_token_hint: Option<&str>,
        client_id: Option<&str>,
        post_logout_redirect_uri: Option<&str>,
    ) -> Result<LogoutPlan, OidcError> {
        let hint = id_token_hint.filter(|t| !t.is_empty()).and_then(|t| self.logout_hint(t));
        if let (Some(h), Some(id)) = (&hint, client_id) {
            if h.client_id != id {
                return Err(OidcError::bad("invalid_request", "client_id is not the audience of id_token_hint"));
            }
        }
        let named = hint.as_ref().map(|h| h.client_id.as_str()).or(client_id);
        let client = match named {
            Some(id) => self.client(id).await?,
            None => None,
        };
        let redirect = match post_logout_redirect_uri.filter(|u| !u.is_empty()) {
            None => None,
            Some(uri) => {
                let registered =
                    client.as_ref().is_some_and(|c| c.metadata.post_logout_redirect_uris.iter().any(|u| u == uri));
                if !registered {
                    return Err(OidcError::bad(
                        "invalid_request",
                        "post_logout_redirect_uri is not registered for the site named by id_token_hint or client_id",
                    ));
                }
                // Registered, but only a valid ID token of that client vouches for the request.
                hint.as_ref().map(|_| uri.to_owned())
            }
        };
        Ok(LogoutPlan { client, redirect, hinted_for: hint })
    }

    /// Is `hint` an ID token of this session's user (for the client it names)?
    pub async fn hint_is_for(&self, hint: &LogoutHint, session: &BrowserSession) -> Result<bool, OidcError> {
        let Some(client) = self.client(&hint.client_id).await? else { return Ok(false) };
        Ok(self.subject(&client, &session.user_id).await? == hint.subject)
    }
}
