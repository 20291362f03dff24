//! Every kind of relying party: browser apps calling the node from their own origin (CORS,
//! never on pages or cookie endpoints), native apps (RFC 8252: private-use schemes, loopback
//! redirects on any port), and clients that read RFC 8414 metadata first.

use crate::oidc::{alice_with_password, discover, param, rp_http};
use crate::oidc_clients::{begin, exchange, raw_rp, register_raw, sign_in};
use openidconnect::url::Url;
use openidconnect::{AuthorizationCode, CsrfToken, OAuth2TokenResponse, RedirectUrl};
use serde_json::{json, Value};
use sichat_e2e::{storage_tests, Backend, TestApp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

storage_tests!(
    cors_for_browser_apps_never_for_pages,
    native_apps_use_their_own_scheme_or_loopback_on_any_port,
    authorization_server_metadata,
    sign_ins_are_listed_for_the_user
);

const ORIGIN: &str = "https://app.example";

async fn preflight(app: &TestApp, path: &str, method: &str) -> reqwest::Response {
    app.http
        .request(reqwest::Method::OPTIONS, format!("{}{path}", app.url))
        .header("origin", ORIGIN)
        .header("access-control-request-method", method)
        .header("access-control-request-headers", "authorization, content-type, dpop")
        .send()
        .await
        .expect("preflight")
}

fn allowed_origin(r: &reqwest::Response) -> Option<String> {
    r.headers().get("access-control-allow-origin").and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// Discovery, RFC 8414 metadata, JWKS, WebFinger, token, UserInfo, revocation and
/// introspection answer any origin, without credentials; the sign-in, consent and logout
/// pages, registration and the account's endpoints answer none.
async fn cors_for_browser_apps_never_for_pages(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    for (path, method) in [
        ("/oidc/token", "POST"),
        ("/oidc/userinfo", "GET"),
        ("/oidc/revoke", "POST"),
        ("/oidc/introspect", "POST"),
        ("/.well-known/openid-configuration", "GET"),
    ] {
        let r = preflight(&app, path, method).await;
        assert!(r.status().is_success(), "{path}: {}", r.status());
        assert_eq!(allowed_origin(&r).as_deref(), Some("*"), "{path}");
        let methods = r.headers().get("access-control-allow-methods").and_then(|v| v.to_str().ok()).unwrap_or("");
        assert!(methods.contains(method), "{path}: {methods}");
        let headers = r.headers().get("access-control-allow-headers").and_then(|v| v.to_str().ok()).unwrap_or("");
        assert!(headers.contains("dpop") && headers.contains("authorization"), "{path}: {headers}");
        assert!(r.headers().get("access-control-allow-credentials").is_none(), "{path}: never with credentials");
    }
    let host = Url::parse(&app.url).expect("url").host_str().expect("host").to_owned();
    for path in [
        "/.well-known/openid-configuration".to_owned(),
        "/.well-known/oauth-authorization-server".to_owned(),
        "/oidc/jwks".to_owned(),
        format!("/.well-known/webfinger?resource=acct:alice@{host}"),
    ] {
        let r = app.http.get(format!("{}{path}", app.url)).header("origin", ORIGIN).send().await.expect("get");
        assert_eq!(allowed_origin(&r).as_deref(), Some("*"), "{path}");
    }
    // An error from the token endpoint is readable by the app that caused it.
    let r = app
        .http
        .post(format!("{}/oidc/token", app.url))
        .header("origin", ORIGIN)
        .form(&[("grant_type", "authorization_code"), ("code", "nope"), ("client_id", "nobody")])
        .send()
        .await
        .expect("token");
    assert!(r.status().is_client_error());
    assert_eq!(allowed_origin(&r).as_deref(), Some("*"));

    for (path, method) in [
        ("/oidc/authorize", "GET"),
        ("/oidc/login", "POST"),
        ("/oidc/consent", "POST"),
        ("/oidc/logout", "POST"),
        ("/oidc/register", "POST"),
        ("/api/v1/oidc/consents", "GET"),
        ("/api/v1/password", "PUT"),
    ] {
        let r = preflight(&app, path, method).await;
        assert_eq!(allowed_origin(&r), None, "{path} must not be open to other origins");
    }
    let r = app.http.get(format!("{}/oidc/authorize", app.url)).header("origin", ORIGIN).send().await.expect("get");
    assert_eq!(allowed_origin(&r), None);
    app.stop().await;
}

/// One request on a loopback port, as a native app's redirect listener takes it: the
/// request target.
async fn take_redirect(listener: tokio::net::TcpListener) -> String {
    let (mut conn, _) = listener.accept().await.expect("accept");
    let mut buf = vec![0u8; 8192];
    let n = conn.read(&mut buf).await.expect("read");
    let head = String::from_utf8_lossy(&buf[..n]).into_owned();
    let target = head.split_whitespace().nth(1).unwrap_or_default().to_owned();
    let page = "HTTP/1.1 200 OK\r\ncontent-length: 26\r\nconnection: close\r\n\r\nYou may close this window.";
    conn.write_all(page.as_bytes()).await.ok();
    target
}

/// The code in a redirect back to the app, after checking its `state` and `iss`.
fn code_at(app: &TestApp, back: &Url, csrf: &CsrfToken) -> AuthorizationCode {
    assert_eq!(param(back, "error"), None, "{back}");
    assert_eq!(param(back, "state").as_deref(), Some(csrf.secret().as_str()), "{back}");
    assert_eq!(param(back, "iss").as_deref(), Some(app.url.as_str()), "{back}");
    AuthorizationCode::new(param(back, "code").expect("a code"))
}

fn native_client(redirects: &[&str]) -> Value {
    json!({
        "application_type": "native",
        "client_name": "Native App",
        "redirect_uris": redirects,
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
    })
}

/// A native app registers a private-use scheme and a loopback redirect with no port. It
/// signs Alice in through its loopback listener on a port it picked, then through its own
/// scheme; the openidconnect crate exchanges each code. Other hosts, paths or schemes are
/// refused, as are private-use schemes for web clients and schemes that are not reverse
/// domain names.
async fn native_apps_use_their_own_scheme_or_loopback_on_any_port(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let _alice = alice_with_password(&app).await;
    let http = rp_http();
    for (what, body) in [
        ("a web client's private-use scheme", json!({"redirect_uris": ["com.example.app:/cb"]})),
        ("a scheme that is no reverse domain", native_client(&["myapp:/cb"])),
        ("javascript", native_client(&["javascript:alert(1)"])),
        ("a fragment", native_client(&["com.example.app:/cb#x"])),
    ] {
        let (status, answer) = register_raw(&app, &body, None).await;
        assert_eq!(status, 400, "{what}: {answer}");
        assert_eq!(answer["error"], "invalid_redirect_uri", "{what}: {answer}");
    }
    let (status, reg) =
        register_raw(&app, &native_client(&["com.example.app:/oauth2redirect", "http://127.0.0.1/callback"]), None)
            .await;
    assert_eq!(status, 201, "{reg}");
    let rp = raw_rp(&app, &reg).await;

    // Loopback, on the port the app got.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let redirect = format!("http://127.0.0.1:{port}/callback");
    let looped = rp.clone().set_redirect_uri(RedirectUrl::new(redirect.clone()).expect("url"));
    let (url, csrf, _, pkce) = begin(&looped, &[], &[]);
    let (back, consent) = sign_in(&app, &url, "alice", "Native App").await;
    assert!(consent.is_some(), "a first sign-in asks");
    assert!(back.as_str().starts_with(&redirect), "{back}");
    let taken = tokio::spawn(take_redirect(listener));
    reqwest::get(back.as_str()).await.expect("the browser follows the redirect");
    let target = taken.await.expect("listener");
    let got = Url::parse(&format!("http://127.0.0.1:{port}{target}")).expect("url");
    let code = code_at(&app, &got, &csrf);
    let tokens = exchange(&looped, &http, code, pkce).await;
    assert!(!tokens.access_token().secret().is_empty());

    // The app's own scheme.
    let own = rp.clone().set_redirect_uri(RedirectUrl::new("com.example.app:/oauth2redirect".into()).expect("url"));
    let (url, csrf, _, pkce) = begin(&own, &[], &[]);
    let (back, _) = sign_in(&app, &url, "alice", "Native App").await;
    assert!(back.as_str().starts_with("com.example.app:/oauth2redirect?"), "{back}");
    let code = code_at(&app, &back, &csrf);
    let tokens = exchange(&own, &http, code, pkce).await;
    assert!(!tokens.access_token().secret().is_empty());

    // Any port, but nothing else: another path, host, scheme or a user part is refused
    // with an error page, not a redirect.
    for wrong in [
        format!("http://127.0.0.1:{port}/other"),
        format!("http://localhost:{port}/callback"),
        format!("https://127.0.0.1:{port}/callback"),
        format!("http://user@127.0.0.1:{port}/callback"),
        "com.example.app:/elsewhere".to_owned(),
        "com.example.evil:/oauth2redirect".to_owned(),
    ] {
        let client = rp.clone().set_redirect_uri(RedirectUrl::new(wrong.clone()).expect("url"));
        let (url, _, _, _) = begin(&client, &[], &[]);
        let r = app.http.get(url.as_str()).send().await.expect("authorize");
        assert_eq!(r.status().as_u16(), 400, "{wrong}");
        assert!(r.headers().get("location").is_none(), "{wrong}: no redirect");
    }
    app.stop().await;
}

/// RFC 8414: `/.well-known/oauth-authorization-server` is the same metadata as OpenID
/// discovery, for the same issuer.
async fn authorization_server_metadata(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let (_, discovery) = discover(&app, &rp_http()).await;
    let r = app.http.get(format!("{}/.well-known/oauth-authorization-server", app.url)).send().await.expect("get");
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap_or("").starts_with("application/json"));
    let metadata: Value = r.json().await.expect("json");
    assert_eq!(metadata, discovery);
    assert_eq!(metadata["issuer"].as_str().map(|i| i.trim_end_matches('/')), Some(app.url.trim_end_matches('/')));
    for field in ["authorization_endpoint", "token_endpoint", "jwks_uri", "registration_endpoint"] {
        assert!(metadata[field].is_string(), "{field}");
    }
    assert_eq!(metadata["code_challenge_methods_supported"], json!(["S256"]));
    app.stop().await;
}

/// Alice signs in to a site with her password: `sichat oidc activity` and her account page
/// list the sign-in to the node's page and the one to the site, with how and from where. A
/// wrong password is counted in `/metrics` by method.
async fn sign_ins_are_listed_for_the_user(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let alice = alice_with_password(&app).await;
    let body = json!({"client_name": "Activity Site", "redirect_uris": [crate::oidc::REDIRECT]});
    let (status, reg) = register_raw(&app, &body, None).await;
    assert_eq!(status, 201, "{reg}");
    let rp = raw_rp(&app, &reg).await;
    let (url, _, _, _) = begin(&rp, &[], &[]);
    let mut browser = crate::oidc::Browser::new();
    crate::oidc_clients::sign_in_with(&mut browser, &app, &url, "alice", "Activity Site").await;

    let out = sichat_e2e::sichat(&alice, &["--json", "oidc", "activity"]).await;
    assert!(out.status.success(), "{}", sichat_e2e::stderr(&out));
    let events = sichat_e2e::json(&out);
    let events = events.as_array().expect("a list");
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0]["site"], "Activity Site", "newest first: {events:?}");
    assert_eq!(events[1]["site"], Value::Null, "the node's own sign-in page");
    for e in events {
        assert_eq!(e["method"], json!(["pwd"]), "{e}");
        assert_eq!(e["address"], "127.0.0.1", "{e}");
    }
    let page = browser.get(&format!("{}/account", app.url)).await;
    assert!(page.body.contains("Recent sign-ins") && page.body.contains("Activity Site"), "{}", page.body);
    assert!(page.body.contains("password"), "{}", page.body);

    let mut stranger = crate::oidc::Browser::new();
    let login = stranger.get(url.as_str()).await;
    let form = [
        ("request", crate::oidc::hidden(&login.body, "request")),
        ("csrf", crate::oidc::hidden(&login.body, "csrf")),
        ("username", "alice".to_owned()),
        ("password", "not her password".to_owned()),
    ];
    assert_eq!(stranger.post(&format!("{}/oidc/login", app.url), &form).await.status, 401);
    let metrics =
        app.http.get(format!("{}/metrics", app.url)).send().await.expect("metrics").text().await.expect("text");
    assert!(metrics.contains("sichat_oidc_signin_failures_total{method=\"password\"}"), "{metrics}");
    let out = sichat_e2e::sichat(&alice, &["--json", "oidc", "activity"]).await;
    assert_eq!(sichat_e2e::json(&out).as_array().map(Vec::len), Some(2), "a failed sign-in is no sign-in");
    app.stop().await;
}
