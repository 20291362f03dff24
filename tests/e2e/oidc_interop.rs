//! The OpenID Provider as independent relying parties meet it: client secrets sent either
//! way, refresh tokens only for clients that registered the grant, `max_age=0`, metadata
//! the node cannot honour refused at registration, and registrations that never led to a
//! sign-in cleaned up.

use crate::oidc::{alice_with_password, code_from, discover, register, rp, rp_http, REDIRECT};
use crate::oidc_clients::{begin, exchange, raw_rp, register_raw, sign_in, sign_in_with};
use openidconnect::reqwest::header::WWW_AUTHENTICATE;
use openidconnect::{AuthType, OAuth2TokenResponse};
use serde_json::{json, Value};
use sichat_e2e::{storage_tests, Backend, TestApp};

storage_tests!(
    client_secret_in_the_body_or_the_header,
    refresh_tokens_only_for_the_refresh_grant,
    max_age_zero_signs_in_again_without_asking_consent_again,
    registration_refuses_what_it_cannot_honour,
    clients_that_never_signed_anyone_in_are_removed,
);

async fn client_secret_in_the_body_or_the_header(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let _alice = alice_with_password(&app).await;
    let http = rp_http();
    let (meta, raw) = discover(&app, &http).await;
    // Registered for client_secret_basic (the default), as most libraries register.
    let reg = register(&http, &meta).await;
    // openidconnect posting the secret in the body, as several RP libraries do by default.
    let client = rp(&meta, &raw, &reg).set_auth_type(AuthType::RequestBody);
    let (url, csrf, _, pkce) = begin(&client, &[], &[]);
    let (back, _) = sign_in(&app, &url, "alice", "Test RP").await;
    let tokens = exchange(&client, &http, code_from(&app, &back, &csrf), pkce).await;
    assert!(!tokens.access_token().secret().is_empty());

    // A wrong secret: in the body, a 400 whose JSON libraries show, no challenge; in the
    // Authorization header, a 401 with its Basic challenge (RFC 6749 §5.2).
    let id = reg.client_id().as_str();
    let token_url = format!("{}/oidc/token", app.url);
    let form = [("grant_type", "authorization_code"), ("code", "x"), ("redirect_uri", REDIRECT)];
    let in_body = [&form[..], &[("client_id", id), ("client_secret", "wrong")]].concat();
    let r = app.http.post(&token_url).form(&in_body).send().await.expect("token request");
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.headers().get(WWW_AUTHENTICATE).is_none(), "no challenge without the header");
    let body: Value = r.json().await.expect("JSON");
    assert_eq!(body["error"], "invalid_client", "{body}");
    assert!(body["error_description"].as_str().is_some_and(|d| !d.is_empty()), "{body}");
    let r = app.http.post(&token_url).basic_auth(id, Some("wrong")).form(&form).send().await.expect("token request");
    assert_eq!(r.status().as_u16(), 401);
    let challenge = r.headers().get(WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert!(challenge.starts_with("Basic"), "{challenge}");
    let body: Value = r.json().await.expect("JSON");
    assert_eq!(body["error"], "invalid_client", "{body}");
    app.stop().await;
}

async fn refresh_tokens_only_for_the_refresh_grant(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let _alice = alice_with_password(&app).await;
    let http = rp_http();
    // The code grant only (the registration default).
    let body = json!({"redirect_uris": [REDIRECT], "client_name": "No Refresh RP"});
    let (status, reg) = register_raw(&app, &body, None).await;
    assert_eq!(status, 201, "{reg}");
    assert_eq!(reg["grant_types"], json!(["authorization_code"]), "{reg}");
    let client = raw_rp(&app, &reg).await;
    let (url, csrf, _, pkce) = begin(&client, &["offline_access"], &[]);
    let (back, consent) = sign_in(&app, &url, "alice", "No Refresh RP").await;
    let consent = consent.expect("a consent page");
    assert!(!consent.contains("refresh token"), "offline access is not offered: {consent}");
    let tokens = exchange(&client, &http, code_from(&app, &back, &csrf), pkce).await;
    assert!(tokens.refresh_token().is_none(), "no refresh token for a client without the refresh_token grant");
    let scopes: Vec<String> = tokens.scopes().into_iter().flatten().map(|s| s.to_string()).collect();
    assert!(!scopes.iter().any(|s| s == "offline_access"), "{scopes:?}");
    app.stop().await;
}

