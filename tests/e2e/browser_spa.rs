//! A browser single-page app (SPA) signs in with a public client and PKCE, in headless
//! Chromium: the provider's CORS for real, not a preflight sent by hand.
//!
//! The app is a page on a loopback origin of its own (`http://127.0.0.1:<port>`; the node is
//! `http://localhost:<port>`), served by the test. Its JavaScript reads discovery, makes its
//! PKCE challenge with Web Crypto, and sends the browser to the authorization endpoint; the
//! user signs in on the node's page and consents; back on the app, its JavaScript redeems the
//! code, checks the ID token against the JWKS, reads UserInfo, refreshes, and revokes, each
//! with `fetch()` across origins. A second page of the app tries what a browser must refuse
//! it: the node's pages, registration and account endpoints, and credentialed requests.
//!
//! Needs `chromium` and `chromedriver`, as the other browser tests (skips without them,
//! except under `CI=true`).

use crate::browser::{alice_with_password, Chrome, ONE_BROWSER, PASSWORD};
use crate::oidc_clients::register_raw;
use axum::response::Html;
use axum::routing::get;
use serde_json::{json, Value};
use sichat_e2e::{storage_tests, Backend, TestApp};

storage_tests!(browser_spa_public_client_pkce);

async fn browser_spa_public_client_pkce(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let _alice = alice_with_password(&app).await;

    // The app's origin, then its registration: a public web client, code and refresh grants.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the app");
    let origin = format!("http://127.0.0.1:{}", listener.local_addr().expect("addr").port());
    assert_ne!(url::Url::parse(&origin).expect("url").origin(), url::Url::parse(&app.url).expect("url").origin());
    let body = json!({
        "application_type": "web",
        "client_name": "Browser SPA",
        "redirect_uris": [format!("{origin}/callback")],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
    });
    let (status, reg) = register_raw(&app, &body, None).await;
    assert_eq!(status, 201, "{reg}");
    assert_eq!(reg["token_endpoint_auth_method"], "none", "{reg}");
    assert!(reg.get("client_secret").is_none_or(Value::is_null), "a public client has no secret: {reg}");
    let client_id = reg["client_id"].as_str().expect("client_id").to_owned();

    let config = json!({"issuer": app.url, "client_id": client_id}).to_string();
    let page = |script: &str| Html(format!("{HEAD}<script>const CONFIG = {config};\n{COMMON}\n{script}</script>"));
    let spa = axum::Router::new()
        .route("/", get(page(START)))
        .route("/callback", get(page(CALLBACK)))
        .route("/probe", get(page(PROBE)));
    let server = tokio::spawn(async move { axum::serve(listener, spa).await.expect("serve the app") });

    let _one = ONE_BROWSER.lock().await;
    let Some(chrome) = Chrome::start().await else { return };
    chrome.c.goto(&format!("{origin}/")).await.expect("open the app");
    // The link exists once discovery was read across origins and the challenge made.
    let href = chrome.wait_for("#signin").await.attr("href").await.expect("href").expect("a link");
    let authorize = url::Url::parse(&href).expect("the authorization URL");
    assert!(authorize.as_str().starts_with(&format!("{}/oidc/authorize?", app.url)), "{authorize}");
    let param = |k: &str| authorize.query_pairs().find(|(q, _)| q == k).map(|(_, v)| v.into_owned());
    assert_eq!(param("code_challenge_method").as_deref(), Some("S256"));
    assert_eq!(param("code_challenge").map(|c| c.len()), Some(43), "base64url of a SHA-256 digest");
    assert_eq!(param("scope").as_deref(), Some("openid profile offline_access"));
    chrome.click("#signin").await;

    chrome.fill("#username", "alice").await;
    chrome.fill("#password", PASSWORD).await;
    chrome.click("form[action='/oidc/login'] button[type=submit]").await;
    chrome.click("button[name=decision][value=allow]").await;

    let result: Value = serde_json::from_str(&chrome.text("#result").await).expect("the app's result is JSON");
    assert_eq!(result["error"], Value::Null, "the app failed: {result:#}");
    let url = chrome.c.current_url().await.expect("url");
    assert_eq!(url.as_str(), format!("{origin}/callback"), "the app dropped the code from its address");
    assert_eq!(result["token_status"], 200, "{result:#}");
    assert_eq!(result["token_type"], "Bearer", "{result:#}");
    assert_eq!(result["id_token"], true, "{result:#}");
    let sub = result["sub"].as_str().filter(|s| !s.is_empty()).expect("the ID token's sub");
    assert_eq!(result["iss"], app.url.as_str(), "{result:#}");
    assert_eq!(result["aud"], client_id.as_str(), "{result:#}");
    assert_eq!(result["nonce_ok"], true, "{result:#}");
    assert_eq!(result["amr"], json!(["pwd"]), "{result:#}");
    assert!(result["jwks_keys"].as_u64().is_some_and(|n| n >= 1), "{result:#}");
    assert_eq!(result["signature_ok"], true, "the ID token verifies with a JWKS key, in Web Crypto: {result:#}");
    assert_eq!(result["userinfo_status"], 200, "{result:#}");
    assert_eq!(result["userinfo_sub"], sub, "UserInfo is the ID token's user: {result:#}");
    assert_eq!(result["preferred_username"], "alice", "{result:#}");
    // A refresh, from the browser too: rotated, and the spent token refused in JSON the
    // app can read.
    assert_eq!(result["refresh_status"], 200, "{result:#}");
    assert_eq!(result["refresh_rotated"], true, "{result:#}");
    assert_eq!(result["refreshed_sub"], sub, "{result:#}");
    assert_eq!(result["reuse_status"], 400, "{result:#}");
    assert_eq!(result["reuse_error"], "invalid_grant", "{result:#}");
    // Revocation, then UserInfo refuses the token with a challenge the app can read
    // (WWW-Authenticate is an exposed header).
    assert_eq!(result["revoke_status"], 200, "{result:#}");
    assert_eq!(result["revoked_userinfo_status"], 401, "{result:#}");
    let challenge = result["www_authenticate"].as_str().unwrap_or_default();
    assert!(challenge.starts_with("Bearer") && challenge.contains("invalid_token"), "{result:#}");

    // What the browser keeps the app out of. The first probe is the control: the node is
    // reachable from this page, so every rejection after it is the browser's CORS check.
    chrome.c.goto(&format!("{origin}/probe")).await.expect("open the probe page");
    let probes: Value = serde_json::from_str(&chrome.text("#probe").await).expect("the probes are JSON");
    assert_eq!(probes["error"], Value::Null, "{probes:#}");
    assert_eq!(probes["discovery"], "200", "{probes:#}");
    assert_eq!(probes["jwks"], "200", "{probes:#}");
    for name in [
        "discovery with credentials",
        "token with credentials",
        "consents with credentials",
        "consents with a bearer token",
        "password change",
        "sign-in post",
        "consent post",
        "registration",
        "authorization page",
        "account page",
    ] {
        let got = probes[name].as_str().unwrap_or_default();
        assert!(
            got.starts_with("TypeError"),
            "{name}: the browser must refuse the app the answer, got {got:?}: {probes:#}"
        );
    }
    chrome.quit().await;
    server.abort();
    app.stop().await;
}

