//! A real browser: headless Chromium driven over WebDriver (`chromedriver`, `fantoccini`).
//! Password, passkey (Chromium's virtual authenticator; by name, and discoverable with no
//! name) and wallet-approval sign-ins, each
//! ending at a loopback relying party whose code the `openidconnect` crate exchanges.
//!
//! Needs `chromium` and `chromedriver` (Debian: `apt-get install chromium chromium-driver`).
//! Without them these tests skip loudly, except under `CI=true`, where they fail.

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreClientRegistrationRequest, CoreProviderMetadata, CoreUserInfoClaims,
};
use openidconnect::registration::EmptyAdditionalClientMetadata;
use openidconnect::{
    AuthorizationCode, ClientName, CsrfToken, IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl,
    Scope, TokenResponse,
};
use serde_json::json;
use sichat_e2e::{json, sichat, sichat_env, stderr, storage_tests, Backend, TestApp};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

storage_tests!(
    browser_password_consent_code,
    browser_passkey_register_then_sign_in,
    browser_passkey_with_no_name,
    browser_wallet_approval,
    browser_logout_asks_naming_the_site,
);

pub(crate) const PASSWORD: &str = "correct horse battery staple";
const WAIT: Duration = Duration::from_secs(30);

/// One Chromium at a time: the machine has two cores.
pub(crate) static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn browser_password_consent_code(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let _alice = alice_with_password(&app).await;
    let _one = ONE_BROWSER.lock().await;
    let Some(chrome) = Chrome::start().await else { return };
    let mut rp = Rp::start(&app).await;

    let (url, state, nonce, pkce) = rp.begin();
    chrome.c.goto(&url).await.expect("open the authorization URL");
    chrome.fill("#username", "alice").await;
    chrome.fill("#password", PASSWORD).await;
    chrome.click("form[action='/oidc/login'] button[type=submit]").await;
    chrome.click("button[name=decision][value=allow]").await;
    let code = rp.code(&state).await;
    let (claims, amr) = rp.exchange(code, pkce, &nonce).await;
    assert_eq!(claims.preferred_username().map(|u| u.as_str()), Some("alice"));
    assert_eq!(amr, ["pwd"]);
    chrome.quit().await;
    app.stop().await;
}

async fn browser_passkey_register_then_sign_in(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let alice = alice_with_password(&app).await;
    let _one = ONE_BROWSER.lock().await;
    let Some(chrome) = Chrome::start().await else { return };
    // Credentials it cannot keep as discoverable: signing in takes the user name (with
    // discoverable ones, the sign-in page's autofill request would answer first).
    chrome.virtual_authenticator(false).await;
    let mut rp = Rp::start(&app).await;

    // Register from the account page, signed in with the password there.
    chrome.c.goto(&format!("{}/account", app.url)).await.expect("account page");
    chrome.fill("#username", "alice").await;
    chrome.fill("#password", PASSWORD).await;
    chrome.click("form[action='/account/login'] button[type=submit]").await;
    chrome.fill("#passkey-name", "laptop").await;
    chrome.click("#passkey-add").await;
    chrome.wait_text("Passkey added.").await;
    assert!(chrome.text("tr.passkey").await.contains("laptop"));
    let out = sichat(&alice, &["--json", "passkey", "list"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&out)[0]["name"], "laptop", "the wallet sees the passkey");

    // Sign out, then sign in to the site with the passkey alone.
    chrome.click("form[action='/account/signout'] button").await;
    chrome.wait_for("form[action='/account/login']").await;
    let (url, state, nonce, pkce) = rp.begin();
    chrome.c.goto(&url).await.expect("open the authorization URL");
    chrome.fill("#username", "alice").await;
    chrome.click("#passkey-signin").await;
    chrome.click("button[name=decision][value=allow]").await;
    let code = rp.code(&state).await;
    let (claims, amr) = rp.exchange(code, pkce, &nonce).await;
    assert_eq!(claims.preferred_username().map(|u| u.as_str()), Some("alice"));
    // The virtual authenticator keeps its key (not backup eligible) and verifies the user.
    assert_eq!(amr, ["hwk", "user", "mfa"]);

    // The account page lists the site; revoking it there shows in the wallet.
    chrome.c.goto(&format!("{}/account", app.url)).await.expect("account page");
    assert!(chrome.text("tr.consent").await.contains("Browser RP"));
    chrome.click("tr.consent button").await;
    chrome.wait_text("Consent withdrawn").await;
    let out = sichat(&alice, &["--json", "oidc", "consents", "list"]).await;
    assert_eq!(json(&out), json!([]), "revoked on the page, gone for the wallet");
    chrome.quit().await;
    app.stop().await;
}

