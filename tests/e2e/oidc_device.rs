//! The device authorization grant (RFC 8628): a TV or CLI client polls while its user
//! approves the code with the real `sichat` binary or on the node's /oidc/device page (sign
//! in, then a consent naming the code), or refuses it; the `openidconnect` crate runs the
//! device's side. Bad polls, replays, expired and foreign codes are refused.

use crate::oidc::{alice_with_password, amr, discover, hidden, rp_http, Browser, PASSWORD};
use crate::oidc_clients::register_raw;
use openidconnect::core::{CoreClient, CoreDeviceAuthorizationResponse};
use openidconnect::{ClientId, DeviceAuthorizationUrl, Nonce, OAuth2TokenResponse, Scope, TokenResponse};
use serde_json::{json, Value};
use sichat_e2e::{sichat, stderr, storage_tests, Backend, TestApp};
use std::time::Duration;

storage_tests!(
    a_tv_signs_in_approved_by_the_wallet,
    a_device_approved_or_refused_on_the_page,
    right_codes_at_once_never_lock_an_address_out
);

const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

async fn tv_client(app: &TestApp, name: &str) -> String {
    let body = json!({
        "client_name": name,
        "grant_types": [DEVICE_GRANT, "refresh_token"],
        "token_endpoint_auth_method": "none",
    });
    let (status, reg) = register_raw(app, &body, None).await;
    assert_eq!(status, 201, "{reg}");
    reg["client_id"].as_str().expect("client_id").to_owned()
}

async fn device_authorization(app: &TestApp, client_id: &str, scope: &str) -> (u16, Value) {
    let r = app
        .http
        .post(format!("{}/oidc/device_authorization", app.url))
        .form(&[("client_id", client_id), ("scope", scope)])
        .send()
        .await
        .expect("device authorization");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn poll(app: &TestApp, client_id: &str, device_code: &str) -> (u16, Value) {
    let r = app
        .http
        .post(format!("{}/oidc/token", app.url))
        .form(&[("grant_type", DEVICE_GRANT), ("device_code", device_code), ("client_id", client_id)])
        .send()
        .await
        .expect("token");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// The TV starts the flow through openidconnect and polls; Alice approves its code with
/// `sichat login approve` a moment later. The TV gets an ID token saying she approved
/// from her wallet (`amr` swk, mca), and a refresh token; its code works once.
async fn a_tv_signs_in_approved_by_the_wallet(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let alice = alice_with_password(&app).await;
    let client_id = tv_client(&app, "Living Room TV").await;
    let http = rp_http();
    let (meta, raw) = discover(&app, &http).await;
    let endpoint = raw["device_authorization_endpoint"].as_str().expect("advertised").to_owned();
    let tv = CoreClient::from_provider_metadata(meta, ClientId::new(client_id.clone()), None)
        .set_device_authorization_url(DeviceAuthorizationUrl::new(endpoint).expect("url"));
    let details: CoreDeviceAuthorizationResponse = tv
        .exchange_device_code()
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("offline_access".into()))
        .request_async(&http)
        .await
        .expect("device authorization");
    let code = details.user_code().secret().clone();
    let complete = details.verification_uri_complete().expect("complete URI").secret().clone();
    assert!(complete.ends_with(&code), "{complete}");

    let wallet = alice.clone();
    let approver = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        sichat(&wallet, &["--json", "login", "approve", &complete, "--yes"]).await
    });
    let tokens = tv
        .exchange_device_access_token(&details)
        .expect("token endpoint")
        .request_async(&http, tokio::time::sleep, Some(Duration::from_secs(60)))
        .await
        .unwrap_or_else(|e| panic!("device token: {e:?}"));
    let out = approver.await.expect("approver");
    assert!(out.status.success(), "{}", stderr(&out));
    let id_token = tokens.id_token().expect("an ID token");
    let verifier = tv.id_token_verifier();
    let claims = id_token.claims(&verifier, |_: Option<&Nonce>| Ok(())).expect("a valid ID token");
    assert_eq!(amr(claims), ["swk", "mca"]);
    let info: Value = app
        .http
        .get(format!("{}/oidc/userinfo", app.url))
        .bearer_auth(tokens.access_token().secret())
        .send()
        .await
        .expect("userinfo")
        .json()
        .await
        .expect("json");
    assert_eq!(info["preferred_username"], "alice", "{info}");
    assert_eq!(info["sub"].as_str(), Some(claims.subject().as_str()));
    assert!(tokens.refresh_token().is_some(), "offline_access gives a refresh token");
    assert!(!tokens.access_token().secret().is_empty());

    let (status, answer) = poll(&app, &client_id, details.device_code().secret()).await;
    assert_eq!((status, answer["error"].as_str()), (400, Some("invalid_grant")), "redeemed once: {answer}");
    app.stop().await;
}

