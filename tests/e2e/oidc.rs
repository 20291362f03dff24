//! OpenID Connect: the real `openidconnect` crate as a relying party against a real node.
//! Discovery, dynamic registration, login and consent in a hand-driven browser, tokens,
//! UserInfo, refresh rotation, revocation, and every bad request refused.

use openidconnect::core::{
    CoreAuthPrompt, CoreAuthenticationFlow, CoreClient, CoreClientAuthMethod, CoreClientRegistrationRequest,
    CoreClientRegistrationResponse, CoreErrorResponseType, CoreGrantType, CoreIdTokenClaims, CoreJwsSigningAlgorithm,
    CoreProviderMetadata, CoreRegisterErrorResponseType, CoreUserInfoClaims,
};
use openidconnect::registration::{ClientRegistrationError, EmptyAdditionalClientMetadata};
use openidconnect::reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use openidconnect::url::Url;
use openidconnect::{
    AccessToken, AccessTokenHash, AuthorizationCode, ClientId, ClientName, CsrfToken, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, IntrospectionUrl, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, RefreshToken, RequestTokenError, Scope, StandardErrorResponse, SubjectIdentifier,
    TokenIntrospectionResponse, TokenResponse, UserInfoError,
};
use serde_json::{json, Value};
use sichat_e2e::{json, sichat, sichat_env, stderr, storage_tests, Backend, TestApp};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

storage_tests!(oidc_login_tokens_refresh_revoke, oidc_refuses_bad_requests);

pub(crate) const PASSWORD: &str = "correct horse battery staple";
pub(crate) const REDIRECT: &str = "http://127.0.0.1:9/cb";

/// The relying party's HTTP client (openidconnect's own reqwest re-export).
pub(crate) type Http = openidconnect::reqwest::Client;

/// A client with the endpoints this test uses through openidconnect: authorization,
/// introspection, token and UserInfo. (oauth2's revocation refuses plain http, so revocation
/// is sent by hand.)
pub(crate) type Rp =
    CoreClient<EndpointSet, EndpointNotSet, EndpointSet, EndpointNotSet, EndpointMaybeSet, EndpointMaybeSet>;

