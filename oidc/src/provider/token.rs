//! `/oidc/token`, `/oidc/revoke`, `/oidc/introspect`: client authentication, the grants, and
//! the tokens they issue.

use super::*;

impl Provider {
    /// Authenticate the client at the token, revocation or introspection endpoint.
    pub async fn authenticate_client(
        &self,
        basic: Option<(String, String)>,
        form: &ClientAuth,
    ) -> Result<Arc<Client>, OidcError> {
        if let Some(kind) = &form.client_assertion_type {
            if basic.is_some() || form.client_secret.is_some() {
                return Err(OidcError::bad("invalid_request", "use one client authentication method, not two"));
            }
            if kind != JWT_BEARER {
                return Err(OidcError::invalid_client(format!("client_assertion_type must be {JWT_BEARER}")));
            }
            let assertion = form
                .client_assertion
                .as_deref()
                .ok_or_else(|| OidcError::invalid_client("client_assertion is required"))?;
            return self.client_by_assertion(assertion, form.client_id.as_deref()).await;
        }
        let posted = (form.client_id.clone(), form.client_secret.clone());
        let (id, secret) = match (basic, posted) {
            (Some(_), (_, Some(_))) => {
                return Err(OidcError::bad("invalid_request", "use one client authentication method, not two"))
            }
            (Some((id, _)), (Some(posted), None)) if posted != id => {
                return Err(OidcError::invalid_client("client_id differs from the Authorization header's"))
            }
            (Some((id, secret)), _) => (id, Some(secret)),
            (None, (Some(id), secret)) => (id, secret),
            (None, (None, _)) => return Err(OidcError::invalid_client("client authentication is required")),
        };
        let client = self.client(&id).await?.ok_or_else(|| OidcError::invalid_client("unknown client"))?;
        // A client with a secret may present it either way (the header or the body), as RP
        // libraries differ in their defaults and certified providers accept both; a client
        // without one presents none.
        let method = client.metadata.token_endpoint_auth_method.as_str();
        let holds_secret = matches!(method, "client_secret_basic" | "client_secret_post");
        if holds_secret != secret.is_some() || !(holds_secret || method == "none") {
            return Err(OidcError::invalid_client(format!("this client authenticates with {method}")));
        }
        if let Some(secret) = secret {
            // Stored as SHA-256 of a 256-bit random secret, so checking costs one hash; the
            // comparison takes the same time wherever the digests differ.
            let presented = token_hash(&secret);
            let matches =
                client.secret_hash.as_deref().is_some_and(|h| bool::from(h.as_bytes().ct_eq(presented.as_bytes())));
            if !matches {
                return Err(OidcError::invalid_client("wrong client secret"));
            }
        }
        Ok(client)
    }

    /// Check that one of `client`'s registered keys (`jwks` or `jwks_uri`) signed the JWS
    /// `token` (whose header is `header`), with `alg` if the client registered one.
    pub(super) async fn verify_by_client(
        &self,
        client: &Client,
        token: &str,
        header: &Value,
        registered_alg: Option<&str>,
    ) -> Result<(), String> {
        let alg = header.get("alg").and_then(Value::as_str).unwrap_or_default();
        if !keys::ALGS.contains(&alg) || registered_alg.is_some_and(|a| a != alg) {
            return Err(format!("alg {alg} is not accepted for this client"));
        }
        let jwks = match (&client.metadata.jwks, &client.metadata.jwks_uri) {
            (Some(j), _) => j.clone(),
            (None, Some(uri)) => self.fetcher.get_json(uri).await.map_err(|e| format!("jwks_uri: {e}"))?,
            (None, None) => return Err("the client has no registered keys".into()),
        };
        let kid = header.get("kid").and_then(Value::as_str);
        let candidates: Vec<&Value> = jwks
            .get("keys")
            .and_then(Value::as_array)
            .map(|keys| keys.iter().filter(|k| kid.is_none() || k.get("kid").and_then(Value::as_str) == kid).collect())
            .unwrap_or_default();
        let verified = candidates.iter().any(|k| {
            let Some(jwk) = k.as_object().and_then(|m| josekit::jwk::Jwk::from_map(m.clone()).ok()) else {
                return false;
            };
            keys::verifier_for(alg, &jwk).is_ok_and(|v| josekit::jws::deserialize_compact(token, &*v).is_ok())
        });
        match verified {
            true => Ok(()),
            false => Err("the signature does not match any of the client's keys".into()),
        }
    }

