//! `/oidc/authorize` and `/oidc/consent`: checking an authorization request, deciding
//! its next step (sign-in, consent, or back to the client), and the code it ends with.

use super::*;

impl Provider {
    // ---- authorization requests ----

    /// Check a request's parameters against its (known) client and redirect URI. Errors
    /// here go back to the client.
    pub fn check_request(client: &Client, q: &HashMap<String, String>) -> Result<AuthParams, OidcError> {
        let get = |k: &str| q.get(k).filter(|v| !v.is_empty()).cloned();
        // Request objects and pushed requests are opened before (`par`).
        if get("request").is_some() || get("request_uri").is_some() {
            return Err(OidcError::bad("invalid_request", "a request object or request_uri inside a request"));
        }
        if get("response_type").as_deref() != Some("code") {
            return Err(OidcError::bad("unsupported_response_type", "response_type must be code"));
        }
        if !client.metadata.grant_types.iter().any(|g| g == "authorization_code") {
            return Err(OidcError::bad("unauthorized_client", "this client may not use the code flow"));
        }
        let response_mode = get("response_mode");
        if response_mode.as_deref().is_some_and(|m| m != "query" && m != "form_post") {
            return Err(OidcError::bad("invalid_request", "response_mode must be query or form_post"));
        }
        let mut scope = get("scope").unwrap_or_default();
        if let Some(claims) = get("claims") {
            // A backed claim asked for by name needs the same consent as its scope.
            let extra = crate::claims::scopes_in_claims_parameter(&claims)
                .map_err(|why| OidcError::bad("invalid_request", why))?;
            for s in extra {
                scope.push(' ');
                scope.push_str(s);
            }
        }
        let scopes = scope_set(&scope);
        if !scopes.contains(&"openid") {
            return Err(OidcError::bad("invalid_scope", "scope must include openid"));
        }
        // offline_access means a refresh token: not asked of the user, nor granted, for a
        // client that did not register the refresh_token grant (OpenID Connect Core §11).
        let refreshable = client.metadata.grant_types.iter().any(|g| g == "refresh_token");
        let granted: Vec<&str> =
            scopes.into_iter().filter(|s| SCOPES.contains(s) && (*s != "offline_access" || refreshable)).collect();
        let code_challenge = get("code_challenge")
            .ok_or_else(|| OidcError::bad("invalid_request", "PKCE is required: send code_challenge (S256)"))?;
        if get("code_challenge_method").as_deref() != Some("S256") {
            return Err(OidcError::bad("invalid_request", "code_challenge_method must be S256"));
        }
        if !is_pkce_value(&code_challenge) {
            return Err(OidcError::bad("invalid_request", "code_challenge is not a valid S256 challenge"));
        }
        let prompt = get("prompt");
        if let Some(p) = &prompt {
            let values: Vec<&str> = p.split_whitespace().collect();
            if values.iter().any(|v| !["none", "login", "consent", "select_account"].contains(v)) {
                return Err(OidcError::bad("invalid_request", "unknown prompt value"));
            }
            if values.contains(&"none") && values.len() > 1 {
                return Err(OidcError::bad("invalid_request", "prompt=none cannot be combined"));
            }
        }
        let max_age = match get("max_age") {
            None => None,
            Some(m) => Some(
                m.parse::<i64>()
                    .ok()
                    .filter(|m| *m >= 0)
                    .ok_or_else(|| OidcError::bad("invalid_request", "max_age must be a non-negative integer"))?,
            ),
        };
        let dpop_jkt = get("dpop_jkt");
        if dpop_jkt.as_deref().is_some_and(|j| j.len() != 43 || b64url_decode(j).is_none()) {
            return Err(OidcError::bad("invalid_request", "dpop_jkt must be a JWK SHA-256 thumbprint, base64url"));
        }
        let too_long = |k: &str| get(k).is_some_and(|v| v.len() > 512);
        if ["state", "nonce", "login_hint"].iter().any(|k| too_long(k)) {
            return Err(OidcError::bad("invalid_request", "state, nonce and login_hint are limited to 512 bytes"));
        }
        Ok(AuthParams {
            client_id: client.id.clone(),
            redirect_uri: get("redirect_uri").unwrap_or_default(),
            scope: granted.join(" "),
            state: get("state"),
            nonce: get("nonce"),
            code_challenge,
            prompt,
            max_age,
            login_hint: get("login_hint"),
            response_mode: response_mode.filter(|m| m == "form_post"),
            device: None,
            dpop_jkt,
        })
    }