async fn oidc_login_tokens_refresh_revoke(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let alice = alice_with_password(&app).await;
    let alice_did = did(&alice).await;
    let http = rp_http();

    // Discovery: openidconnect checks the issuer and fetches the JWKS; the raw document is
    // checked against the contract.
    let (meta, raw) = discover(&app, &http).await;
    assert_eq!(raw["issuer"], app.url.as_str());
    for (field, path) in [
        ("authorization_endpoint", "/oidc/authorize"),
        ("token_endpoint", "/oidc/token"),
        ("userinfo_endpoint", "/oidc/userinfo"),
        ("jwks_uri", "/oidc/jwks"),
        ("registration_endpoint", "/oidc/register"),
        ("end_session_endpoint", "/oidc/logout"),
    ] {
        assert_eq!(raw[field], format!("{}{path}", app.url), "{field} in {raw}");
    }
    for field in ["revocation_endpoint", "introspection_endpoint"] {
        assert!(raw[field].as_str().is_some_and(|u| u.starts_with(&app.url)), "{field} in {raw}");
    }
    assert_eq!(raw["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(raw["id_token_signing_alg_values_supported"], json!(["RS256", "EdDSA", "ES256"]));
    assert_eq!(raw["response_types_supported"], json!(["code"]));
    assert_has(&raw["subject_types_supported"], &["pairwise", "public"]);
    assert_has(&raw["scopes_supported"], &["openid", "profile", "email", "offline_access"]);
    assert_has(&raw["grant_types_supported"], &["authorization_code", "refresh_token"]);

    // Dynamic registration through openidconnect.
    let reg = register(&http, &meta).await;
    assert!(reg.client_secret().is_some(), "a confidential client gets a secret");
    assert!(reg.registration_access_token().is_some() && reg.registration_client_uri().is_some());
    let client = rp(&meta, &raw, &reg);

    // Login and consent in the browser, then the code for tokens.
    let (auth_url, csrf, nonce, pkce) = begin(&client, &[]);
    let (back, asked) = authorize(&app, &auth_url, "allow").await;
    assert!(asked, "a new client gets the consent page");
    let code = code_from(&app, &back, &csrf);
    let tokens = client
        .exchange_code(code)
        .expect("token endpoint")
        .set_pkce_verifier(pkce)
        .request_async(&http)
        .await
        .expect("code exchange");

    // The ID token: RS256, signed by a key from the JWKS, for this client and nonce.
    let id_token = tokens.id_token().expect("an ID token");
    let verifier = client.id_token_verifier();
    let claims = id_token.claims(&verifier, &nonce).expect("a valid ID token");
    assert_eq!(id_token.signing_alg().expect("alg"), &CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256);
    if let Some(expected) = claims.access_token_hash() {
        let alg = id_token.signing_alg().expect("alg");
        let key = id_token.signing_key(&verifier).expect("signing key");
        let actual = AccessTokenHash::from_token(tokens.access_token(), alg, key).expect("at_hash");
        assert_eq!(&actual, expected, "at_hash matches the access token");
    }
    // Pairwise: neither the DID nor the account name.
    let sub = claims.subject().clone();
    assert!(!sub.is_empty(), "sub is present");
    assert!(!sub.contains(&alice_did) && sub.as_str() != "alice", "pairwise sub, got {}", sub.as_str());
    // amr (RFC 8176): signed in with a password.
    assert_eq!(amr(claims), ["pwd"], "amr after a password sign-in");
    assert!(raw["claims_supported"].as_array().is_some_and(|c| c.contains(&json!("amr"))), "{raw}");
    let auth_time = claims.auth_time().expect("auth_time");
    let refresh = tokens.refresh_token().expect("offline_access gives a refresh token").clone();

    // UserInfo, for the same subject.
    let info = userinfo(&client, &http, tokens.access_token(), &sub).await.expect("userinfo");
    assert_eq!(info.subject().as_str(), sub.as_str());
    assert_eq!(info.preferred_username().map(|u| u.as_str()), Some("alice"));
    assert!(introspect(&client, &http, tokens.access_token()).await, "a fresh access token is active");

    // Refresh rotates both tokens.
    let renewed = refresh_with(&client, &http, &refresh).await.expect("refresh");
    let new_refresh = renewed.refresh_token().expect("a rotated refresh token").clone();
    // The refreshed ID token still says how and when the user signed in (no nonce now).
    let no_nonce = |n: Option<&Nonce>| if n.is_none() { Ok(()) } else { Err("a nonce in a refreshed ID token".into()) };
    let again = renewed.id_token().expect("an ID token on refresh").claims(&verifier, no_nonce).expect("valid");
    assert_eq!(amr(again), ["pwd"], "amr survives a refresh");
    assert_eq!(again.auth_time(), Some(auth_time));
    assert_eq!(again.subject(), &sub);
    assert_ne!(new_refresh.secret(), refresh.secret());
    assert_ne!(renewed.access_token().secret(), tokens.access_token().secret());
    let info = userinfo(&client, &http, renewed.access_token(), &sub).await.expect("userinfo after refresh");
    assert_eq!(info.subject().as_str(), sub.as_str());

    // Replaying the old refresh token fails, and revokes the whole family.
    assert_eq!(refused(refresh_with(&client, &http, &refresh).await), CoreErrorResponseType::InvalidGrant);
    assert_eq!(refused(refresh_with(&client, &http, &new_refresh).await), CoreErrorResponseType::InvalidGrant);

    // Revocation (RFC 7009), on a second grant: the access token, then the refresh token.
    let (id, secret) = credentials(&reg);
    let (code, pkce, _) = fresh_code(&app, &client).await;
    let second = client
        .exchange_code(code)
        .expect("token endpoint")
        .set_pkce_verifier(pkce)
        .request_async(&http)
        .await
        .expect("code");
    let access = second.access_token().clone();
    userinfo(&client, &http, &access, &sub).await.expect("userinfo with the second grant");
    revoke(&raw, id, secret, access.secret(), "access_token").await;
    assert_eq!(userinfo_status(userinfo(&client, &http, &access, &sub).await), 401);
    assert!(!introspect(&client, &http, &access).await, "a revoked access token is inactive");
    let second_refresh = second.refresh_token().expect("refresh token").clone();
    revoke(&raw, id, secret, second_refresh.secret(), "refresh_token").await;
    assert_eq!(refused(refresh_with(&client, &http, &second_refresh).await), CoreErrorResponseType::InvalidGrant);

    // prompt=consent asks again even though consent was given, and Allow yields a code.
    let (url, csrf, _, _) = begin(&client, &[CoreAuthPrompt::Consent]);
    let (back, asked) = authorize(&app, &url, "allow").await;
    assert!(asked, "prompt=consent shows the consent page");
    code_from(&app, &back, &csrf);
    app.stop().await;
}

async fn oidc_refuses_bad_requests(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let _alice = alice_with_password(&app).await;
    let http = rp_http();
    let (meta, raw) = discover(&app, &http).await;

    // (h) A plain-http redirect URI off the loopback is refused at registration (a 400: only
    // that status gives openidconnect's ServerResponse).
    let endpoint = meta.registration_endpoint().expect("registration_endpoint");
    let bad = CoreClientRegistrationRequest::new(
        vec![RedirectUrl::new("http://example.com/cb".into()).expect("url")],
        EmptyAdditionalClientMetadata {},
    )
    .set_client_name(Some(ClientName::new("Bad RP".into()).into()));
    match bad.register_async(endpoint, &http).await {
        Err(ClientRegistrationError::ServerResponse(e)) => {
            assert_eq!(e.error(), &CoreRegisterErrorResponseType::InvalidRedirectUri)
        }
        Err(other) => panic!("expected invalid_redirect_uri, got {other}"),
        Ok(r) => panic!("registered {}", r.client_id().as_str()),
    }

    let reg = register(&http, &meta).await;
    let client = rp(&meta, &raw, &reg);

    // (a) Unknown client: an error page, never a redirect.
    let stranger = CoreClient::from_provider_metadata(meta.clone(), ClientId::new("no-such-client".into()), None)
        .set_redirect_uri(RedirectUrl::new(REDIRECT.into()).expect("url"));
    let (challenge, _) = PkceCodeChallenge::new_random_sha256();
    let (url, _, _) = stranger
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .set_pkce_challenge(challenge)
        .url();
    assert_error_page(&Browser::new().get(url.as_str()).await);

    // (b) Registered client, unregistered redirect URI: an error page, never a redirect.
    let other = RedirectUrl::new("http://127.0.0.1:9/other".into()).expect("url");
    let (challenge, _) = PkceCodeChallenge::new_random_sha256();
    let (url, _, _) = client
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .set_redirect_uri(Cow::Owned(other))
        .set_pkce_challenge(challenge)
        .url();
    assert_error_page(&Browser::new().get(url.as_str()).await);

    // (c) No PKCE: a malformed request is answered with an error page, not sent unasked to
    // whatever address the client registered (RFC 9700 §4.11.2).
    let (url, _, _) =
        client.authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random).url();
    let page = Browser::new().get(url.as_str()).await;
    assert_error_page(&page);
    assert!(page.body.contains("code_challenge"), "the page says what was wrong: {}", page.body);

    // prompt=none without a session: login_required, back to the client.
    let (challenge, _) = PkceCodeChallenge::new_random_sha256();
    let (url, csrf, _) = client
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .add_prompt(CoreAuthPrompt::None)
        .set_pkce_challenge(challenge)
        .url();
    let page = Browser::new().get(url.as_str()).await;
    assert_error_redirect(&app, &page, &csrf, "login_required");

    // Consent denied: access_denied, back to the client.
    let (url, csrf, _, _) = begin(&client, &[]);
    let (back, asked) = authorize(&app, &url, "deny").await;
    assert!(asked, "a new client gets the consent page");
    assert_eq!(param(&back, "error").as_deref(), Some("access_denied"), "{back}");
    assert_eq!(param(&back, "state").as_deref(), Some(csrf.secret().as_str()));
    assert_eq!(param(&back, "code"), None);

    let (id, secret) = credentials(&reg);

    // (d) A wrong PKCE verifier: invalid_grant.
    let (code, _, _) = fresh_code(&app, &client).await;
    let wrong = "x".repeat(64);
    let (status, body) = token_request(&app, id, secret, &code_form(code.secret(), &wrong)).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");

    // (e) A fresh code with the right verifier works once; a replay is refused and revokes
    // what the code gave.
    let (code, pkce, nonce) = fresh_code(&app, &client).await;
    let replay = code_form(code.secret(), pkce.secret());
    let tokens = client
        .exchange_code(code)
        .expect("token endpoint")
        .set_pkce_verifier(pkce)
        .request_async(&http)
        .await
        .expect("code exchange");
    let id_token = tokens.id_token().expect("an ID token");
    let sub = id_token.claims(&client.id_token_verifier(), &nonce).expect("a valid ID token").subject().clone();
    userinfo(&client, &http, tokens.access_token(), &sub).await.expect("userinfo before the replay");
    let (status, body) = token_request(&app, id, secret, &replay).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
    assert_eq!(userinfo_status(userinfo(&client, &http, tokens.access_token(), &sub).await), 401);

    // (f) A wrong client secret: 401 invalid_client.
    let (status, body) = token_request(&app, id, "not-the-secret", &code_form("whatever", &wrong)).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")), "{body}");

    // (g) An oversized body: 413.
    let huge = format!("grant_type=authorization_code&code={}", "a".repeat(2 * 1024 * 1024));
    let (status, _) = token_request(&app, id, secret, &huge).await;
    assert_eq!(status, 413);
    app.stop().await;
}

/// `alice`, the node's owner, with a password for the login form.
pub(crate) async fn alice_with_password(app: &TestApp) -> PathBuf {
    let alice = app.join("alice", &app.owner_invite).await;
    let env = [("SICHAT_NEW_PASSWORD", PASSWORD), ("SICHAT_PASSPHRASE", sichat_e2e::PASSPHRASE)];
    let out = sichat_env(&alice, &["password", "set"], &env).await;
    assert!(out.status.success(), "password set: {}", stderr(&out));
    alice
}

pub(crate) async fn did(wallet: &Path) -> String {
    json(&sichat(wallet, &["--json", "whoami"]).await)["did"].as_str().expect("did").to_owned()
}

/// The relying party's HTTP client never follows redirects (openidconnect's SSRF advice).
pub(crate) fn rp_http() -> Http {
    Http::builder().redirect(openidconnect::reqwest::redirect::Policy::none()).build().expect("http client")
}

/// Provider metadata through openidconnect, plus the raw document for the endpoints
/// `CoreProviderMetadata` does not model (revocation, introspection, logout).
pub(crate) async fn discover(app: &TestApp, http: &Http) -> (CoreProviderMetadata, Value) {
    let issuer = IssuerUrl::new(app.url.clone()).expect("issuer URL");
    let meta = CoreProviderMetadata::discover_async(issuer, http).await.expect("discovery");
    let (status, raw) = app.get_json("/.well-known/openid-configuration").await;
    assert_eq!(status, 200, "{raw}");
    (meta, raw)
}

/// The `amr` values of ID token claims, as openidconnect reads them.
pub(crate) fn amr(claims: &CoreIdTokenClaims) -> Vec<String> {
    claims.auth_method_refs().map(|v| v.iter().map(|a| a.as_str().to_owned()).collect()).unwrap_or_default()
}

pub(crate) fn assert_has(list: &Value, want: &[&str]) {
    for w in want {
        assert!(list.as_array().is_some_and(|l| l.iter().any(|v| v == w)), "{w} missing from {list}");
    }
}

/// Registers "Test RP": confidential, client_secret_basic, code and refresh grants.
pub(crate) async fn register(http: &Http, meta: &CoreProviderMetadata) -> CoreClientRegistrationResponse {
    let endpoint = meta.registration_endpoint().expect("registration_endpoint");
    CoreClientRegistrationRequest::new(
        vec![RedirectUrl::new(REDIRECT.into()).expect("url")],
        EmptyAdditionalClientMetadata {},
    )
    .set_client_name(Some(ClientName::new("Test RP".into()).into()))
    .set_token_endpoint_auth_method(Some(CoreClientAuthMethod::ClientSecretBasic))
    .set_grant_types(Some(vec![CoreGrantType::AuthorizationCode, CoreGrantType::RefreshToken]))
    .register_async(endpoint, http)
    .await
    .expect("dynamic registration")
}

pub(crate) fn rp(meta: &CoreProviderMetadata, raw: &Value, reg: &CoreClientRegistrationResponse) -> Rp {
    let endpoint = |field: &str| raw[field].as_str().unwrap_or_else(|| panic!("{field} in {raw}")).to_owned();
    CoreClient::from_provider_metadata(meta.clone(), reg.client_id().clone(), reg.client_secret().cloned())
        .set_redirect_uri(RedirectUrl::new(REDIRECT.into()).expect("url"))
        .set_introspection_url(IntrospectionUrl::new(endpoint("introspection_endpoint")).expect("introspection URL"))
}

/// A code-flow request for profile and offline_access, with PKCE (S256).
fn begin(client: &Rp, prompts: &[CoreAuthPrompt]) -> (Url, CsrfToken, Nonce, PkceCodeVerifier) {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut request = client
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("offline_access".into()))
        .set_pkce_challenge(challenge);
    for p in prompts {
        request = request.add_prompt(p.clone());
    }
    let (url, csrf, nonce) = request.url();
    (url, csrf, nonce, verifier)
}

