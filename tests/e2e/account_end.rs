//! What ends with an account or a password: a removed account's tokens stop working at
//! sites (the `openidconnect` crate as the relying party) and what other crates held for it
//! is gone; "sign out everywhere" (account page, API through `sichat`) and a new password end
//! other browser sessions and every site's tokens.

use crate::oidc::{
    alice_with_password, discover, fresh_code, hidden, introspect, refresh_with, refused, register, rp, rp_http,
    userinfo, userinfo_status, Browser, Http, Rp, PASSWORD,
};
use openidconnect::core::{CoreErrorResponseType, CoreTokenResponse};
use openidconnect::{OAuth2TokenResponse, SubjectIdentifier, TokenResponse};
use sichat_e2e::{json, sichat, sichat_env, stderr, storage_tests, Backend, TestApp};
use std::path::Path;
use std::time::Duration;

storage_tests!(removed_account_ends_everywhere, sign_out_everywhere_and_a_new_password);

/// A grant through the whole code flow (alice signs in with her password in a fresh
/// browser), with the subject of its ID token.
async fn grant(app: &TestApp, client: &Rp, http: &Http) -> (CoreTokenResponse, SubjectIdentifier) {
    let (code, pkce, nonce) = fresh_code(app, client).await;
    let tokens = client
        .exchange_code(code)
        .expect("token endpoint")
        .set_pkce_verifier(pkce)
        .request_async(http)
        .await
        .expect("code");
    let claims = tokens.id_token().expect("ID token").claims(&client.id_token_verifier(), &nonce).expect("valid");
    let sub = claims.subject().clone();
    (tokens, sub)
}

/// The grant works: UserInfo answers, introspection says active, and a refresh succeeds
/// (whose new tokens are returned, as the old refresh token is spent).
async fn assert_works(
    client: &Rp,
    http: &Http,
    tokens: &CoreTokenResponse,
    sub: &SubjectIdentifier,
) -> CoreTokenResponse {
    userinfo(client, http, tokens.access_token(), sub).await.expect("userinfo");
    assert!(introspect(client, http, tokens.access_token()).await, "active");
    let refresh = tokens.refresh_token().expect("refresh token");
    refresh_with(client, http, refresh).await.expect("refresh")
}

/// The grant is dead: refresh refused (`invalid_grant`), UserInfo 401, introspection inactive.
async fn assert_dead(client: &Rp, http: &Http, tokens: &CoreTokenResponse, sub: &SubjectIdentifier, when: &str) {
    let refresh = tokens.refresh_token().expect("refresh token");
    assert_eq!(refused(refresh_with(client, http, refresh).await), CoreErrorResponseType::InvalidGrant, "{when}");
    assert_eq!(userinfo_status(userinfo(client, http, tokens.access_token(), sub).await), 401, "{when}");
    assert!(!introspect(client, http, tokens.access_token()).await, "inactive {when}");
}

/// Rows of `table` that belong to `user_id`: what a crate still holds for the account.
async fn rows(app: &TestApp, table: &str, user_id: &str) -> i64 {
    let mut c = app.node.db.pool().acquire().await.expect("connection");
    sqlx::query_scalar::<_, i64>(&format!("SELECT COUNT(*) FROM {table} WHERE user_id = $1"))
        .bind(user_id)
        .fetch_one(&mut *c)
        .await
        .expect("count")
}

/// The URL behind `…?<param>=<url>` in an offer or request URI.
fn by_reference(uri: &str, param: &str) -> String {
    let url = openidconnect::url::Url::parse(uri).expect("URI");
    url.query_pairs()
        .find(|(k, _)| k == param)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("{param} in {uri}"))
}

async fn status_of(url: &str) -> u16 {
    reqwest::get(url).await.expect("GET").status().as_u16()
}

