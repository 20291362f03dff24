//! Signing in without a password, over plain HTTP: wallet approval with the real `sichat`
//! binary and every bad approval refused with nothing changed; passkey links and the
//! account page's protections. (Real browsers: `browser.rs`.)

use openidconnect::core::CoreAuthenticationFlow;
use openidconnect::{CsrfToken, Nonce, PkceCodeChallenge, TokenResponse};
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::{json, Value};
use sichat_accounts::protocol::{now_secs, LoginApprovalClaims, TYP_LOGIN_APPROVAL};
use sichat_core::keys::Ed25519KeyPair;
use sichat_e2e::{device_key, json, sichat, stderr, storage_tests, Backend, TestApp};
use sichat_oidc::approval::Approvals;
use std::collections::BTreeMap;

storage_tests!(
    wallet_approval_signs_in_and_refuses_bad_approvals,
    passkey_links_and_account_page_protections,
    approval_code_guesses_share_one_limit,
);

const REDIRECT: &str = "http://127.0.0.1:9/cb";

async fn wallet_approval_signs_in_and_refuses_bad_approvals(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let alice = app.join("alice", &app.owner_invite).await;
    let client_id = register(&app).await;
    let (device, profile) = device_key(&alice);
    let kid =
        format!("{}#device-{}", profile["did"].as_str().expect("did"), profile["device_id"].as_str().expect("id"));

    // The sign-in page shows a code, its QR code, and waits.
    let mut browser = Browser::new();
    let page = browser.get(&authorize_url(&app, &client_id)).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let shown = LoginPage::parse(&page.body);
    assert!(page.body.contains("<svg"), "a QR code: {}", page.body);
    assert!(page.body.contains(&format!("sichat login approve {}", shown.code)), "{}", page.body);
    assert_eq!(browser.status(&app, &shown.approval).await, "pending");

    // What the wallet sees before signing: the site, where answers go, and the node.
    let (status, info) = app.get_json(&format!("/api/v1/oidc/approvals/{}", shown.code)).await;
    assert_eq!(status, 200, "{info}");
    assert_eq!((info["site"].as_str(), info["redirect_host"].as_str()), (Some("Approval RP"), Some("127.0.0.1")));
    assert_eq!(info["node"], app.url.as_str());
    let challenge = info["challenge"].as_str().expect("challenge").to_owned();
    let good =
        Claims { code: &shown.code, challenge: &challenge, aud: &app.url, iat: now_secs(), exp: now_secs() + 60 };

    // Forged: alice's kid, another key. Expired. Another node. An unknown code. All refused,
    // and the page is still waiting.
    let forged = sign(&Ed25519KeyPair::generate(), &kid, &profile, &good);
    assert_refused(&app, &forged, 401, "invalid_approval", "forged").await;
    let old = Claims { iat: now_secs() - 200, exp: now_secs() - 100, ..good };
    assert_refused(&app, &sign(&device, &kid, &profile, &old), 401, "expired_approval", "expired").await;
    let elsewhere = Claims { aud: "https://other.example", ..good };
    assert_refused(&app, &sign(&device, &kid, &profile, &elsewhere), 401, "invalid_approval", "not for").await;
    let unknown = Claims { code: "ZZZZ-ZZZZ", ..good };
    assert_refused(&app, &sign(&device, &kid, &profile, &unknown), 404, "unknown_code", "no sign-in").await;
    let not_a_device = format!("{}#root", profile["did"].as_str().expect("did"));
    assert_refused(&app, &sign(&device, &not_a_device, &profile, &good), 401, "invalid_approval", "device").await;
    assert_eq!(browser.status(&app, &shown.approval).await, "pending", "bad approvals change nothing");

    // Another browser cannot continue: the approval is bound to this one.
    let mut stranger = Browser::new();
    let form = shown.form();
    let r = stranger.post(&format!("{}/oidc/approval/continue", app.url), &form).await;
    assert_eq!(r.status, 403, "{}", r.body);

    // A good approval signs in once; its replay is refused.
    let approval = sign(&device, &kid, &profile, &good);
    let (status, body) = app.post_json("/api/v1/oidc/approvals", &json!({ "approval": approval })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(browser.status(&app, &shown.approval).await, "approved");
    assert_refused(&app, &approval, 409, "already_used", "already").await;
    let r = stranger.post(&format!("{}/oidc/approval/continue", app.url), &form).await;
    assert_eq!(r.status, 403, "still not for another browser: {}", r.body);
    let next = browser.post(&format!("{}/oidc/approval/continue", app.url), &form).await;
    assert_eq!(next.status, 303, "{}", next.body);
    assert!(next.location.as_deref().is_some_and(|l| l.starts_with("/oidc/consent?request=")), "{:?}", next.location);
    assert!(browser.cookies.contains_key("sichat_op"), "a browser session");
    let again = browser.post(&format!("{}/oidc/approval/continue", app.url), &form).await;
    assert_eq!(again.status, 400, "continued once only: {}", again.body);
    let consent = browser.get(&format!("{}{}", app.url, next.location.as_deref().unwrap_or_default())).await;
    assert!(consent.body.contains("Signed in as <strong>alice</strong>"), "{}", consent.body);

    // The real wallet: a new page, `sichat login approve CODE --yes` (the URL of the QR code
    // works too), and the page may go on.
    let mut browser = Browser::new();
    let page = browser.get(&authorize_url(&app, &client_id)).await;
    let shown = LoginPage::parse(&page.body);
    let qr_url = format!("{}/oidc/approve?code={}", app.url, shown.code.to_lowercase());
    let out = sichat(&alice, &["--json", "login", "approve", &qr_url, "--yes"]).await;
    assert!(out.status.success(), "sichat login approve: {}", stderr(&out));
    assert_eq!(json(&out)["site"], "Approval RP");
    assert_eq!(browser.status(&app, &shown.approval).await, "approved");
    let out = sichat(&alice, &["login", "approve", &shown.code, "--yes"]).await;
    assert!(!out.status.success(), "a used code cannot be approved again");
    assert!(stderr(&out).contains("no sign-in is waiting"), "{}", stderr(&out));
    let out = sichat(&alice, &["login", "approve", &shown.code]).await;
    assert!(stderr(&out).contains("pass --yes") || stderr(&out).contains("no sign-in"), "{}", stderr(&out));
    let out = sichat(&alice, &["login", "approve", "https://elsewhere.example/oidc/approve?code=ABCD-1234"]).await;
    assert!(stderr(&out).contains("elsewhere.example"), "{}", stderr(&out));

    // Without --yes and no terminal, nothing is signed.
    let page = Browser::new().get(&authorize_url(&app, &client_id)).await;
    let third = LoginPage::parse(&page.body);
    let out = sichat(&alice, &["login", "approve", &third.code]).await;
    assert!(!out.status.success() && stderr(&out).contains("--yes"), "{}", stderr(&out));

    // Through to a relying party (openidconnect): the ID token says how alice signed in.
    let http = crate::oidc::rp_http();
    let (meta, raw) = crate::oidc::discover(&app, &http).await;
    let reg = crate::oidc::register(&http, &meta).await;
    let rp = crate::oidc::rp(&meta, &raw, &reg);
    let (challenge, pkce) = PkceCodeChallenge::new_random_sha256();
    let (url, state, nonce) = rp
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .set_pkce_challenge(challenge)
        .url();
    let mut browser = Browser::new();
    let page = browser.get(url.as_str()).await;
    let shown = LoginPage::parse(&page.body);
    let out = sichat(&alice, &["login", "approve", &shown.code, "--yes"]).await;
    assert!(out.status.success(), "sichat login approve: {}", stderr(&out));
    let next = browser.post(&format!("{}/oidc/approval/continue", app.url), &shown.form()).await;
    assert_eq!(next.status, 303, "{}", next.body);
    let consent = browser.get(&format!("{}{}", app.url, next.location.as_deref().unwrap_or_default())).await;
    let form = [
        ("request", hidden(&consent.body, "request")),
        ("csrf", hidden(&consent.body, "csrf")),
        ("decision", "allow".into()),
    ];
    let done = browser.post(&format!("{}/oidc/consent", app.url), &form).await;
    let back = url::Url::parse(done.location.as_deref().expect("back to the site")).expect("URL");
    let code = crate::oidc::code_from(&app, &back, &state);
    let tokens = rp
        .exchange_code(code)
        .expect("token endpoint")
        .set_pkce_verifier(pkce)
        .request_async(&http)
        .await
        .expect("code");
    let claims = tokens.id_token().expect("an ID token").claims(&rp.id_token_verifier(), &nonce).expect("valid");
    assert_eq!(crate::oidc::amr(claims), ["swk", "mca"], "a wallet's device key, over a second channel");

    // Guessing codes is throttled per address.
    let mut throttled = false;
    for i in 0..12 {
        let (status, _) = app.get_json(&format!("/api/v1/oidc/approvals/ZZZZ-ZZ{:02}", i % 10)).await;
        if status == 429 {
            throttled = true;
            break;
        }
        assert_eq!(status, 404);
    }
    assert!(throttled, "unknown codes are throttled");
    app.stop().await;
}

/// Two throttles in two processes' worth of state on one database: unknown approval codes
/// count against one limit per address, checked and counted together, so 30 concurrent
/// guesses split over both get exactly the 10 the limit allows.
async fn approval_code_guesses_share_one_limit(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let approvals = || Approvals::new(app.node.oidc.clone(), app.node.accounts.clone());
    let (a, b) = (approvals(), approvals());
    let guesses = (0..30).map(|i| {
        let throttle = if i % 2 == 0 { &a } else { &b };
        async move { throttle.pending(&format!("ZZZZ-ZZ{:02}", i % 10), "198.51.100.7").await }
    });
    let answers = futures_util::future::join_all(guesses).await;
    let code = |r: &Result<_, sichat_oidc::OidcError>| r.as_ref().err().map(|e| e.code).unwrap_or("found");
    let unknown = answers.iter().filter(|r| code(r) == "unknown_code").count();
    let throttled = answers.iter().filter(|r| code(r) == "too_many_attempts").count();
    assert_eq!((unknown, throttled), (10, 20), "{:?}", answers.iter().map(code).collect::<Vec<_>>());
    // Another address has its own limit.
    let other = a.pending("ZZZZ-ZZ00", "198.51.100.8").await.err().map(|e| e.code);
    assert_eq!(other, Some("unknown_code"));
    app.stop().await;
}

/// Replicas on one PostgreSQL: guesses sent to either count against one limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_code_guesses_are_limited_across_replicas() {
    sichat_e2e::or_hung(approval_code_guesses_are_limited_across_replicas_run()).await
}