    /// `private_key_jwt` (RFC 7523 §2.2, OIDC Core §9): a JWT signed by one of the client's
    /// registered keys, for this provider, short-lived, and used once.
    async fn client_by_assertion(&self, assertion: &str, posted_id: Option<&str>) -> Result<Arc<Client>, OidcError> {
        let bad = |why: &str| OidcError::invalid_client(format!("client assertion: {why}"));
        let (header, claims) =
            sichat_core::jws::unverified_parts(assertion).map_err(|_| bad("not a compact JWS with a JSON payload"))?;
        let id = claims.get("iss").and_then(Value::as_str).ok_or_else(|| bad("iss is missing"))?;
        if claims.get("sub").and_then(Value::as_str) != Some(id) {
            return Err(bad("sub must equal iss (the client_id)"));
        }
        if posted_id.is_some_and(|p| p != id) {
            return Err(bad("client_id does not match the assertion's issuer"));
        }
        let client = self.client(id).await?.ok_or_else(|| OidcError::invalid_client("unknown client"))?;
        if client.metadata.token_endpoint_auth_method != "private_key_jwt" {
            return Err(OidcError::invalid_client(format!(
                "this client authenticates with {}",
                client.metadata.token_endpoint_auth_method
            )));
        }
        self.verify_by_client(&client, assertion, &header, client.metadata.token_endpoint_auth_signing_alg.as_deref())
            .await
            .map_err(|why| bad(&why))?;
        let audiences: Vec<&str> = match claims.get("aud") {
            Some(Value::String(a)) => vec![a.as_str()],
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let ours = [self.issuer.clone(), self.url("oidc/token"), self.url("oidc/revoke"), self.url("oidc/introspect")];
        if !audiences.iter().any(|a| ours.iter().any(|o| o == a)) {
            return Err(bad("aud must be this provider's issuer or token endpoint"));
        }
        let now = now_ms();
        let exp = claims.get("exp").and_then(Value::as_i64).ok_or_else(|| bad("exp is missing"))? * 1000;
        if exp <= now {
            return Err(bad("it has expired"));
        }
        if exp > now + ASSERTION_MAX_TTL_MS {
            return Err(bad("exp is more than 10 minutes away"));
        }
        if claims.get("iat").and_then(Value::as_i64).is_some_and(|iat| iat * 1000 > now + 60_000) {
            return Err(bad("iat is in the future"));
        }
        let jti = claims.get("jti").and_then(Value::as_str).filter(|j| !j.is_empty() && j.len() <= 256);
        let jti = jti.ok_or_else(|| bad("jti is missing or too long"))?;
        if !store::assertions::record(&self.db, &client.id, jti, exp).await? {
            return Err(bad("it was already used (jti replay)"));
        }
        Ok(client)
    }

    /// The `sub` `client` knows `user_id` by: the user id for a `public` client, else the
    /// pairwise subject of the client's sector ([`crate::subjects`]).
    pub async fn subject(&self, client: &Client, user_id: &str) -> Result<String, OidcError> {
        if client.metadata.subject_type == "public" {
            return Ok(user_id.to_owned());
        }
        self.subjects.pairwise(&self.db, user_id, &client.sector()).await
    }

    /// A new token and the row that stores it (keyed by [`token_key`]).
    fn new_token(kind: &'static str, client: &Client, g: &Grant<'_>) -> (String, TokenRow) {
        let token = format!("{}.{}", new_id(), random_token());
        let now = now_ms();
        let ttl = if kind == "refresh" { REFRESH_TTL_MS } else { ACCESS_TTL_MS };
        let row = TokenRow {
            token_hash: token_key(&token),
            kind,
            client_id: client.id.clone(),
            user_id: g.user_id.map(str::to_owned),
            scope: g.scope.to_owned(),
            family: g.family.to_owned(),
            code_hash: g.code_hash.map(str::to_owned),
            auth_time: g.auth_time,
            // Only a refresh token needs them (for the ID tokens of later refreshes).
            amr: g.amr.filter(|_| kind == "refresh").map(str::to_owned),
            sid: g.sid.filter(|_| kind == "refresh").map(str::to_owned),
            // A public client's refresh token is bound too; a confidential client's is
            // already bound by its authentication (RFC 9449 §5).
            jkt: g.jkt().filter(|_| kind == "access" || client.is_public()).map(str::to_owned),
            created_at: now,
            expires_at: now + ttl,
        };
        (token, row)
    }

    /// Access token, ID token and (with `offline_access`) refresh token, for a user's grant,
    /// stored in one write with the spending of the code or refresh token redeemed.
    pub(super) async fn token_response(
        &self,
        spend: Spend,
        client: &Client,
        g: &Grant<'_>,
        nonce: Option<&str>,
    ) -> Result<TokenResponse, OidcError> {
        let (user_id, scope) = (g.user_id.unwrap_or_default(), g.scope);
        let auth_time = g.auth_time.unwrap_or_else(now_ms);
        let (access, access_row) = Self::new_token("access", client, g);
        let mut rows = vec![access_row];
        // A refresh token only for a grant that allows one, to a client that registered the
        // refresh_token grant (it could not redeem one otherwise).
        let refreshable = client.metadata.grant_types.iter().any(|g| g == "refresh_token");
        let refresh = match refreshable && scope_set(scope).contains(&"offline_access") {
            true => {
                let (refresh, row) = Self::new_token("refresh", client, g);
                rows.push(row);
                Some(refresh)
            }
            false => None,
        };
        let proof = g.proof.map(Proof::row);
        match self.writer.write(Write::Tokens { spend: Some(spend), proof, tokens: rows }).await? {
            Outcome::Written => {}
            Outcome::AlreadySpent => return Err(invalid_grant("the code or refresh token was already used")),
            Outcome::ProofReplayed => return Err(dpop::replayed()),
        }
        let sub = self.subject(client, user_id).await?;
        let now = now_ms() / 1000;
        let mut claims = json!({
            "iss": self.issuer,
            "sub": sub,
            "aud": client.id,
            "azp": client.id,
            "iat": now,
            "exp": now + ID_TOKEN_TTL_SECS,
            "auth_time": auth_time / 1000,
            "at_hash": keys::left_half_hash(&client.metadata.id_token_signed_response_alg, &access),
        });
        if let Some(n) = nonce {
            claims["nonce"] = json!(n);
        }
        let amr = crate::amr::from_stored(g.amr);
        if !amr.is_empty() {
            claims["amr"] = json!(amr);
        }
        if let Some(sid) = g.sid {
            claims["sid"] = json!(sid);
        }
        if let Some(map) = claims.as_object_mut() {
            map.extend(self.backed_claims(user_id, scope).await?);
        }
        let keys = self.keys();
        let key = keys.signer(&client.metadata.id_token_signed_response_alg)?;
        Ok(TokenResponse {
            access_token: access,
            token_type: TokenType::bound(g.proof.is_some()),
            expires_in: ACCESS_TTL_MS / 1000,
            scope: scope.to_owned(),
            id_token: Some(key.sign(&claims)?),
            refresh_token: refresh,
        })
    }

    /// `POST /oidc/token`, with the request's `DPoP` proof if it sent one.
    pub async fn token(
        &self,
        client: &Client,
        form: &TokenRequest,
        dpop: Option<&str>,
    ) -> Result<TokenResponse, OidcError> {
        let grant = form.grant_type.as_deref().unwrap_or_default();
        if !client.metadata.grant_types.iter().any(|g| g == grant) && !grant.is_empty() {
            return Err(OidcError::bad("unauthorized_client", format!("this client may not use {grant}")));
        }
        // The proof is checked here; its `jti` is recorded with the grant's tokens, in the
        // same commit (a replay then changes nothing).
        let proof = match dpop {
            Some(proof) => {
                let url = self.url("oidc/token");
                Some(read_proof(proof, &ProofFor { method: "POST", url: &url, access_token: None }, now_ms() / 1000)?)
            }
            None if client.metadata.dpop_bound_access_tokens == Some(true) => {
                return Err(dpop::invalid_proof("this client registered dpop_bound_access_tokens: send a DPoP proof"))
            }
            None => None,
        };
        let proof = proof.as_ref();
        let result = match grant {
            "authorization_code" => self.code_grant(client, form, proof).await,
            "refresh_token" => self.refresh_grant(client, form, proof).await,
            "client_credentials" => self.client_credentials(client, form, proof).await,
            DEVICE_CODE_GRANT => self.device_grant(client, form, proof).await,
            "" => Err(OidcError::bad("invalid_request", "grant_type is required")),
            other => Err(OidcError::bad("unsupported_grant_type", format!("{other} is not supported"))),
        };
        // Only grant types the client registered get here: static labels, bounded series.
        let label = clients::GRANT_TYPES.iter().find(|g| **g == grant).copied().unwrap_or("none");
        let ok = if result.is_ok() { "true" } else { "false" };
        metrics::counter!("sichat_oidc_token_requests_total", "grant" => label, "ok" => ok).increment(1);
        result
    }

    async fn code_grant(
        &self,
        client: &Client,
        form: &TokenRequest,
        proof: Option<&Proof>,
    ) -> Result<TokenResponse, OidcError> {
        let code = form.code.as_deref().ok_or_else(|| OidcError::bad("invalid_request", "code is required"))?;
        let verifier = (form.code_verifier.as_deref())
            .ok_or_else(|| OidcError::bad("invalid_request", "code_verifier is required"))?;
        let hash = token_hash(code);
        let now = now_ms();
        let row =
            store::codes::find(&self.db, &hash).await?.ok_or_else(|| invalid_grant("unknown authorization code"))?;
        if row.client_id != client.id {
            return Err(invalid_grant("the code was issued to another client"));
        }
        if row.used_at.is_some() {
            // A replayed code: everything issued from it ends (RFC 6749 §4.1.2).
            self.revoke_family(&hash).await?;
            return Err(invalid_grant("the code was already used; its tokens are revoked"));
        }
        // A failed redemption spends the code all the same.
        let refuse = |why: &'static str| {
            let spend = Spend::Code { hash: hash.clone(), at: now };
            let spend = Write::Tokens { spend: Some(spend), proof: None, tokens: vec![] };
            async move {
                self.writer.write(spend).await?;
                Err::<TokenResponse, _>(invalid_grant(why))
            }
        };
        if row.expires_at <= now {
            return refuse("the code has expired").await;
        }
        if form.redirect_uri.as_ref() != Some(&row.redirect_uri) {
            return refuse("redirect_uri does not match the authorization request").await;
        }
        if !is_pkce_value(verifier) || s256(verifier) != row.code_challenge {
            return refuse("code_verifier does not match the code_challenge").await;
        }
        if row.dpop_jkt.as_deref().is_some_and(|bound| proof.map(|p| p.jkt.as_str()) != Some(bound)) {
            return refuse("the code is bound to a DPoP key (dpop_jkt): prove that key").await;
        }
        let grant = Grant {
            user_id: Some(&row.user_id),
            scope: &row.scope,
            family: &hash,
            code_hash: Some(&hash),
            auth_time: Some(row.auth_time),
            amr: row.amr.as_deref(),
            sid: row.sid.as_deref(),
            proof,
        };
        let spend = Spend::Code { hash: hash.clone(), at: now };
        self.token_response(spend, client, &grant, row.nonce.as_deref()).await
    }