    /// The URL that answers the client: `params` (code or error) plus `state` and `iss`.
    pub fn redirect_url(&self, redirect_uri: &str, state: Option<&str>, params: &[(&str, &str)]) -> String {
        let mut u = match url::Url::parse(redirect_uri) {
            Ok(u) => u,
            Err(_) => return redirect_uri.to_owned(),
        };
        {
            let mut q = u.query_pairs_mut();
            for (k, v) in params {
                q.append_pair(k, v);
            }
            if let Some(s) = state {
                q.append_pair("state", s);
            }
            q.append_pair("iss", &self.issuer);
        }
        u.into()
    }

    pub fn error_redirect(&self, p: &AuthParams, e: &OidcError) -> String {
        self.redirect_url(
            &p.redirect_uri,
            p.state.as_deref(),
            &[("error", e.code), ("error_description", &e.description)],
        )
    }

    /// Decide the next step of a request for the current browser session.
    pub async fn next_step(
        &self,
        p: &AuthParams,
        client: &Client,
        session: Option<&BrowserSession>,
        fresh_login: bool,
    ) -> Result<Next, OidcError> {
        let prompt: Vec<&str> = p.prompt.as_deref().unwrap_or_default().split_whitespace().collect();
        let none = prompt.contains(&"none");
        // A user who has just signed in for this request has met prompt=login and any
        // max_age (even 0): asking again would loop, and must not turn into a consent page.
        let needs_login = match session {
            None => true,
            Some(_) if fresh_login => false,
            Some(s) => {
                prompt.contains(&"login") || p.max_age.is_some_and(|m| now_ms() - s.auth_time > m.saturating_mul(1000))
            }
        };
        if needs_login {
            return Ok(match none {
                true => Next::Redirect(self.error_redirect(p, &OidcError::bad("login_required", "no signed-in user"))),
                false => Next::Login,
            });
        }
        let Some(s) = session else { return Ok(Next::Login) };
        // A device is approved on its own consent page, naming its code, every time: a code
        // typed from someone else's screen must not pass unseen (RFC 8628 §5.4).
        if p.device.is_some() {
            return Ok(Next::Consent);
        }
        let consented = self.consented(&s.user_id, &client.id, &p.scope).await?;
        if !consented || prompt.contains(&"consent") {
            return Ok(match none {
                true => Next::Redirect(
                    self.error_redirect(p, &OidcError::bad("consent_required", "the user has not consented")),
                ),
                false => Next::Consent,
            });
        }
        let code = self.issue_code(p, client, s).await?;
        Ok(Next::Redirect(self.redirect_url(&p.redirect_uri, p.state.as_deref(), &[("code", &code)])))
    }

    pub async fn save_request(&self, p: &AuthParams) -> Result<(String, String), OidcError> {
        let (id, csrf) = (random_token(), random_token());
        let row = Arc::new(store::requests::NewRequest {
            id: id.clone(),
            client_id: p.client_id.clone(),
            params: serde_json::to_string(p).map_err(OidcError::internal)?,
            csrf: csrf.clone(),
            expires_at: now_ms() + REQUEST_TTL_MS,
        });
        self.writer
            .commit(move |c| {
                let row = row.clone();
                Box::pin(async move { store::requests::insert(c, &row).await })
            })
            .await?;
        Ok((id, csrf))
    }

    pub async fn pending(&self, id: &str) -> Result<Option<Pending>, OidcError> {
        let Some(row) = store::requests::waiting(&self.db, id, now_ms()).await? else { return Ok(None) };
        let params: AuthParams = serde_json::from_str(&row.params).map_err(OidcError::internal)?;
        let Some(client) = self.client(&params.client_id).await? else { return Ok(None) };
        Ok(Some(Pending { id: id.to_owned(), csrf: row.csrf, params, client }))
    }

    pub async fn finish_request(&self, id: &str) -> Result<(), OidcError> {
        let mut c = self.db.pool().acquire().await?;
        store::requests::delete(&mut c, id).await?;
        Ok(())
    }

    // ---- codes and tokens ----

    /// A single-use code for `p` (a request of `client`), for the signed-in user.
    pub async fn issue_code(&self, p: &AuthParams, client: &Client, s: &BrowserSession) -> Result<String, OidcError> {
        let code = random_token();
        let row = CodeRow {
            code_hash: token_hash(&code),
            client_id: p.client_id.clone(),
            user_id: s.user_id.clone(),
            redirect_uri: p.redirect_uri.clone(),
            scope: p.scope.clone(),
            nonce: p.nonce.clone(),
            code_challenge: p.code_challenge.clone(),
            auth_time: s.auth_time,
            amr: s.amr.clone(),
            session: Some((s.session_hash.clone(), s.sid.clone())),
            address: s.address.clone(),
            dpop_jkt: p.dpop_jkt.clone(),
            expires_at: now_ms() + CODE_TTL_MS,
        };
        self.writer.write(Write::Code(Box::new(row))).await?;
        self.mark_used(client).await?;
        Ok(code)
    }
}