async fn approval_code_guesses_are_limited_across_replicas_run() {
    let Some(app) = TestApp::spawn(Backend::Postgres).await else { return };
    let replica = app.replica(|_| {}).await;
    for i in 0..10 {
        let node = if i < 6 { &app } else { &replica };
        let (status, body) = node.get_json(&format!("/api/v1/oidc/approvals/ZZZZ-ZZ{i:02}")).await;
        assert_eq!(status, 404, "guess {i}: {body}");
    }
    for node in [&replica, &app] {
        let (status, body) = node.get_json("/api/v1/oidc/approvals/ZZZZ-ZZ99").await;
        assert_eq!((status, body["error"].as_str()), (429, Some("too_many_attempts")), "{body}");
    }
    replica.stop().await;
    app.stop().await;
}

async fn passkey_links_and_account_page_protections(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let alice = app.join("alice", &app.owner_invite).await;

    // `sichat passkey add` prints a one-time link to open in a browser.
    let out = sichat(&alice, &["--json", "passkey", "add", "--name", "phone"]).await;
    assert!(out.status.success(), "passkey add: {}", stderr(&out));
    let link = json(&out)["url"].as_str().expect("url").to_owned();
    assert!(link.starts_with(&format!("{}/account/passkeys/new?link=", app.url)), "{link}");
    let mut browser = Browser::new();
    let page = browser.get(&link).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Add a passkey") && page.body.contains("value=\"phone\""), "{}", page.body);
    assert!(page.csp.contains("script-src 'self'") && page.csp.contains("frame-ancestors 'none'"), "{}", page.csp);
    let bogus = browser.get(&format!("{}/account/passkeys/new?link=nope", app.url)).await;
    assert_eq!(bogus.status, 400, "{}", bogus.body);

    // Registration options need the page's CSRF token.
    let r =
        browser.post_json(&format!("{}/account/passkeys/options", app.url), &json!({"csrf": "x", "link": ""})).await;
    assert_eq!(r.0, 403, "{}", r.1);

    let out = sichat(&alice, &["--json", "passkey", "list"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&out), json!([]));
    let out = sichat(&alice, &["passkey", "remove", "no-such-passkey"]).await;
    assert!(!out.status.success() && stderr(&out).contains("no passkey"), "{}", stderr(&out));

    // The account page signs in the same ways; its forms want the CSRF cookie.
    let mut browser = Browser::new();
    let page = browser.get(&format!("{}/account", app.url)).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("action=\"/account/login\"") && page.body.contains("approval-code"), "{}", page.body);
    let csrf = hidden(&page.body, "csrf");
    assert_eq!(browser.cookies.get("sichat_csrf"), Some(&csrf));
    let r = Browser::new().post(&format!("{}/account/signout", app.url), &[("csrf", csrf.clone())]).await;
    assert_eq!(r.status, 403, "no cookie, no form: {}", r.body);
    let r = browser
        .post(&format!("{}/account/consents/revoke", app.url), &[("csrf", csrf.clone()), ("client_id", "x".into())])
        .await;
    assert_eq!((r.status, r.location.as_deref()), (303, Some("/account")), "not signed in: back to sign in");

    // Sign in on the account page with a wallet approval.
    let code = LoginPage::code_in(&page.body);
    let out = sichat(&alice, &["--json", "login", "approve", &code, "--yes"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&out)["site"], Value::Null, "the account page is no site");
    let form = [("request", String::new()), ("csrf", csrf.clone()), ("approval", hidden(&page.body, "approval"))];
    let r = browser.post(&format!("{}/oidc/approval/continue", app.url), &form).await;
    assert_eq!((r.status, r.location.as_deref()), (303, Some("/account")), "{}", r.body);
    let page = browser.get(&format!("{}/account", app.url)).await;
    assert!(page.body.contains("Signed in as <strong id=\"user\">alice</strong>"), "{}", page.body);
    assert!(page.body.contains("not allowed any site"), "{}", page.body);
    let r = browser.post(&format!("{}/account/signout", app.url), &[("csrf", csrf)]).await;
    assert_eq!(r.status, 303);
    let page = browser.get(&format!("{}/account", app.url)).await;
    assert!(page.body.contains("action=\"/account/login\""), "signed out: {}", page.body);
    app.stop().await;
}

