//! Who may register a client: the node's registration policies (off, invite only, an
//! allow list with public subjects), and clients identified by a metadata document URL
//! (no registration at all).

use crate::oidc::{alice_with_password, assert_error_page, code_from, discover, rp_http, Browser, Rp, REDIRECT};
use crate::oidc_clients::{begin, exchange, raw_rp, register_raw, sichatd_admin, sign_in, urlencode, userinfo_raw};
use openidconnect::core::{CoreAuthenticationFlow, CoreClient};
use openidconnect::{
    ClientId, CsrfToken, IntrospectionUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge, RedirectUrl, TokenResponse,
};
use serde_json::json;
use sichat_e2e::{json, stderr, storage_tests, Backend, TestApp};
use sichat_oidc::clients::RegistrationPolicy;

storage_tests!(
    registration_off,
    registration_invite_only,
    registration_allow_list_and_public_subjects,
    client_id_metadata_documents,
);

// ---- 4. Registration policies ----

async fn registration_off(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |c| c.oidc_registration = RegistrationPolicy::Off).await else {
        return;
    };
    let (status, body) = register_raw(&app, &json!({"redirect_uris": [REDIRECT], "client_name": "Nope"}), None).await;
    assert_eq!((status, body["error"].as_str()), (403, Some("access_denied")), "{body}");
    let count: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM oidc_clients").fetch_one(app.node.db.pool()).await.expect("count");
    assert_eq!(count, 0, "nothing was registered");
    app.stop().await;
}

async fn registration_invite_only(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |c| c.oidc_registration = RegistrationPolicy::InviteOnly).await else {
        return;
    };
    let metadata = json!({"redirect_uris": [REDIRECT], "client_name": "Invited RP"});

    // No initial access token, or a made-up one: 401 invalid_token.
    let (status, body) = register_raw(&app, &metadata, None).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_token")), "no token: {body}");
    let (status, body) = register_raw(&app, &metadata, Some("made-up-token")).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_token")), "a made-up token: {body}");

    // The operator mints one with the real binary; it registers one client.
    let out = sichatd_admin(&app, &["client-token", "--json"]).await;
    assert!(out.status.success(), "sichatd admin client-token: {}", stderr(&out));
    let minted = json(&out);
    let token = minted["initial_access_token"].as_str().expect("initial_access_token").to_owned();
    assert_eq!(minted["registration_endpoint"], format!("{}/oidc/register", app.url));
    let (status, reg) = register_raw(&app, &metadata, Some(&token)).await;
    assert_eq!(status, 201, "{reg}");
    assert!(reg["client_secret"].is_string() && reg["client_id"].is_string(), "{reg}");

    // Single use.
    let (status, body) = register_raw(&app, &metadata, Some(&token)).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_token")), "a used token: {body}");
    let count: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM oidc_clients").fetch_one(app.node.db.pool()).await.expect("count");
    assert_eq!(count, 1, "exactly one client was registered");

    // A client ID metadata document cannot go around the invitation.
    let doc = format!("{}/oidc/jwks", app.url); // any URL: it is refused before fetching
    let auth = format!(
        "{}/oidc/authorize?response_type=code&scope=openid&client_id={}&redirect_uri={}&code_challenge={}&code_challenge_method=S256",
        app.url,
        urlencode(&doc),
        urlencode(REDIRECT),
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    );
    let page = Browser::new().get(&auth).await;
    assert_error_page(&page);
    assert!(page.body.contains("only clients its owner registered"), "{}", page.body);
    app.stop().await;
}

async fn registration_allow_list_and_public_subjects(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |c| {
        c.oidc_registration = RegistrationPolicy::AllowList;
        c.oidc_allowed_hosts = vec!["127.0.0.1".into()];
        c.oidc_subject_type = "public".into();
    })
    .await
    else {
        return;
    };
    let _alice = alice_with_password(&app).await;

    // Hosts off the list are refused, also when mixed with a listed one.
    for uris in [json!(["http://localhost:9/cb"]), json!([REDIRECT, "http://localhost:9/cb"])] {
        let (status, body) = register_raw(&app, &json!({"redirect_uris": uris, "subject_type": "public"}), None).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_redirect_uri")), "{uris}: {body}");
    }

    // On the list: registered, and public subjects unless the client asks for pairwise.
    let mut subs = Vec::new();
    for (name, subject_type) in [("Public A", None), ("Public B", None), ("Pairwise C", Some("pairwise"))] {
        let mut metadata = json!({"redirect_uris": [REDIRECT], "client_name": name});
        if let Some(t) = subject_type {
            metadata["subject_type"] = json!(t);
        }
        let (status, reg) = register_raw(&app, &metadata, None).await;
        assert_eq!(status, 201, "{name}: {reg}");
        assert_eq!(reg["subject_type"], subject_type.unwrap_or("public"), "{name}: {reg}");
        let client = raw_rp(&app, &reg).await;
        let (url, csrf, nonce, pkce) = begin(&client, &[], &[]);
        let (back, _) = sign_in(&app, &url, "alice", name).await;
        let tokens = exchange(&client, &rp_http(), code_from(&app, &back, &csrf), pkce).await;
        let claims =
            tokens.id_token().expect("ID token").claims(&client.id_token_verifier(), &nonce).expect("valid").clone();
        subs.push(claims.subject().as_str().to_owned());
    }
    assert_eq!(subs[0], subs[1], "public subjects: two sites see the same sub");
    assert_ne!(subs[0], subs[2], "a pairwise client sees another sub");
    app.stop().await;
}