/// A new authorization code for `client`, with its PKCE verifier and nonce.
pub(crate) async fn fresh_code(app: &TestApp, client: &Rp) -> (AuthorizationCode, PkceCodeVerifier, Nonce) {
    let (url, csrf, nonce, verifier) = begin(client, &[]);
    let (back, _) = authorize(app, &url, "allow").await;
    (code_from(app, &back, &csrf), verifier, nonce)
}

/// A fresh browser logs alice in and answers the consent page, if shown, with `decision`.
/// Returns the redirect back to the client, and whether consent was asked.
async fn authorize(app: &TestApp, auth_url: &Url, decision: &str) -> (Url, bool) {
    let mut browser = Browser::new();
    let login = browser.get(auth_url.as_str()).await;
    assert_eq!(login.status, 200, "login page: {}", login.body);
    assert!(login.body.contains(r#"action="/oidc/login""#), "{}", login.body);
    let form = [
        ("request", hidden(&login.body, "request")),
        ("csrf", hidden(&login.body, "csrf")),
        ("username", "alice".to_owned()),
        ("password", PASSWORD.to_owned()),
    ];
    let after_login = browser.post(&format!("{}/oidc/login", app.url), &form).await;
    assert_eq!(after_login.status, 303, "login: {}", after_login.body);
    let next = after_login.location(app).expect("a redirect after login");
    if next.as_str().starts_with(REDIRECT) {
        return (next, false); // consent given before and remembered
    }
    assert_eq!(next.path(), "/oidc/consent", "{next}");

    let consent = browser.get(next.as_str()).await;
    assert_eq!(consent.status, 200, "consent page: {}", consent.body);
    assert!(consent.body.contains(r#"action="/oidc/consent""#), "{}", consent.body);
    assert!(consent.body.contains("Test RP") && consent.body.contains("profile"), "{}", consent.body);
    let form = [
        ("request", hidden(&consent.body, "request")),
        ("csrf", hidden(&consent.body, "csrf")),
        ("decision", decision.to_owned()),
    ];
    let done = browser.post(&format!("{}/oidc/consent", app.url), &form).await;
    assert_eq!(done.status, 303, "consent: {}", done.body);
    let back = done.location(app).expect("a redirect after consent");
    assert!(back.as_str().starts_with(REDIRECT), "{back}");
    (back, true)
}

/// The code in a redirect back to the client, after checking `state` and `iss` (RFC 9207).
pub(crate) fn code_from(app: &TestApp, back: &Url, csrf: &CsrfToken) -> AuthorizationCode {
    assert!(back.as_str().starts_with(REDIRECT), "{back}");
    assert_eq!(param(back, "error"), None, "{back}");
    assert_eq!(param(back, "state").as_deref(), Some(csrf.secret().as_str()), "{back}");
    assert_eq!(param(back, "iss").as_deref(), Some(app.url.as_str()), "{back}");
    AuthorizationCode::new(param(back, "code").expect("a code"))
}

pub(crate) fn param(url: &Url, key: &str) -> Option<String> {
    url.query_pairs().find(|(k, _)| k == key).map(|(_, v)| v.into_owned())
}

/// An HTML error page, and no redirect to an unverified place.
pub(crate) fn assert_error_page(page: &Page) {
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.location.is_none(), "no redirect: {:?}", page.location);
    assert!(page.content_type.starts_with("text/html"), "{}", page.content_type);
}

/// An OAuth error sent back to the client's redirect URI with the request's state.
fn assert_error_redirect(app: &TestApp, page: &Page, csrf: &CsrfToken, error: &str) {
    assert_eq!(page.status, 303, "{}", page.body);
    let back = page.location(app).expect("a redirect");
    assert!(back.as_str().starts_with(REDIRECT), "{back}");
    assert_eq!(param(&back, "error").as_deref(), Some(error), "{back}");
    assert_eq!(param(&back, "state").as_deref(), Some(csrf.secret().as_str()), "{back}");
    assert_eq!(param(&back, "code"), None);
}

/// The value of form field `name` in `html`, whatever the attribute order.
pub(crate) fn hidden(html: &str, name: &str) -> String {
    let at = html.find(&format!(r#"name="{name}""#)).unwrap_or_else(|| panic!("no field {name} in {html}"));
    let start = html[..at].rfind('<').expect("tag start");
    let end = at + html[at..].find('>').expect("tag end");
    let tag = &html[start..end];
    let value =
        tag.split(r#"value=""#).nth(1).and_then(|v| v.split('"').next()).unwrap_or_else(|| panic!("no value in {tag}"));
    value
        .replace("&quot;", "\"")
        .replace("&#34;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

pub(crate) fn credentials(reg: &CoreClientRegistrationResponse) -> (&str, &str) {
    (reg.client_id().as_str(), reg.client_secret().expect("client secret").secret().as_str())
}

/// RFC 7009 revocation by hand: openidconnect (oauth2) only revokes over https.
async fn revoke(raw: &Value, id: &str, secret: &str, token: &str, hint: &str) {
    let endpoint = raw["revocation_endpoint"].as_str().expect("revocation_endpoint");
    let r = reqwest::Client::new()
        .post(endpoint)
        .basic_auth(id, Some(secret))
        .form(&[("token", token), ("token_type_hint", hint)])
        .send()
        .await
        .expect("revocation request");
    assert_eq!(r.status().as_u16(), 200, "revoke {hint}: {}", r.text().await.unwrap_or_default());
}

/// The body of an authorization_code grant, by hand.
fn code_form(code: &str, verifier: &str) -> String {
    openidconnect::url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "authorization_code")
        .append_pair("code", code)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("code_verifier", verifier)
        .finish()
}

/// A token request by hand (client_secret_basic), for the status codes openidconnect hides.
async fn token_request(app: &TestApp, id: &str, secret: &str, body: &str) -> (u16, Value) {
    let r = app
        .http
        .post(format!("{}/oidc/token", app.url))
        .basic_auth(id, Some(secret))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(body.to_owned())
        .send()
        .await
        .expect("token request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

pub(crate) type UserInfoResult =
    Result<CoreUserInfoClaims, UserInfoError<openidconnect::HttpClientError<openidconnect::reqwest::Error>>>;

pub(crate) async fn userinfo(client: &Rp, http: &Http, token: &AccessToken, sub: &SubjectIdentifier) -> UserInfoResult {
    client.user_info(token.clone(), Some(sub.clone())).expect("userinfo endpoint").request_async(http).await
}

/// The HTTP status of a refused UserInfo request.
pub(crate) fn userinfo_status(r: UserInfoResult) -> u16 {
    match r {
        Err(UserInfoError::Response(status, _, _)) => status.as_u16(),
        Err(other) => panic!("expected an HTTP error status, got {other}"),
        Ok(_) => panic!("userinfo unexpectedly answered"),
    }
}

pub(crate) async fn introspect(client: &Rp, http: &Http, token: &AccessToken) -> bool {
    client.introspect(token).request_async(http).await.expect("introspection").active()
}

pub(crate) type TokenResult = Result<
    openidconnect::core::CoreTokenResponse,
    RequestTokenError<
        openidconnect::HttpClientError<openidconnect::reqwest::Error>,
        StandardErrorResponse<CoreErrorResponseType>,
    >,
>;

pub(crate) async fn refresh_with(client: &Rp, http: &Http, token: &RefreshToken) -> TokenResult {
    client.exchange_refresh_token(token).expect("token endpoint").request_async(http).await
}

/// The OAuth error code of a refused token request.
pub(crate) fn refused(r: TokenResult) -> CoreErrorResponseType {
    match r {
        Err(RequestTokenError::ServerResponse(e)) => e.error().clone(),
        Err(other) => panic!("expected an OAuth error, got {other}"),
        Ok(_) => panic!("the token request was unexpectedly granted"),
    }
}

/// A browser, by hand: a cookie jar and no automatic redirects.
pub(crate) struct Browser {
    http: reqwest::Client,
    cookies: BTreeMap<String, String>,
}

pub(crate) struct Page {
    pub(crate) status: u16,
    pub(crate) location: Option<String>,
    pub(crate) content_type: String,
    pub(crate) body: String,
}

impl Page {
    /// The `Location` header, resolved against the node's URL.
    pub(crate) fn location(&self, app: &TestApp) -> Option<Url> {
        let base = Url::parse(&app.url).expect("node URL");
        self.location.as_deref().map(|l| base.join(l).expect("a valid Location"))
    }
}

impl Browser {
    pub(crate) fn new() -> Self {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("browser");
        Self { http, cookies: BTreeMap::new() }
    }

    /// A browser whose connections come from `addr` (any 127.0.0.0/8 address on Linux), as
    /// a user elsewhere on the network would be.
    pub(crate) fn from_address(addr: std::net::IpAddr) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .local_address(addr)
            .build()
            .expect("browser");
        Self { http, cookies: BTreeMap::new() }
    }

    pub(crate) async fn get(&mut self, url: &str) -> Page {
        let req = self.http.get(url);
        self.send(req).await
    }

    pub(crate) async fn post(&mut self, url: &str, form: &[(&str, String)]) -> Page {
        let req = self.http.post(url).form(form);
        self.send(req).await
    }

    async fn send(&mut self, mut req: reqwest::RequestBuilder) -> Page {
        if !self.cookies.is_empty() {
            let jar: Vec<String> = self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
            req = req.header(COOKIE, jar.join("; "));
        }
        let r = req.send().await.expect("browser request");
        for set in r.headers().get_all(SET_COOKIE) {
            self.remember(set.to_str().expect("ASCII cookie"));
        }
        let header = |name| r.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let (location, content_type) = (header(LOCATION), header(CONTENT_TYPE).unwrap_or_default());
        let status = r.status().as_u16();
        Page { status, location, content_type, body: r.text().await.expect("body") }
    }

    /// Keep or drop a cookie from a `Set-Cookie` header (attributes other than Max-Age=0 ignored).
    fn remember(&mut self, set: &str) {
        let mut parts = set.split(';').map(str::trim);
        let Some((name, value)) = parts.next().and_then(|p| p.split_once('=')) else { return };
        let expired = parts.any(|a| a.eq_ignore_ascii_case("max-age=0"));
        if expired || value.is_empty() {
            self.cookies.remove(name);
        } else {
            self.cookies.insert(name.to_owned(), value.to_owned());
        }
    }
}
