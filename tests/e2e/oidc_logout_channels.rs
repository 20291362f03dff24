//! Sites learn that the user signed out: Back-Channel Logout 1.0 (a logout token posted to
//! the site, naming the browser session's `sid` that its ID token carried) and Front-Channel
//! Logout 1.0 (the site's URL loaded in the signed-out page). Logout at the node, consent
//! withdrawn on the account page and signing out everywhere each notify the site.

use crate::oidc::{hidden, rp_http, Browser, Http, Rp, REDIRECT};
use crate::oidc_clients::{begin, exchange, jwks, raw_rp, register_raw, sign_in_with, verify_jws};
use axum::extract::State;
use axum::routing::post;
use axum::{Form, Router};
use openidconnect::TokenResponse;
use serde_json::{json, Value};
use sichat_core::jws::unverified_payload;
use sichat_e2e::{storage_tests, Backend, TestApp};
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::mpsc;

storage_tests!(sites_hear_of_each_sign_out);

const BYE: &str = "http://127.0.0.1:9/bye";
const FRONT: &str = "http://127.0.0.1:9/front-logout";

/// The site's back channel: every `logout_token` posted to it.
async fn back_channel() -> (String, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    async fn take(State(tx): State<mpsc::UnboundedSender<String>>, Form(f): Form<HashMap<String, String>>) {
        if let Some(t) = f.get("logout_token") {
            let _ = tx.send(t.clone());
        }
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://127.0.0.1:{}/backchannel", listener.local_addr().expect("addr").port());
    let app = Router::new().route("/backchannel", post(take)).with_state(tx);
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, rx)
}

async fn next_token(rx: &mut mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(Duration::from_secs(20), rx.recv()).await.expect("a logout token in time").expect("token")
}

/// The logout token's claims, after checking its signature, type and the claims the
/// specification requires of it (§2.4), against the ID token it ends.
async fn check_logout_token(app: &TestApp, token: &str, id_token: &Value) -> Value {
    let (header, claims) = verify_jws(&jwks(app).await, token);
    assert_eq!(header["typ"], "logout+jwt", "{header}");
    assert_eq!(claims["iss"], id_token["iss"]);
    assert_eq!(claims["aud"], id_token["aud"]);
    assert_eq!(claims["sub"], id_token["sub"]);
    assert!(claims["events"].get("http://schemas.openid.net/event/backchannel-logout").is_some(), "{claims}");
    assert!(claims.get("nonce").is_none(), "a logout token has no nonce: {claims}");
    assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
    assert!(claims["exp"].as_i64() > claims["iat"].as_i64());
    claims
}

async fn sign_in(app: &TestApp, client: &Rp, http: &Http, browser: &mut Browser) -> Value {
    let (url, csrf, _, pkce) = begin(client, &[], &[]);
    let (back, _) = sign_in_with(browser, app, &url, "alice", "Channel RP").await;
    let code = crate::oidc::code_from(app, &back, &csrf);
    let tokens = exchange(client, http, code, pkce).await;
    let id_token = tokens.id_token().expect("ID token").to_string();
    let claims: Value = unverified_payload(&id_token).expect("claims");
    assert!(claims["sid"].as_str().is_some_and(|s| s.len() >= 16), "the ID token names its session: {claims}");
    json!({"raw": id_token, "claims": claims})
}

async fn sites_hear_of_each_sign_out(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let _alice = crate::oidc::alice_with_password(&app).await;
    let (backchannel, mut tokens) = back_channel().await;
    let body = json!({
        "client_name": "Channel RP",
        "redirect_uris": [REDIRECT],
        "post_logout_redirect_uris": [BYE],
        "backchannel_logout_uri": backchannel,
        "backchannel_logout_session_required": true,
        "frontchannel_logout_uri": FRONT,
        "frontchannel_logout_session_required": true,
    });
    let (status, reg) = register_raw(&app, &body, None).await;
    assert_eq!(status, 201, "{reg}");
    assert_eq!(reg["backchannel_logout_uri"], body["backchannel_logout_uri"]);
    let (_, discovery) = app.get_json("/.well-known/openid-configuration").await;
    for flag in
        ["backchannel_logout_supported", "backchannel_logout_session_supported", "frontchannel_logout_supported"]
    {
        assert_eq!(discovery[flag], true, "{flag}");
    }
    let client = raw_rp(&app, &reg).await;
    let http = rp_http();

    // 1. The site sends the browser to the node's logout with its ID token.
    let mut browser = Browser::new();
    let first = sign_in(&app, &client, &http, &mut browser).await;
    let sid = first["claims"]["sid"].as_str().expect("sid").to_owned();
    let url = format!(
        "{}/oidc/logout?id_token_hint={}&post_logout_redirect_uri={}&state=s1",
        app.url,
        first["raw"].as_str().expect("raw"),
        crate::oidc_clients::urlencode(BYE)
    );
    let page = browser.get(&url).await;
    assert_eq!(page.status, 200, "the signed-out page first, for the front channel: {}", page.body);
    let front = format!("{FRONT}?iss={}&amp;sid={sid}", crate::oidc_clients::urlencode(&app.url));
    assert!(page.body.contains(&front), "the front channel with iss and sid ({front}): {}", page.body);
    assert!(page.body.contains(&format!("url={BYE}?state=s1")), "then on to the site: {}", page.body);
    let claims = check_logout_token(&app, &next_token(&mut tokens).await, &first["claims"]).await;
    assert_eq!(claims["sid"], sid.as_str());

    // 2. Alice withdraws the site's consent on her account page.
    let second = sign_in(&app, &client, &http, &mut browser).await;
    assert_ne!(second["claims"]["sid"], first["claims"]["sid"], "a new session, a new sid");
    let account = browser.get(&format!("{}/account", app.url)).await;
    assert!(account.body.contains("Channel RP"), "{}", account.body);
    let form =
        [("csrf", hidden(&account.body, "csrf")), ("client_id", reg["client_id"].as_str().expect("id").to_owned())];
    let done = browser.post(&format!("{}/account/consents/revoke", app.url), &form).await;
    assert_eq!(done.status, 303, "{}", done.body);
    let claims = check_logout_token(&app, &next_token(&mut tokens).await, &second["claims"]).await;
    assert_eq!(claims["sid"], second["claims"]["sid"]);

    // 3. Signed in to the site in one browser, Alice signs out everywhere from another.
    let mut laptop = Browser::new();
    let third = sign_in(&app, &client, &http, &mut laptop).await;
    let account = browser.get(&format!("{}/account", app.url)).await;
    let form = [("csrf", hidden(&account.body, "csrf"))];
    let done = browser.post(&format!("{}/account/signout-everywhere", app.url), &form).await;
    assert_eq!(done.status, 303, "{}", done.body);
    let claims = check_logout_token(&app, &next_token(&mut tokens).await, &third["claims"]).await;
    assert_eq!(claims["sid"], third["claims"]["sid"]);
    // Nothing is left to send.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(tokens.try_recv().is_err(), "one logout token per sign-out");
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM oidc_logout_notices")
        .fetch_one(app.node.db.pool())
        .await
        .expect("count");
    assert_eq!(left, 0, "every notice delivered");
    app.stop().await;
}