/// Sign in on /oidc/device with the code typed in a browser.
async fn approve_on_page(app: &TestApp, browser: &mut Browser, code: &str, decision: &str) -> String {
    let page = browser.get(&format!("{}/oidc/device?user_code={code}", app.url)).await;
    assert_eq!(page.status, 200);
    let csrf = hidden(&page.body, "csrf");
    let form = [("user_code", code.to_lowercase()), ("csrf", csrf)];
    let login = browser.post(&format!("{}/oidc/device", app.url), &form).await;
    let consent_url = if login.status == 303 {
        login.location(app).expect("consent")
    } else {
        assert_eq!(login.status, 200, "{}", login.body);
        assert!(login.body.contains("Hall Display"), "the sign-in page names the device's app: {}", login.body);
        let form = [
            ("request", hidden(&login.body, "request")),
            ("csrf", hidden(&login.body, "csrf")),
            ("username", "alice".to_owned()),
            ("password", PASSWORD.to_owned()),
        ];
        let signed_in = browser.post(&format!("{}/oidc/login", app.url), &form).await;
        assert_eq!(signed_in.status, 303, "{}", signed_in.body);
        signed_in.location(app).expect("consent")
    };
    let consent = browser.get(consent_url.as_str()).await;
    assert_eq!(consent.status, 200, "{}", consent.body);
    assert!(consent.body.contains(code), "the consent page shows the device's code: {}", consent.body);
    let form = [
        ("request", hidden(&consent.body, "request")),
        ("csrf", hidden(&consent.body, "csrf")),
        ("decision", decision.to_owned()),
    ];
    let done = browser.post(&format!("{}/oidc/consent", app.url), &form).await;
    assert_eq!(done.status, 200, "{}", done.body);
    done.body
}