// ---- 5. Client ID metadata documents ----

async fn client_id_metadata_documents(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let _alice = alice_with_password(&app).await;
    let http = rp_http();
    let (meta, raw) = discover(&app, &http).await;
    assert_eq!(raw["client_id_metadata_document_supported"], true);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let doc_url = format!("{base}/client.json");
    let impostor_url = format!("{base}/impostor.json");
    let confidential_url = format!("{base}/confidential.json");
    let doc = |client_id: &str, auth: &str| {
        json!({
            "client_id": client_id,
            "client_name": "Doc RP",
            "redirect_uris": [REDIRECT],
            "token_endpoint_auth_method": auth,
            "grant_types": ["authorization_code"],
        })
    };
    let docs = [
        ("/client.json", doc(&doc_url, "none")),
        ("/impostor.json", doc(&doc_url, "none")), // claims to be /client.json
        ("/confidential.json", doc(&confidential_url, "client_secret_basic")),
    ];
    let mut router = axum::Router::new();
    for (path, body) in docs {
        router = router.route(path, axum::routing::get(move || async move { axum::Json(body) }));
    }
    let docs_server = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });

    // A document whose client_id is not its URL, and one that wants a shared secret: an
    // error page at the authorization endpoint, never a redirect.
    for (url, why) in [(&impostor_url, "client_id"), (&confidential_url, "secret")] {
        let stranger = CoreClient::from_provider_metadata(meta.clone(), ClientId::new(url.clone()), None)
            .set_redirect_uri(RedirectUrl::new(REDIRECT.into()).expect("url"));
        let (challenge, _) = PkceCodeChallenge::new_random_sha256();
        let (auth, _, _) = stranger
            .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
            .set_pkce_challenge(challenge)
            .url();
        let page = Browser::new().get(auth.as_str()).await;
        assert_error_page(&page);
        assert!(page.body.contains(why), "{url}: the page says why ({why}): {}", page.body);
    }

    // The URL is the client_id: no registration, no secret.
    let client: Rp = CoreClient::from_provider_metadata(meta.clone(), ClientId::new(doc_url.clone()), None)
        .set_redirect_uri(RedirectUrl::new(REDIRECT.into()).expect("url"))
        .set_introspection_url(
            IntrospectionUrl::new(raw["introspection_endpoint"].as_str().expect("introspection").into()).expect("url"),
        );
    let (url, csrf, nonce, pkce) = begin(&client, &["profile"], &[]);
    let (back, consent) = sign_in(&app, &url, "alice", "Doc RP").await;
    assert!(consent.is_some(), "the consent page names the document's client_name");
    // openidconnect sends client_id and the PKCE verifier in the body, and no secret.
    let tokens = exchange(&client, &http, code_from(&app, &back, &csrf), pkce).await;
    let claims = tokens.id_token().expect("an ID token").claims(&client.id_token_verifier(), &nonce).expect("valid");
    assert_eq!(claims.audiences().first().map(|a| a.as_str()), Some(doc_url.as_str()));
    let (status, info) = userinfo_raw(&app, tokens.access_token().secret()).await;
    assert_eq!((status, info["preferred_username"].as_str()), (200, Some("alice")), "{info}");

    // A public client cannot suddenly claim a secret.
    let r = app
        .http
        .post(format!("{}/oidc/token", app.url))
        .basic_auth(&doc_url, Some("a guess"))
        .form(&[("grant_type", "authorization_code"), ("code", "x"), ("redirect_uri", REDIRECT)])
        .send()
        .await
        .expect("token request");
    assert_eq!(r.status().as_u16(), 401, "client_secret_basic for a document client");

    docs_server.abort();
    app.stop().await;
}