/// With an authenticator that keeps discoverable credentials, the passkey names the account
/// itself: the sign-in page offers it in the user name field's autofill (conditional UI; the
/// virtual authenticator picks it as a user would), with no name typed. Alice signs out of
/// her account page and is signed back in that way; the site she then signs in to gets an
/// ID token saying a passkey was used.
async fn browser_passkey_with_no_name(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let _alice = alice_with_password(&app).await;
    let _one = ONE_BROWSER.lock().await;
    let Some(chrome) = Chrome::start().await else { return };
    chrome.virtual_authenticator(true).await;
    let mut rp = Rp::start(&app).await;
    chrome.c.goto(&format!("{}/account", app.url)).await.expect("account page");
    chrome.fill("#username", "alice").await;
    chrome.fill("#password", PASSWORD).await;
    chrome.click("form[action='/account/login'] button[type=submit]").await;
    chrome.fill("#passkey-name", "phone").await;
    chrome.click("#passkey-add").await;
    chrome.wait_text("Passkey added.").await;

    chrome.click("form[action='/account/signout'] button").await;
    // The signed-out page's autofill request is answered with the discoverable passkey.
    chrome.wait_text("Signed in as <strong id=\"user\">alice</strong>").await;
    let activity = chrome.text("#activity").await;
    assert!(activity.contains("passkey"), "signed back in by passkey: {activity}");

    let (url, state, nonce, pkce) = rp.begin();
    chrome.c.goto(&url).await.expect("open the authorization URL");
    chrome.click("button[name=decision][value=allow]").await;
    let code = rp.code(&state).await;
    let (claims, amr) = rp.exchange(code, pkce, &nonce).await;
    assert_eq!(claims.preferred_username().map(|u| u.as_str()), Some("alice"));
    assert_eq!(amr, ["hwk", "user", "mfa"], "the session's passkey sign-in");
    chrome.quit().await;
    app.stop().await;
}

async fn browser_wallet_approval(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let alice = app.join("alice", &app.owner_invite).await;
    let _one = ONE_BROWSER.lock().await;
    let Some(chrome) = Chrome::start().await else { return };
    let mut rp = Rp::start(&app).await;

    let (url, state, nonce, pkce) = rp.begin();
    chrome.c.goto(&url).await.expect("open the authorization URL");
    let code = chrome.text("#approval-code").await;
    assert_eq!(code.len(), 9, "a code like ABCD-1234: {code}");
    let out = sichat(&alice, &["login", "approve", &code, "--yes"]).await;
    assert!(out.status.success(), "sichat login approve: {}", stderr(&out));
    // Nobody touches the page: it goes on to consent by itself.
    chrome.click("button[name=decision][value=allow]").await;
    let code = rp.code(&state).await;
    let (claims, amr) = rp.exchange(code, pkce, &nonce).await;
    assert_eq!(claims.preferred_username().map(|u| u.as_str()), Some("alice"));
    assert_eq!(amr, ["swk", "mca"]);
    chrome.quit().await;
    app.stop().await;
}

/// A logout URL without an ID token of this user (any page could load it): the node asks,
/// naming the site and itself; Cancel keeps the session, Sign out ends it.
async fn browser_logout_asks_naming_the_site(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let _alice = alice_with_password(&app).await;
    let _one = ONE_BROWSER.lock().await;
    let Some(chrome) = Chrome::start().await else { return };
    let mut rp = Rp::start(&app).await;
    let (url, state, _, _) = rp.begin();
    chrome.c.goto(&url).await.expect("open the authorization URL");
    chrome.fill("#username", "alice").await;
    chrome.fill("#password", PASSWORD).await;
    chrome.click("form[action='/oidc/login'] button[type=submit]").await;
    chrome.click("button[name=decision][value=allow]").await;
    rp.code(&state).await;

    let logout = format!("{}/oidc/logout?client_id={}", app.url, rp.client.client_id().as_str());
    chrome.c.goto(&logout).await.expect("open the logout URL");
    let node = url::Url::parse(&app.url).expect("node URL").host_str().expect("host").to_owned();
    assert_eq!(chrome.text("h1").await, format!("Sign out of {node}?"));
    assert_eq!(chrome.text(".site").await, "Browser RP", "the page names the site that asks");
    chrome.click("button[name=decision][value=cancel]").await;
    chrome.wait_text("You are still signed in").await;
    // Still signed in: the site's next request comes straight back with a code.
    let (url, state, _, _) = rp.begin();
    chrome.c.goto(&url).await.expect("open the authorization URL");
    rp.code(&state).await;

    chrome.c.goto(&logout).await.expect("open the logout URL");
    chrome.click("button[name=decision][value=logout]").await;
    chrome.wait_text("You are signed out").await;
    let (url, _, _, _) = rp.begin();
    chrome.c.goto(&url).await.expect("open the authorization URL");
    chrome.wait_for("#username").await;
    chrome.quit().await;
    app.stop().await;
}