    async fn refresh_grant(
        &self,
        client: &Client,
        form: &TokenRequest,
        proof: Option<&Proof>,
    ) -> Result<TokenResponse, OidcError> {
        let token = (form.refresh_token.as_deref())
            .ok_or_else(|| OidcError::bad("invalid_request", "refresh_token is required"))?;
        let hash = token_key(token);
        let now = now_ms();
        let row =
            store::tokens::refresh(&self.db, &hash).await?.ok_or_else(|| invalid_grant("unknown refresh token"))?;
        if row.client_id != client.id {
            return Err(invalid_grant("the refresh token was issued to another client"));
        }
        let family = &row.family;
        if row.used_at.is_some() {
            // A rotated token came back: someone holds a copy. End the whole family.
            self.revoke_family(family).await?;
            metrics::counter!("sichat_oidc_refresh_reuse_total").increment(1);
            return Err(invalid_grant("the refresh token was already used; its family is revoked"));
        }
        if row.revoked_at.is_some() || row.expires_at <= now {
            return Err(invalid_grant("the refresh token is revoked or expired"));
        }
        // A bound refresh token is redeemed only with a proof of its key.
        if let Some(bound) = &row.jkt {
            if proof.map(|p| p.jkt.as_str()) != Some(bound.as_str()) {
                return Err(dpop::invalid_proof("this refresh token is bound to a DPoP key: prove that key"));
            }
        }
        let user_id = row.user_id.as_deref().ok_or_else(|| invalid_grant("not a user's refresh token"))?;
        if self.accounts.account(user_id).await.is_err() {
            return Err(invalid_grant("the account is gone"));
        }
        let granted = &row.scope;
        let scope = match &form.scope {
            None => granted.clone(),
            Some(asked) => {
                let g = scope_set(granted);
                if scope_set(asked).iter().any(|s| !g.contains(s)) {
                    return Err(OidcError::bad("invalid_scope", "a refresh cannot widen the granted scope"));
                }
                let mut asked = scope_set(asked);
                if !asked.contains(&"offline_access") {
                    asked.push("offline_access");
                }
                asked.join(" ")
            }
        };
        let grant = Grant {
            user_id: Some(user_id),
            scope: &scope,
            family,
            code_hash: None,
            auth_time: row.auth_time,
            amr: row.amr.as_deref(),
            sid: row.sid.as_deref(),
            proof,
        };
        // Spending it is guarded (unused, unrevoked): rotation stays single-use under
        // concurrency.
        self.token_response(Spend::Refresh { hash, at: now }, client, &grant, None).await
    }

