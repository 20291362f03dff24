//! Authorization requests sent other ways than a plain query: pushed first (PAR, RFC 9126),
//! as a signed request object (JAR, RFC 9101), and answered by form post (OAuth 2.0 Form
//! Post Response Mode). Replayed, expired, foreign, unsigned or altered requests are refused
//! on the node's page, never redirected.

use crate::oidc::{alice_with_password, hidden, param, Browser, PASSWORD, REDIRECT};
use crate::oidc_clients::{register_raw, sign_in};
use josekit::jwk::Jwk;
use josekit::jws::{JwsHeader, ES256};
use openidconnect::url::Url;
use serde_json::{json, Value};
use sichat_core::ids::{b64url, now_ms, random_token};
use sichat_e2e::{storage_tests, Backend, TestApp};

storage_tests!(pushed_requests_are_used_once_by_their_client, request_objects_and_form_post);

/// A PKCE verifier and its S256 challenge.
fn pkce() -> (String, String) {
    let verifier = random_token();
    let challenge = b64url(&<sha2::Sha256 as sha2::Digest>::digest(verifier.as_bytes()));
    (verifier, challenge)
}

async fn push(app: &TestApp, form: &[(&str, &str)]) -> (u16, Value) {
    let r = app.http.post(format!("{}/oidc/par", app.url)).form(form).send().await.expect("par");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn public_client(app: &TestApp, name: &str, extra: Value) -> String {
    let mut body = json!({"client_name": name, "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let (status, reg) = register_raw(app, &body, None).await;
    assert_eq!(status, 201, "{reg}");
    reg["client_id"].as_str().expect("id").to_owned()
}

async fn redeem(app: &TestApp, client_id: &str, code: &str, verifier: &str) -> (u16, Value) {
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", verifier),
        ("client_id", client_id),
    ];
    let r = app.http.post(format!("{}/oidc/token", app.url)).form(&form).send().await.expect("token");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

fn authorize_url(app: &TestApp, pairs: &[(&str, &str)]) -> Url {
    let mut u = Url::parse(&format!("{}/oidc/authorize", app.url)).expect("url");
    u.query_pairs_mut().extend_pairs(pairs);
    u
}

/// Refused on the node's own page: a 400 and no redirect.
async fn refused_here(app: &TestApp, url: &Url) -> String {
    let r = app.http.get(url.as_str()).send().await.expect("authorize");
    assert_eq!(r.status().as_u16(), 400, "{url}");
    assert!(r.headers().get("location").is_none());
    r.text().await.expect("text")
}

async fn pushed_requests_are_used_once_by_their_client(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let _alice = alice_with_password(&app).await;
    let client_id = public_client(&app, "Pushed", json!({"require_pushed_authorization_requests": true})).await;
    let other = public_client(&app, "Other", json!({})).await;
    let (_, discovery) = app.get_json("/.well-known/openid-configuration").await;
    assert_eq!(discovery["pushed_authorization_request_endpoint"], format!("{}/oidc/par", app.url));

    let (verifier, challenge) = pkce();
    let request = |challenge: &str| {
        vec![
            ("client_id", client_id.clone()),
            ("response_type", "code".to_owned()),
            ("redirect_uri", REDIRECT.to_owned()),
            ("scope", "openid profile".to_owned()),
            ("state", "st-1".to_owned()),
            ("code_challenge", challenge.to_owned()),
            ("code_challenge_method", "S256".to_owned()),
        ]
    };
    let pairs = request(&challenge);
    let form: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();

    // What /oidc/authorize would refuse is refused when pushed.
    let no_pkce: Vec<(&str, &str)> = form.iter().filter(|(k, _)| !k.starts_with("code_challenge")).cloned().collect();
    assert_eq!(push(&app, &no_pkce).await.1["error"], "invalid_request");
    let mut elsewhere = form.clone();
    elsewhere.retain(|(k, _)| *k != "redirect_uri");
    elsewhere.push(("redirect_uri", "https://evil.example/cb"));
    assert_eq!(push(&app, &elsewhere).await.1["error"], "invalid_request");
    let mut nested = form.clone();
    nested.push(("request_uri", "urn:ietf:params:oauth:request_uri:x"));
    assert_eq!(push(&app, &nested).await.1["error"], "invalid_request");

    // This client must push: a direct request is refused.
    let direct = authorize_url(&app, &form);
    assert!(refused_here(&app, &direct).await.contains("PAR"));

    let (status, pushed) = push(&app, &form).await;
    assert_eq!(status, 201, "{pushed}");
    assert_eq!(pushed["expires_in"], 60);
    let request_uri = pushed["request_uri"].as_str().expect("request_uri").to_owned();
    assert!(request_uri.starts_with("urn:ietf:params:oauth:request_uri:"));
    // Another client cannot use it.
    let foreign = authorize_url(&app, &[("client_id", other.as_str()), ("request_uri", request_uri.as_str())]);
    refused_here(&app, &foreign).await;

    let url = authorize_url(&app, &[("client_id", client_id.as_str()), ("request_uri", request_uri.as_str())]);
    let (back, _) = sign_in(&app, &url, "alice", "Pushed").await;
    assert_eq!(param(&back, "state").as_deref(), Some("st-1"), "what was pushed is what counts");
    let code = param(&back, "code").expect("code");
    let (status, tokens) = redeem(&app, &client_id, &code, &verifier).await;
    assert_eq!(status, 200, "{tokens}");
    // Used once.
    assert!(refused_here(&app, &url).await.contains("invalid_request_uri"));

    // Expired.
    let (_, pushed) = push(&app, &form).await;
    sqlx::query("UPDATE oidc_pushed_requests SET expires_at = 0 WHERE used_at IS NULL")
        .execute(app.node.db.pool())
        .await
        .expect("expire");
    let uri = pushed["request_uri"].as_str().expect("uri");
    refused_here(&app, &authorize_url(&app, &[("client_id", client_id.as_str()), ("request_uri", uri)])).await;
    app.stop().await;
}

struct RequestKey {
    private: Jwk,
    public: Jwk,
}

impl RequestKey {
    fn new() -> Self {
        let pair = ES256.generate_key_pair().expect("key");
        let mut public = pair.to_jwk_public_key();
        public.set_key_id("req-1");
        Self { private: pair.to_jwk_private_key(), public }
    }

    fn sign(&self, claims: &Value) -> String {
        let mut header = JwsHeader::new();
        header.set_token_type("oauth-authz-req+jwt");
        header.set_key_id("req-1");
        let signer = ES256.signer_from_jwk(&self.private).expect("signer");
        josekit::jws::serialize_compact(claims.to_string().as_bytes(), &header, &signer).expect("sign")
    }
}

async fn request_objects_and_form_post(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let _alice = alice_with_password(&app).await;
    let key = RequestKey::new();
    let public: Value = serde_json::to_value(key.public.as_ref()).expect("jwk");
    let extra = json!({"jwks": {"keys": [public]}, "require_signed_request_object": true, "request_object_signing_alg": "ES256"});
    let client_id = public_client(&app, "Signed Requests", extra).await;
    let (verifier, challenge) = pkce();
    let claims = |aud: &str, exp: i64| {
        json!({
            "iss": client_id, "aud": aud, "exp": exp, "client_id": client_id, "response_type": "code",
            "redirect_uri": REDIRECT, "scope": "openid", "state": "jar-1", "nonce": "n-1",
            "code_challenge": challenge, "code_challenge_method": "S256",
        })
    };
    let later = now_ms() / 1000 + 300;
    let with = |object: &str| authorize_url(&app, &[("client_id", client_id.as_str()), ("request", object)]);

    // This client signs every request: a plain one is refused; so are objects that were
    // altered, signed by another key, for another audience, expired, or unsigned.
    let plain = authorize_url(
        &app,
        &[
            ("client_id", client_id.as_str()),
            ("response_type", "code"),
            ("redirect_uri", REDIRECT),
            ("scope", "openid"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ],
    );
    refused_here(&app, &plain).await;
    let good = key.sign(&claims(&app.url, later));
    let (head, rest) = good.split_once('.').expect("jws");
    let (_, sig) = rest.split_once('.').expect("jws");
    let altered_claims = b64url(claims(&app.url, later).to_string().replace("jar-1", "jar-2").as_bytes());
    let unsigned =
        format!("{}.{}.", b64url(br#"{"alg":"none"}"#), b64url(claims(&app.url, later).to_string().as_bytes()));
    for (what, object) in [
        ("altered", format!("{head}.{altered_claims}.{sig}")),
        ("another key", RequestKey::new().sign(&claims(&app.url, later))),
        ("another audience", key.sign(&claims("https://other.example", later))),
        ("expired", key.sign(&claims(&app.url, now_ms() / 1000 - 10))),
        ("unsigned", unsigned),
    ] {
        let page = refused_here(&app, &with(&object)).await;
        assert!(page.contains("invalid_request_object"), "{what}: {page}");
    }
    let (back, _) = sign_in(&app, &with(&good), "alice", "Signed Requests").await;
    assert_eq!(param(&back, "state").as_deref(), Some("jar-1"));
    let (status, tokens) = redeem(&app, &client_id, &param(&back, "code").expect("code"), &verifier).await;
    assert_eq!(status, 200, "{tokens}");

    // form_post: the answer comes as a form the browser posts to the redirect URI.
    let mut post_claims = claims(&app.url, later);
    post_claims["response_mode"] = json!("form_post");
    post_claims["state"] = json!("fp-1");
    let url = with(&key.sign(&post_claims));
    let mut browser = Browser::new();
    let login = browser.get(url.as_str()).await;
    let form = [
        ("request", hidden(&login.body, "request")),
        ("csrf", hidden(&login.body, "csrf")),
        ("username", "alice".to_owned()),
        ("password", PASSWORD.to_owned()),
    ];
    let answer = browser.post(&format!("{}/oidc/login", app.url), &form).await;
    assert_eq!(answer.status, 200, "consent was given: the answer at once, as a form: {}", answer.body);
    assert!(answer.location.is_none(), "not in a redirect's query");
    assert!(answer.body.contains(&format!(r#"action="{REDIRECT}""#)), "{}", answer.body);
    assert!(answer.body.contains(r#"src="/oidc/static/form_post.js""#));
    assert_eq!(hidden(&answer.body, "state"), "fp-1");
    assert_eq!(hidden(&answer.body, "iss"), app.url);
    let code = hidden(&answer.body, "code");
    let (status, tokens) = redeem(&app, &client_id, &code, &verifier).await;
    assert_eq!(status, 200, "{tokens}");
    app.stop().await;
}