/// Two displays ask; Alice signs in on /oidc/device and allows one, refuses the other. A
/// device that polls too fast is slowed down; a wrong code is refused on the page; another
/// client's, an unknown or an expired device code is refused at the token endpoint; a
/// client that did not register the grant may not start it.
async fn a_device_approved_or_refused_on_the_page(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let _alice = alice_with_password(&app).await;
    let client_id = tv_client(&app, "Hall Display").await;
    let other = tv_client(&app, "Other Display").await;
    let (status, allowed) = device_authorization(&app, &client_id, "openid profile").await;
    assert_eq!(status, 200, "{allowed}");
    assert_eq!(allowed["interval"], 5);
    assert_eq!(allowed["expires_in"], 600);
    let (_, refused) = device_authorization(&app, &client_id, "openid").await;
    let device_code = |v: &Value| v["device_code"].as_str().expect("device_code").to_owned();
    let user_code = |v: &Value| v["user_code"].as_str().expect("user_code").to_owned();

    let (status, answer) = poll(&app, &client_id, &device_code(&allowed)).await;
    assert_eq!((status, answer["error"].as_str()), (400, Some("authorization_pending")), "{answer}");
    let (status, answer) = poll(&app, &client_id, &device_code(&allowed)).await;
    assert_eq!((status, answer["error"].as_str()), (400, Some("slow_down")), "{answer}");
    let (_, answer) = poll(&app, &other, &device_code(&allowed)).await;
    assert_eq!(answer["error"], "invalid_grant", "another client's code: {answer}");
    let (_, answer) = poll(&app, &client_id, "not-a-device-code").await;
    assert_eq!(answer["error"], "invalid_grant");

    let mut browser = Browser::new();
    let page = browser.get(&format!("{}/oidc/device", app.url)).await;
    let wrong = [("user_code", "ZZZZ-ZZZZ".to_owned()), ("csrf", hidden(&page.body, "csrf"))];
    let answer = browser.post(&format!("{}/oidc/device", app.url), &wrong).await;
    assert_eq!(answer.status, 404, "{}", answer.body);
    assert!(answer.body.contains("check the code on the device"), "{}", answer.body);
    let forged = [("user_code", user_code(&allowed)), ("csrf", "not-the-cookie".to_owned())];
    assert_eq!(browser.post(&format!("{}/oidc/device", app.url), &forged).await.status, 403);

    let done = approve_on_page(&app, &mut browser, &user_code(&allowed), "allow").await;
    assert!(done.contains("Device signed in"), "{done}");
    // Signed in already: the next code goes straight to its consent page.
    let done = approve_on_page(&app, &mut browser, &user_code(&refused), "deny").await;
    assert!(done.contains("Device refused"), "{done}");
    // The same code cannot be answered twice.
    let page = browser.get(&format!("{}/oidc/device", app.url)).await;
    let again = [("user_code", user_code(&allowed)), ("csrf", hidden(&page.body, "csrf"))];
    assert_eq!(browser.post(&format!("{}/oidc/device", app.url), &again).await.status, 404);

    tokio::time::sleep(Duration::from_millis(10_100)).await;
    let (status, tokens) = poll(&app, &client_id, &device_code(&allowed)).await;
    assert_eq!(status, 200, "{tokens}");
    assert!(tokens["id_token"].is_string() && tokens["access_token"].is_string(), "{tokens}");
    let (_, answer) = poll(&app, &client_id, &device_code(&allowed)).await;
    assert_eq!(answer["error"], "invalid_grant", "once: {answer}");
    let (_, answer) = poll(&app, &client_id, &device_code(&refused)).await;
    assert_eq!(answer["error"], "access_denied", "{answer}");

    let (_, expiring) = device_authorization(&app, &client_id, "openid").await;
    sqlx::query("UPDATE oidc_device_grants SET expires_at = 0 WHERE user_code = $1")
        .bind(user_code(&expiring))
        .execute(app.node.db.pool())
        .await
        .expect("expire");
    let (_, answer) = poll(&app, &client_id, &device_code(&expiring)).await;
    assert_eq!(answer["error"], "expired_token", "{answer}");

    let body = json!({"client_name": "Web", "redirect_uris": ["https://web.example/cb"]});
    let (_, web) = register_raw(&app, &body, None).await;
    let web_id = web["client_id"].as_str().expect("id");
    let r = app
        .http
        .post(format!("{}/oidc/device_authorization", app.url))
        .basic_auth(web_id, web["client_secret"].as_str())
        .form(&[("scope", "openid")])
        .send()
        .await
        .expect("post");
    let answer: Value = r.json().await.expect("json");
    assert_eq!(answer["error"], "unauthorized_client", "{answer}");
    app.stop().await;
}

/// Many users behind one address (a NAT) type right codes at once: each takes a guess from
/// the address's limit until its code is found. Those refused while the limit was full are
/// no failures: once the others are found, the address is not locked out.
async fn right_codes_at_once_never_lock_an_address_out(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let client_id = tv_client(&app, "Lobby Screen").await;
    let (_, answer) = device_authorization(&app, &client_id, "openid").await;
    let code = answer["user_code"].as_str().expect("user_code").to_owned();
    let ip = "198.51.100.9";
    let approvals = sichat_oidc::approval::Approvals::new(app.node.oidc.clone(), app.node.accounts.clone());
    // Ten right codes in flight hold the whole limit...
    sqlx::query("INSERT INTO oidc_approval_failures (address, failures, window_start) VALUES ($1, 10, $2)")
        .bind(ip)
        .bind(sichat_core::ids::now_ms())
        .execute(app.node.db.pool())
        .await
        .expect("in flight");
    // ...so these are refused meanwhile,
    for _ in 0..12 {
        let refused = approvals.device(&code, ip).await.err().map(|e| e.code);
        assert_eq!(refused, Some("too_many_attempts"));
    }
    // and once the ten are found and handed back, a right code goes through.
    sqlx::query("UPDATE oidc_approval_failures SET failures = failures - 10 WHERE address = $1")
        .bind(ip)
        .execute(app.node.db.pool())
        .await
        .expect("found");
    let found = approvals.device(&code, ip).await;
    assert!(found.is_ok(), "{:?}", found.err());
    app.stop().await;
}