pub(crate) async fn alice_with_password(app: &TestApp) -> PathBuf {
    let alice = app.join("alice", &app.owner_invite).await;
    let env = [("SICHAT_NEW_PASSWORD", PASSWORD), ("SICHAT_PASSPHRASE", sichat_e2e::PASSPHRASE)];
    let out = sichat_env(&alice, &["password", "set"], &env).await;
    assert!(out.status.success(), "password set: {}", stderr(&out));
    alice
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

fn find(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).flat_map(|dir| names.iter().map(move |n| dir.join(n))).find(|p| p.is_file())
}

/// Headless Chromium behind a `chromedriver` of its own on a free port.
pub(crate) struct Chrome {
    pub(crate) c: Client,
    _driver: tokio::process::Child,
}

impl Chrome {
    pub(crate) async fn start() -> Option<Self> {
        let (Some(chromium), Some(driver)) = (find(&["chromium", "chromium-browser"]), find(&["chromedriver"])) else {
            let why = "chromium or chromedriver is not installed (apt-get install chromium chromium-driver)";
            if in_ci() {
                panic!("{why}, and CI=true, so the browser tests fail rather than skip");
            }
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "\n!!!! SKIPPING a browser test: {why}. Under CI=true this fails.\n");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("addr").port();
        let driver = tokio::process::Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        let webdriver = format!("http://127.0.0.1:{port}");
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                         "--disable-dev-shm-usage", "--window-size=1024,900"],
            }),
        );
        let mut last = None;
        for _ in 0..100 {
            match ClientBuilder::native().capabilities(caps.clone()).connect(&webdriver).await {
                Ok(c) => return Some(Self { c, _driver: driver }),
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("chromedriver on port {port} never started a session: {last:?}");
    }

    /// Chromium's virtual authenticator (WebDriver WebAuthn extension): a platform
    /// authenticator with user verification that always says yes, keeping discoverable
    /// credentials (resident keys) when `resident`.
    async fn virtual_authenticator(&self, resident: bool) {
        self.c.issue_cmd(AddVirtualAuthenticator { resident }).await.expect("add a virtual authenticator");
    }

    pub(crate) async fn wait_for(&self, css: &str) -> fantoccini::elements::Element {
        let found = self.c.wait().at_most(WAIT).for_element(Locator::Css(css)).await;
        match found {
            Ok(e) => e,
            Err(e) => {
                let page = self.c.source().await.unwrap_or_default();
                let url = self.c.current_url().await.map(|u| u.to_string()).unwrap_or_default();
                panic!("no {css} at {url} ({e}):\n{page}")
            }
        }
    }

    pub(crate) async fn fill(&self, css: &str, text: &str) {
        let e = self.wait_for(css).await;
        e.clear().await.expect("clear");
        e.send_keys(text).await.expect("type");
    }

    pub(crate) async fn click(&self, css: &str) {
        self.wait_for(css).await.click().await.expect("click");
    }

    /// The element's text; again if the page was replaced under it (a stale element: the
    /// passkey autofill may sign in and reload the page at any moment).
    pub(crate) async fn text(&self, css: &str) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match self.wait_for(css).await.text().await {
                Ok(t) => return t,
                Err(e) if tokio::time::Instant::now() > deadline => panic!("text of {css}: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    async fn wait_text(&self, needle: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let page = self.c.source().await.unwrap_or_default();
            if page.contains(needle) {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("{needle:?} never showed up:\n{page}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub(crate) async fn quit(self) {
        let _ = self.c.close().await;
    }
}

#[derive(Debug)]
struct AddVirtualAuthenticator {
    /// Whether it can keep discoverable credentials (resident keys).
    resident: bool,
}

impl WebDriverCompatibleCommand for AddVirtualAuthenticator {
    fn endpoint(&self, base: &url::Url, session: Option<&str>) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/webauthn/authenticator", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (reqwest::Method, Option<String>) {
        let body = json!({
            "protocol": "ctap2",
            "transport": "internal",
            "hasResidentKey": self.resident,
            "hasUserVerification": true,
            "isUserVerified": true,
            "isUserConsenting": true,
        });
        (reqwest::Method::POST, Some(body.to_string()))
    }
}

type RpClient = CoreClient<
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
>;

/// A relying party on loopback: registered dynamically, its redirect URI served by a tiny
/// listener that hands over every request it gets.
struct Rp {
    client: RpClient,
    http: openidconnect::reqwest::Client,
    hits: mpsc::Receiver<String>,
}

impl Rp {
    async fn start(app: &TestApp) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the relying party");
        let redirect = format!("http://127.0.0.1:{}/cb", listener.local_addr().expect("addr").port());
        let (tx, hits) = mpsc::channel(8);
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let mut buf = vec![0u8; 8192];
                let n = sock.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).into_owned();
                let target = head.split_whitespace().nth(1).unwrap_or_default().to_owned();
                let _ = sock
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 9\r\nconnection: close\r\n\r\nsigned in")
                    .await;
                if target.starts_with("/cb") {
                    let _ = tx.send(target).await;
                }
            }
        });
        let http = openidconnect::reqwest::Client::builder()
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        let issuer = IssuerUrl::new(app.url.clone()).expect("issuer");
        let meta = CoreProviderMetadata::discover_async(issuer, &http).await.expect("discovery");
        let reg = CoreClientRegistrationRequest::new(
            vec![RedirectUrl::new(redirect.clone()).expect("url")],
            EmptyAdditionalClientMetadata {},
        )
        .set_client_name(Some(ClientName::new("Browser RP".into()).into()))
        .register_async(meta.registration_endpoint().expect("registration endpoint"), &http)
        .await
        .expect("dynamic registration");
        let client = CoreClient::from_provider_metadata(meta, reg.client_id().clone(), reg.client_secret().cloned())
            .set_redirect_uri(RedirectUrl::new(redirect).expect("url"));
        Self { client, http, hits }
    }

    fn begin(&self) -> (String, CsrfToken, Nonce, PkceCodeVerifier) {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state, nonce) = self
            .client
            .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
            .add_scope(Scope::new("profile".into()))
            .set_pkce_challenge(challenge)
            .url();
        (url.to_string(), state, nonce, verifier)
    }

    /// The code the browser brought back, after checking `state`.
    async fn code(&mut self, state: &CsrfToken) -> AuthorizationCode {
        let target = tokio::time::timeout(WAIT, self.hits.recv())
            .await
            .expect("the browser came back to the relying party")
            .expect("a request");
        let url = url::Url::parse(&format!("http://rp{target}")).expect("url");
        let get = |k: &str| url.query_pairs().find(|(q, _)| q == k).map(|(_, v)| v.into_owned());
        assert_eq!(get("error"), None, "{target}");
        assert_eq!(get("state").as_deref(), Some(state.secret().as_str()), "{target}");
        AuthorizationCode::new(get("code").expect("a code"))
    }

    /// Exchange the code (PKCE), check the ID token, and read UserInfo for its subject; with
    /// the ID token's `amr`.
    async fn exchange(
        &self,
        code: AuthorizationCode,
        pkce: PkceCodeVerifier,
        nonce: &Nonce,
    ) -> (CoreUserInfoClaims, Vec<String>) {
        let tokens = self
            .client
            .exchange_code(code)
            .expect("token endpoint")
            .set_pkce_verifier(pkce)
            .request_async(&self.http)
            .await
            .expect("code exchange");
        let id_token = tokens.id_token().expect("an ID token");
        let claims = id_token.claims(&self.client.id_token_verifier(), nonce).expect("a valid ID token");
        let sub = claims.subject().clone();
        let amr = crate::oidc::amr(claims);
        use openidconnect::OAuth2TokenResponse;
        let info = self
            .client
            .user_info(tokens.access_token().clone(), Some(sub))
            .expect("userinfo endpoint")
            .request_async(&self.http)
            .await
            .expect("userinfo");
        (info, amr)
    }
}