async fn removed_account_ends_everywhere(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let alice = alice_with_password(&app).await;
    let user_id = app.node.accounts.active_user_id("alice").await.expect("lookup").expect("alice");
    let http = rp_http();
    let (meta, raw) = discover(&app, &http).await;
    let reg = register(&http, &meta).await;
    let client = rp(&meta, &raw, &reg);
    let (tokens, sub) = grant(&app, &client, &http).await;
    let tokens = assert_works(&client, &http, &tokens, &sub).await;

    // What other crates hold for alice: an open credential offer, a presentation request,
    // a message waiting in her mailbox.
    let out = sichat(
        &alice,
        &["--json", "credential", "offer", "--type", "FriendCredential", "--to", "anyone", "--claim", "name=X"],
    )
    .await;
    assert!(out.status.success(), "offer: {}", stderr(&out));
    let offer_url = by_reference(json(&out)["offer_uri"].as_str().expect("offer_uri"), "credential_offer_uri");
    assert_eq!(status_of(&offer_url).await, 200, "the offer is there by reference");
    let out = sichat(&alice, &["--json", "verifier", "request", "--type", "FriendCredential"]).await;
    assert!(out.status.success(), "verifier request: {}", stderr(&out));
    let invite = app.invite(&alice, 1).await;
    let bob = app.join("bob", &invite).await;
    let alice_address = format!("alice@{}", app.url.trim_start_matches("http://"));
    let out = sichat(&bob, &["--json", "message", "send", &alice_address, "hello"]).await;
    assert!(out.status.success(), "send: {}", stderr(&out));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while rows(&app, "msg_mailbox", &user_id).await == 0 {
        assert!(tokio::time::Instant::now() < deadline, "the message never reached alice's mailbox");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for table in
        ["oidc_tokens", "oidc_consents", "oidc_sessions", "oidc_passwords", "issuer_offers", "verifier_requests"]
    {
        assert!(rows(&app, table, &user_id).await > 0, "alice has rows in {table} before");
    }

    // The operator removes alice (`sichatd admin remove alice`).
    app.node.accounts.remove_user(None, "alice").await.expect("remove");

    // At the site: nothing she held works any more.
    assert_dead(&client, &http, &tokens, &sub, "after removal").await;
    // Her offer cannot be fetched, so not redeemed.
    assert_eq!(status_of(&offer_url).await, 404, "the offer is gone");
    // Every crate let go of what it held for her.
    for table in [
        "oidc_tokens",
        "oidc_codes",
        "oidc_consents",
        "oidc_sessions",
        "oidc_passwords",
        "oidc_passkeys",
        "issuer_offers",
        "issuer_nonces",
        "verifier_requests",
        "holder_credentials",
        "msg_mailbox",
        "msg_outbox",
        "msg_policies",
    ] {
        assert_eq!(rows(&app, table, &user_id).await, 0, "{table} still holds rows of the removed account");
    }
    // Her password no longer opens the account page.
    let mut browser = Browser::new();
    let page = browser.get(&format!("{}/account", app.url)).await;
    let form = [("csrf", hidden(&page.body, "csrf")), ("username", "alice".into()), ("password", PASSWORD.into())];
    let r = browser.post(&format!("{}/account/login", app.url), &form).await;
    assert_ne!(r.status, 303, "a removed account signs in nowhere: {}", r.body);
    app.stop().await;
}

/// Signs in on the account page with alice's password; the browser keeps its session.
async fn account_page_session(app: &TestApp) -> Browser {
    let mut browser = Browser::new();
    let page = browser.get(&format!("{}/account", app.url)).await;
    let form = [("csrf", hidden(&page.body, "csrf")), ("username", "alice".into()), ("password", PASSWORD.into())];
    let r = browser.post(&format!("{}/account/login", app.url), &form).await;
    assert_eq!(r.status, 303, "account sign-in: {}", r.body);
    assert!(signed_in(app, &mut browser).await, "signed in on the account page");
    browser
}

async fn signed_in(app: &TestApp, browser: &mut Browser) -> bool {
    let page = browser.get(&format!("{}/account", app.url)).await;
    assert_eq!(page.status, 200, "{}", page.body);
    page.body.contains("action=\"/account/signout\"")
}

async fn set_password(alice: &Path, password: &str) {
    let env = [("SICHAT_NEW_PASSWORD", password), ("SICHAT_PASSPHRASE", sichat_e2e::PASSPHRASE)];
    let out = sichat_env(alice, &["password", "set"], &env).await;
    assert!(out.status.success(), "password set: {}", stderr(&out));
}

async fn sign_out_everywhere_and_a_new_password(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let alice = alice_with_password(&app).await;
    let http = rp_http();
    let (meta, raw) = discover(&app, &http).await;
    let reg = register(&http, &meta).await;
    let client = rp(&meta, &raw, &reg);

    // The account page's button: every other browser and every site's tokens end; this
    // browser stays signed in.
    let (first, sub) = grant(&app, &client, &http).await;
    let mut other = account_page_session(&app).await;
    let mut this = account_page_session(&app).await;
    let page = this.get(&format!("{}/account", app.url)).await;
    assert!(page.body.contains("action=\"/account/signout-everywhere\""), "{}", page.body);
    let r =
        this.post(&format!("{}/account/signout-everywhere", app.url), &[("csrf", hidden(&page.body, "csrf"))]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let page = this.get(r.location(&app).expect("back to the account page").as_str()).await;
    assert!(page.body.contains("Signed out everywhere else"), "{}", page.body);
    assert!(signed_in(&app, &mut this).await, "the browser that asked stays signed in");
    assert!(!signed_in(&app, &mut other).await, "the other browser is signed out");
    assert_dead(&client, &http, &first, &sub, "after the account page's sign out everywhere").await;

    // The same from the wallet: `sichat oidc sign-out-everywhere`.
    let (second, _) = grant(&app, &client, &http).await;
    let second = assert_works(&client, &http, &second, &sub).await;
    let out = sichat(&alice, &["oidc", "sign-out-everywhere"]).await;
    assert!(out.status.success(), "sign-out-everywhere: {}", stderr(&out));
    assert_dead(&client, &http, &second, &sub, "after sichat oidc sign-out-everywhere").await;
    assert!(!signed_in(&app, &mut this).await, "no browser session is kept from the wallet");

    // A new password ends every session and every site's tokens too.
    let (third, _) = grant(&app, &client, &http).await;
    let mut browser = account_page_session(&app).await;
    set_password(&alice, "another long password").await;
    assert_dead(&client, &http, &third, &sub, "after a password change").await;
    assert!(!signed_in(&app, &mut browser).await, "the browser is signed out by the new password");
    app.stop().await;
}