async fn max_age_zero_signs_in_again_without_asking_consent_again(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let _alice = alice_with_password(&app).await;
    let http = rp_http();
    let (meta, raw) = discover(&app, &http).await;
    let reg = register(&http, &meta).await;
    let client = rp(&meta, &raw, &reg);
    let mut browser = crate::oidc::Browser::new();
    let (url, csrf, _, _) = begin(&client, &["profile"], &[]);
    let (back, consent) = sign_in_with(&mut browser, &app, &url, "alice", "Test RP").await;
    assert!(consent.is_some(), "the first time, the user consents");
    code_from(&app, &back, &csrf);

    // max_age=0 in the same browser: sign in again (the session is too old by definition),
    // then straight back to the site: consent was given and is remembered.
    let (url, csrf, nonce, pkce) = begin(&client, &["profile"], &[("max_age", "0")]);
    let (back, consent) = sign_in_with(&mut browser, &app, &url, "alice", "Test RP").await;
    assert!(consent.is_none(), "no consent page after signing in for max_age=0: {consent:?}");
    let tokens = exchange(&client, &http, code_from(&app, &back, &csrf), pkce).await;
    use openidconnect::TokenResponse;
    let claims = tokens.id_token().expect("an ID token").claims(&client.id_token_verifier(), &nonce).expect("valid");
    let auth_time = claims.auth_time().expect("auth_time with max_age");
    assert!((chrono_now() - auth_time.timestamp()).abs() < 60, "a fresh sign-in: {auth_time}");
    app.stop().await;
}

fn chrono_now() -> i64 {
    sichat_core::ids::now_ms() / 1000
}

async fn registration_refuses_what_it_cannot_honour(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let refused = |extra: Value| {
        let app = &app;
        async move {
            let mut body = json!({"redirect_uris": [REDIRECT]});
            if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
                b.extend(e.clone());
            }
            let (status, answer) = register_raw(app, &body, None).await;
            assert_eq!(status, 400, "{body} must be refused: {answer}");
            answer["error"].as_str().unwrap_or_default().to_owned()
        }
    };
    // Metadata the node would otherwise drop without a word.
    for (name, value) in [
        ("id_token_encrypted_response_alg", json!("RSA-OAEP-256")),
        ("userinfo_signed_response_alg", json!("RS256")),
        ("default_max_age", json!(300)),
        // Logout channels are supported, but not to plain http, nor front-channel to
        // another origin than a redirect URI's.
        ("backchannel_logout_uri", json!("http://rp.example/logout")),
        ("frontchannel_logout_uri", json!("https://rp.example/logout")),
        ("request_uris", json!(["https://rp.example/r"])),
        ("sector_identifier_uri", json!("https://rp.example/sector.json")),
        ("dpop_bound_access_tokens", json!("yes")),
        ("software_statement", json!("eyJhbGciOiJub25lIn0.e30.")),
        ("application_type", json!("desktop")),
    ] {
        assert_eq!(refused(json!({name: value})).await, "invalid_client_metadata", "{name}");
    }
    // Wildcards in a redirect URI.
    for uri in ["https://*.rp.example/cb", "https://rp.example/*", "http://127.0.0.1:9/cb*"] {
        let (status, answer) = register_raw(&app, &json!({"redirect_uris": [uri]}), None).await;
        assert_eq!((status, answer["error"].as_str()), (400, Some("invalid_redirect_uri")), "{uri}: {answer}");
        let body = json!({"redirect_uris": [REDIRECT], "post_logout_redirect_uris": [uri]});
        let (status, answer) = register_raw(&app, &body, None).await;
        assert_eq!((status, answer["error"].as_str()), (400, Some("invalid_redirect_uri")), "{uri}: {answer}");
    }
    // What asks for nothing, what is always honoured, and what is informational pass, and
    // the informational metadata comes back as registered; unknown extensions are ignored.
    let body = json!({
        "redirect_uris": [REDIRECT],
        "userinfo_signed_response_alg": null,
        "frontchannel_logout_session_required": false,
        "require_auth_time": true,
        "application_type": "web",
        "contacts": ["ops@rp.example"],
        "logo_uri": "https://rp.example/logo.png",
        "policy_uri": "https://rp.example/policy",
        "tos_uri": "https://rp.example/tos",
        "x_vendor_extension": "ignored",
    });
    let (status, reg) = register_raw(&app, &body, None).await;
    assert_eq!(status, 201, "{reg}");
    for k in ["contacts", "logo_uri", "policy_uri", "tos_uri", "application_type", "require_auth_time"] {
        assert_eq!(reg[k], body[k], "{k} is kept: {reg}");
    }
    assert!(reg.get("x_vendor_extension").is_none(), "{reg}");
    app.stop().await;
}