const HEAD: &str = "<!doctype html><html><head><meta charset=utf-8><title>Browser SPA</title></head>\
<body><h1>Browser SPA</h1>";

/// Helpers every page of the app shares.
const COMMON: &str = r#"
const b64url = (buf) => btoa(String.fromCharCode(...new Uint8Array(buf)))
  .replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
const unb64url = (s) => Uint8Array.from(atob(s.replace(/-/g, '+').replace(/_/g, '/')), (c) => c.charCodeAt(0));
const random = () => b64url(crypto.getRandomValues(new Uint8Array(32)));
const show = (id, value) => {
  const pre = document.createElement('pre');
  pre.id = id;
  pre.textContent = JSON.stringify(value);
  document.body.append(pre);
};
const discovery = async () => {
  const r = await fetch(CONFIG.issuer + '/.well-known/openid-configuration');
  if (!r.ok) throw new Error('discovery: HTTP ' + r.status);
  return r.json();
};
"#;

/// `/`: discovery, PKCE, state and nonce in sessionStorage, then a link to the
/// authorization endpoint.
const START: &str = r#"
(async () => {
  const d = await discovery();
  if (!(d.code_challenge_methods_supported || []).includes('S256')) throw new Error('no S256');
  const verifier = random();
  const challenge = b64url(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier)));
  const state = random(), nonce = random();
  sessionStorage.setItem('login', JSON.stringify({ verifier, state, nonce }));
  const scope = ['openid', 'profile', 'offline_access'].filter((s) => d.scopes_supported.includes(s)).join(' ');
  const u = new URL(d.authorization_endpoint);
  const params = {
    response_type: 'code', client_id: CONFIG.client_id, redirect_uri: location.origin + '/callback',
    scope, state, nonce, code_challenge: challenge, code_challenge_method: 'S256',
  };
  for (const [k, v] of Object.entries(params)) u.searchParams.set(k, v);
  const a = document.createElement('a');
  a.id = 'signin';
  a.href = u.href;
  a.textContent = 'Sign in';
  document.body.append(a);
})().catch((e) => show('result', { error: String(e) }));
"#;