    async fn client_credentials(
        &self,
        client: &Client,
        form: &TokenRequest,
        proof: Option<&Proof>,
    ) -> Result<TokenResponse, OidcError> {
        if client.is_public() {
            return Err(OidcError::bad("unauthorized_client", "client_credentials needs a confidential client"));
        }
        let asked = form.scope.clone().unwrap_or_default();
        let allowed = client.metadata.scope.clone().unwrap_or_default();
        let allowed = scope_set(&allowed);
        if let Some(s) = scope_set(&asked).iter().find(|s| !allowed.contains(s)) {
            return Err(OidcError::bad("invalid_scope", format!("scope {s} is not registered for this client")));
        }
        // Time-ordered, like the token's key: a batch of grants appends to the family index.
        let family = new_id();
        let grant = Grant {
            user_id: None,
            scope: &asked,
            family: &family,
            code_hash: None,
            auth_time: None,
            amr: None,
            sid: None,
            proof,
        };
        let (access, row) = Self::new_token("access", client, &grant);
        let write = Write::Tokens { spend: None, proof: proof.map(Proof::row), tokens: vec![row] };
        if self.writer.write(write).await? == Outcome::ProofReplayed {
            return Err(dpop::replayed());
        }
        self.mark_used(client).await?;
        Ok(TokenResponse {
            access_token: access,
            token_type: TokenType::bound(proof.is_some()),
            expires_in: ACCESS_TTL_MS / 1000,
            scope: asked,
            id_token: None,
            refresh_token: None,
        })
    }