async fn clients_that_never_signed_anyone_in_are_removed(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let _alice = alice_with_password(&app).await;
    let http = rp_http();
    let mk = |name: &'static str| {
        let app = &app;
        async move {
            let (status, reg) =
                register_raw(app, &json!({"redirect_uris": [REDIRECT], "client_name": name}), None).await;
            assert_eq!(status, 201, "{reg}");
            reg
        }
    };
    let (used, idle) = (mk("Used RP").await, mk("Idle RP").await);
    let client = raw_rp(&app, &used).await;
    let (url, csrf, _, pkce) = begin(&client, &[], &[]);
    let (back, _) = sign_in(&app, &url, "alice", "Used RP").await;
    exchange(&client, &http, code_from(&app, &back, &csrf), pkce).await;
    // An idle client's pending request does not keep it alive.
    let idle_client = raw_rp(&app, &idle).await;
    let (url, _, _, _) = begin(&idle_client, &[], &[]);
    assert_eq!(crate::oidc::Browser::new().get(url.as_str()).await.status, 200, "its sign-in page");

    // Housekeeping now: both are young, both stay.
    let op = &app.node.oidc;
    op.purge_expired().await.expect("housekeeping");
    let read = |reg: &Value| {
        let (app, reg) = (&app, reg.clone());
        async move {
            let uri = reg["registration_client_uri"].as_str().expect("registration_client_uri");
            let token = reg["registration_access_token"].as_str().expect("registration_access_token");
            app.http.get(uri).bearer_auth(token).send().await.expect("read client").status().as_u16()
        }
    };
    assert_eq!((read(&used).await, read(&idle).await), (200, 200));

    // Eight days later (registration times set back), the idle one is gone, the used stays.
    sqlx::query("UPDATE oidc_clients SET created_at = created_at - $1")
        .bind(8 * 24 * 3_600_000_i64)
        .execute(op.db().pool())
        .await
        .expect("backdate the clients");
    op.purge_expired().await.expect("housekeeping");
    assert_eq!(read(&used).await, 200, "a client that signed someone in stays");
    assert_eq!(read(&idle).await, 401, "a client that never did is removed");
    let (url, csrf, _, pkce) = begin(&client, &[], &[]);
    let (back, consent) = sign_in(&app, &url, "alice", "Used RP").await;
    assert!(consent.is_none(), "its consent is intact");
    exchange(&client, &http, code_from(&app, &back, &csrf), pkce).await;
    app.stop().await;
}