/// `/callback`: state and iss checked, the code redeemed with the verifier, the ID token
/// checked (nonce, signature by a JWKS key), UserInfo read; then a refresh, a replay of the
/// spent refresh token, and revocation.
const CALLBACK: &str = r#"
const json = (s) => JSON.parse(new TextDecoder().decode(unb64url(s)));
const tokenCall = async (endpoint, params) => {
  const r = await fetch(endpoint, { method: 'POST', body: new URLSearchParams(params) });
  const text = await r.text();
  return [r.status, text ? JSON.parse(text) : null];
};
const ALGS = {
  RS256: [{ name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }, { name: 'RSASSA-PKCS1-v1_5' }],
  ES256: [{ name: 'ECDSA', namedCurve: 'P-256' }, { name: 'ECDSA', hash: 'SHA-256' }],
  EdDSA: [{ name: 'Ed25519' }, { name: 'Ed25519' }],
};
const verify = async (jwt, keys) => {
  const [h, p, s] = jwt.split('.');
  const header = json(h);
  const jwk = keys.find((k) => k.kid === header.kid);
  if (!jwk || !ALGS[header.alg]) throw new Error('no key for ' + JSON.stringify(header));
  const [importAlg, verifyAlg] = ALGS[header.alg];
  const key = await crypto.subtle.importKey('jwk', jwk, importAlg, false, ['verify']);
  return crypto.subtle.verify(verifyAlg, key, unb64url(s), new TextEncoder().encode(h + '.' + p));
};
(async () => {
  const q = new URLSearchParams(location.search);
  const saved = JSON.parse(sessionStorage.getItem('login') || 'null');
  sessionStorage.removeItem('login');
  history.replaceState(null, '', location.pathname);
  if (q.get('error')) throw new Error('authorization: ' + q.get('error') + ': ' + q.get('error_description'));
  if (!saved || q.get('state') !== saved.state) throw new Error('state differs');
  const d = await discovery();
  if (q.get('iss') !== d.issuer) throw new Error('iss differs: ' + q.get('iss'));
  const out = {};
  const [status, tokens] = await tokenCall(d.token_endpoint, {
    grant_type: 'authorization_code', code: q.get('code'), redirect_uri: location.origin + '/callback',
    client_id: CONFIG.client_id, code_verifier: saved.verifier,
  });
  out.token_status = status;
  if (status !== 200) throw new Error('token: ' + status + ' ' + JSON.stringify(tokens));
  out.token_type = tokens.token_type;
  out.id_token = typeof tokens.id_token === 'string';
  const claims = json(tokens.id_token.split('.')[1]);
  Object.assign(out, { sub: claims.sub, iss: claims.iss, aud: claims.aud, amr: claims.amr });
  out.nonce_ok = claims.nonce === saved.nonce;

  const jwks = await (await fetch(d.jwks_uri)).json();
  out.jwks_keys = jwks.keys.length;
  out.signature_ok = await verify(tokens.id_token, jwks.keys);

  const bearer = (t) => ({ headers: { Authorization: 'Bearer ' + t } });
  const info = await fetch(d.userinfo_endpoint, bearer(tokens.access_token));
  out.userinfo_status = info.status;
  const user = await info.json();
  out.userinfo_sub = user.sub;
  out.preferred_username = user.preferred_username;

  const refresh = { grant_type: 'refresh_token', client_id: CONFIG.client_id };
  const [rs, again] = await tokenCall(d.token_endpoint, { ...refresh, refresh_token: tokens.refresh_token });
  out.refresh_status = rs;
  out.refresh_rotated = !!again && !!again.refresh_token && again.refresh_token !== tokens.refresh_token
    && again.access_token !== tokens.access_token;
  out.refreshed_sub = again && again.id_token ? json(again.id_token.split('.')[1]).sub : null;
  const [reuse, refused] = await tokenCall(d.token_endpoint, { ...refresh, refresh_token: tokens.refresh_token });
  out.reuse_status = reuse;
  out.reuse_error = refused && refused.error;

  const [revoked] = await tokenCall(d.revocation_endpoint, { token: again.access_token, client_id: CONFIG.client_id });
  out.revoke_status = revoked;
  const gone = await fetch(d.userinfo_endpoint, bearer(again.access_token));
  out.revoked_userinfo_status = gone.status;
  out.www_authenticate = gone.headers.get('www-authenticate');
  show('result', out);
})().catch((e) => show('result', { error: String(e) }));
"#;

