//! `/oidc/par`: pushed authorization requests (RFC 9126), and request objects (JAR, RFC
//! 9101) in either place.
//!
//! A client posts its authorization request to `/oidc/par`, authenticated as at the token
//! endpoint; the node checks it as `/oidc/authorize` would and answers a `request_uri`
//! (`urn:ietf:params:oauth:request_uri:…`) that lives 60 seconds and is used once, bound to
//! that client. `/oidc/authorize?client_id=…&request_uri=…` then uses only what was pushed.
//! A client that registered `require_pushed_authorization_requests` can sign in no other way.
//!
//! A request object (`request`) is a JWT signed by one of the client's registered keys
//! (`iss` the client, `aud` this issuer, not expired); only its parameters are used (RFC 9101
//! §6.3). A client that registered `require_signed_request_object` must send one.

use super::*;

pub const REQUEST_URI_PREFIX: &str = "urn:ietf:params:oauth:request_uri:";
const PUSHED_TTL_MS: i64 = 60_000;
const MAX_REQUEST_OBJECT_BYTES: usize = 16 * 1024;

impl Provider {
    /// The parameters of an authorization request as sent (`q`), or those of its request
    /// object when it has one. Errors are the client's, never redirected.
    pub async fn request_params(
        &self,
        client: &Client,
        q: &HashMap<String, String>,
    ) -> Result<HashMap<String, String>, OidcError> {
        let bad = |why: String| OidcError::bad("invalid_request_object", why);
        let Some(object) = q.get("request").filter(|r| !r.is_empty()) else {
            if client.metadata.require_signed_request_object == Some(true) {
                return Err(bad("this client registered require_signed_request_object: send a request object".into()));
            }
            return Ok(q.clone());
        };
        if object.len() > MAX_REQUEST_OBJECT_BYTES {
            return Err(bad("the request object is too large".into()));
        }
        let (header, claims) = sichat_core::jws::unverified_parts(object)
            .map_err(|_| bad("the request object is not a signed JWT (unsigned ones are refused)".into()))?;
        self.verify_by_client(client, object, &header, client.metadata.request_object_signing_alg.as_deref())
            .await
            .map_err(|why| bad(format!("the request object: {why}")))?;
        let claims = claims.as_object().ok_or_else(|| bad("the request object's claims are not an object".into()))?;
        let str_claim = |k: &str| claims.get(k).and_then(Value::as_str);
        if str_claim("iss") != Some(client.id.as_str()) || str_claim("client_id").is_some_and(|c| c != client.id) {
            return Err(bad("the request object's iss and client_id must be the client".into()));
        }
        let audiences: Vec<&str> = match claims.get("aud") {
            Some(Value::String(a)) => vec![a.as_str()],
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        if !audiences.contains(&self.issuer.as_str()) {
            return Err(bad(format!("the request object's aud must be {}", self.issuer)));
        }
        if claims.get("exp").and_then(Value::as_i64).is_some_and(|exp| exp * 1000 <= now_ms()) {
            return Err(bad("the request object has expired".into()));
        }
        let mut params: HashMap<String, String> = claims
            .iter()
            .filter(|(k, _)| {
                !["iss", "aud", "exp", "iat", "nbf", "jti", "request", "request_uri"].contains(&k.as_str())
            })
            .map(|(k, v)| (k.clone(), v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())))
            .collect();
        params.insert("client_id".into(), client.id.clone());
        Ok(params)
    }

    /// `POST /oidc/par` for an authenticated client: the `request_uri` to sign in with.
    /// A DPoP proof sent with it binds the code to the proof's key (RFC 9449 §10.1), as
    /// `dpop_jkt` does; both must then name the same key.
    pub async fn push_request(
        &self,
        client: &Client,
        form: &AuthorizationParams,
        dpop: Option<&str>,
    ) -> Result<PushedRequest, OidcError> {
        if form.contains_key("request_uri") {
            return Err(OidcError::bad("invalid_request", "a pushed request cannot itself name a request_uri"));
        }
        let mut params = self.request_params(client, form).await?;
        for auth in ["client_secret", "client_assertion", "client_assertion_type"] {
            params.remove(auth);
        }
        let redirect_uri = params.get("redirect_uri").map(String::as_str).unwrap_or_default();
        if !client.allows_redirect(redirect_uri) {
            return Err(OidcError::bad("invalid_request", "redirect_uri is not one this client registered"));
        }
        if let Some(proof) = dpop {
            let url = self.url("oidc/par");
            let jkt = self.check_dpop(proof, ProofFor { method: "POST", url: &url, access_token: None }).await?;
            if params.get("dpop_jkt").is_some_and(|named| *named != jkt) {
                return Err(dpop::invalid_proof("dpop_jkt names another key than the DPoP proof's"));
            }
            params.insert("dpop_jkt".into(), jkt);
        }
        Self::check_request(client, &params)?;
        let id = random_token();
        let json = serde_json::to_string(&params).map_err(OidcError::internal)?;
        store::requests::insert_pushed(&self.db, &token_hash(&id), &client.id, &json, now_ms() + PUSHED_TTL_MS).await?;
        Ok(PushedRequest { request_uri: format!("{REQUEST_URI_PREFIX}{id}"), expires_in: PUSHED_TTL_MS / 1000 })
    }

    /// What `client_id` pushed as `request_uri`: once, within its lifetime.
    pub async fn pushed(&self, client_id: &str, request_uri: &str) -> Result<HashMap<String, String>, OidcError> {
        let gone = || {
            OidcError::bad(
                "invalid_request_uri",
                "the request_uri is unknown, expired, already used, or pushed by another client",
            )
        };
        let id = request_uri.strip_prefix(REQUEST_URI_PREFIX).ok_or_else(gone)?;
        let hash = token_hash(id);
        let now = now_ms();
        if !store::requests::take_pushed(&self.db, &hash, client_id, now).await? {
            return Err(gone());
        }
        let params = store::requests::pushed_params(&self.db, &hash).await?;
        serde_json::from_str(&params).map_err(OidcError::internal)
    }
}