#[derive(Clone, Copy)]
struct Claims<'a> {
    code: &'a str,
    challenge: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
}

fn sign(key: &Ed25519KeyPair, kid: &str, profile: &Value, c: &Claims<'_>) -> String {
    let claims = LoginApprovalClaims {
        iss: profile["did"].as_str().expect("did").to_owned(),
        aud: c.aud.to_owned(),
        code: c.code.to_owned(),
        challenge: c.challenge.to_owned(),
        iat: c.iat,
        exp: c.exp,
    };
    sichat_core::jws::sign(key, TYP_LOGIN_APPROVAL, Some(kid), &claims).expect("sign")
}

async fn assert_refused(app: &TestApp, approval: &str, status: u16, code: &str, says: &str) {
    let (got, body) = app.post_json("/api/v1/oidc/approvals", &json!({ "approval": approval })).await;
    assert_eq!((got, body["error"].as_str()), (status, Some(code)), "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains(says), "{says:?} in {message}");
}

/// A confidential client named "Approval RP", registered by hand; its id.
pub(crate) async fn register(app: &TestApp) -> String {
    let (status, body) =
        app.post_json("/oidc/register", &json!({"redirect_uris": [REDIRECT], "client_name": "Approval RP"})).await;
    assert_eq!(status, 201, "{body}");
    body["client_id"].as_str().expect("client_id").to_owned()
}

fn authorize_url(app: &TestApp, client_id: &str) -> String {
    let mut u = url::Url::parse(&format!("{}/oidc/authorize", app.url)).expect("url");
    u.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("scope", "openid profile")
        .append_pair("state", "s1")
        .append_pair("code_challenge", &"a".repeat(43))
        .append_pair("code_challenge_method", "S256");
    u.into()
}

/// What a sign-in page holds for a wallet approval.
struct LoginPage {
    request: String,
    csrf: String,
    approval: String,
    code: String,
}

impl LoginPage {
    fn parse(html: &str) -> Self {
        Self {
            request: hidden(html, "request"),
            csrf: hidden(html, "csrf"),
            approval: hidden(html, "approval"),
            code: Self::code_in(html),
        }
    }

    fn code_in(html: &str) -> String {
        let at = html.find("id=\"approval-code\">").expect("an approval code") + "id=\"approval-code\">".len();
        html[at..].split('<').next().expect("code").to_owned()
    }

    fn form(&self) -> [(&'static str, String); 3] {
        [("request", self.request.clone()), ("csrf", self.csrf.clone()), ("approval", self.approval.clone())]
    }
}

/// The value of the first form field `name` in `html`.
fn hidden(html: &str, name: &str) -> String {
    let at = html.find(&format!("name=\"{name}\" value=\"")).unwrap_or_else(|| panic!("no field {name} in {html}"));
    let rest = &html[at + name.len() + 15..];
    rest.split('"').next().expect("value").replace("&amp;", "&")
}

/// A browser by hand: a cookie jar, no automatic redirects.
struct Browser {
    http: reqwest::Client,
    cookies: BTreeMap<String, String>,
}

struct Page {
    status: u16,
    location: Option<String>,
    csp: String,
    body: String,
}

impl Browser {
    fn new() -> Self {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
        Self { http, cookies: BTreeMap::new() }
    }

    async fn get(&mut self, url: &str) -> Page {
        let req = self.http.get(url);
        self.send(req).await
    }

    async fn post(&mut self, url: &str, form: &[(&str, String)]) -> Page {
        let req = self.http.post(url).form(form);
        self.send(req).await
    }

    async fn post_json(&mut self, url: &str, body: &Value) -> (u16, String) {
        let req = self.http.post(url).json(body);
        let p = self.send(req).await;
        (p.status, p.body)
    }

    async fn status(&mut self, app: &TestApp, handle: &str) -> String {
        let p = self.get(&format!("{}/oidc/approval/status?approval={handle}", app.url)).await;
        let v: Value = serde_json::from_str(&p.body).expect("JSON status");
        v["status"].as_str().expect("status").to_owned()
    }

    async fn send(&mut self, mut req: reqwest::RequestBuilder) -> Page {
        if !self.cookies.is_empty() {
            let jar: Vec<String> = self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
            req = req.header(COOKIE, jar.join("; "));
        }
        let r = req.send().await.expect("request");
        for set in r.headers().get_all(SET_COOKIE) {
            let set = set.to_str().expect("cookie");
            let Some((name, value)) = set.split(';').next().and_then(|p| p.split_once('=')) else { continue };
            if value.is_empty() || set.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        let header = |name| r.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let (location, csp) = (header(LOCATION), header(reqwest::header::CONTENT_SECURITY_POLICY).unwrap_or_default());
        Page { status: r.status().as_u16(), location, csp, body: r.text().await.expect("body") }
    }
}