/// `/probe`: requests a browser must not let this origin read, each recorded as the answer's
/// status or the rejection `fetch` gave.
const PROBE: &str = r#"
const form = (o) => ({ method: 'POST', body: new URLSearchParams(o) });
(async () => {
  const d = await discovery();
  const node = CONFIG.issuer;
  const probes = {
    'discovery': [node + '/.well-known/openid-configuration', {}],
    'jwks': [d.jwks_uri, {}],
    // Any origin, so never with credentials: the browser refuses '*' to a credentialed call.
    'discovery with credentials': [node + '/.well-known/openid-configuration', { credentials: 'include' }],
    'token with credentials': [d.token_endpoint, { ...form({ grant_type: 'refresh_token' }), credentials: 'include' }],
    'consents with credentials': [node + '/api/v1/oidc/consents', { credentials: 'include' }],
    'consents with a bearer token': [node + '/api/v1/oidc/consents', { headers: { Authorization: 'Bearer x' } }],
    'password change': [node + '/api/v1/password', {
      method: 'PUT', headers: { 'Content-Type': 'application/json' }, body: '{}' }],
    'sign-in post': [node + '/oidc/login', form({ username: 'alice' })],
    'consent post': [node + '/oidc/consent', form({ decision: 'allow' })],
    'registration': [d.registration_endpoint, {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"redirect_uris":[]}' }],
    'authorization page': [d.authorization_endpoint + '?client_id=' + CONFIG.client_id, {}],
    'account page': [node + '/account', { credentials: 'include' }],
  };
  const out = {};
  for (const [name, [url, init]] of Object.entries(probes)) {
    try {
      out[name] = String((await fetch(url, init)).status);
    } catch (e) {
      out[name] = e.name + ': ' + e.message;
    }
  }
  show('probe', out);
})().catch((e) => show('probe', { error: String(e) }));
"#;