    async fn revoke_family(&self, family: &str) -> Result<(), OidcError> {
        store::tokens::revoke_family(&self.db, family, now_ms()).await?;
        Ok(())
    }

    /// RFC 7009: revoke a token of this client. Unknown tokens are not an error.
    pub async fn revoke(&self, client: &Client, token: &str) -> Result<(), OidcError> {
        let key = token_key(token);
        let Some(row) = store::tokens::revocable(&self.db, &key).await? else { return Ok(()) };
        if row.client_id != client.id {
            return Ok(());
        }
        if row.kind == "refresh" {
            return self.revoke_family(&row.family).await;
        }
        store::tokens::revoke(&self.db, &key, now_ms()).await?;
        Ok(())
    }

    /// RFC 7662: what a token of this client is, if it is live.
    pub async fn introspect(&self, client: &Client, token: &str) -> Result<Introspection, OidcError> {
        let row = store::tokens::live(&self.db, &token_key(token), now_ms()).await?;
        let Some(row) = row else { return Ok(Introspection::default()) };
        if row.client_id != client.id {
            return Ok(Introspection::default());
        }
        let store::tokens::Live { kind, user_id, scope, jkt, created_at, expires_at, .. } = row;
        let token_type = match (kind.as_str(), &jkt) {
            ("refresh", _) => "refresh_token",
            (_, Some(_)) => "DPoP",
            _ => "Bearer",
        };
        let sub = match user_id {
            Some(u) => Some(self.subject(client, &u).await?),
            None => None,
        };
        Ok(Introspection {
            active: true,
            scope: Some(scope),
            client_id: Some(client.id.clone()),
            token_type: Some(token_type),
            iat: Some(created_at / 1000),
            exp: Some(expires_at / 1000),
            iss: Some(self.issuer.clone()),
            sub,
            cnf: jkt.map(|jkt| Confirmation { jkt }),
        })
    }
}
