//! DPoP (RFC 9449): tokens bound to the client's key. A public client gets DPoP-bound
//! access and refresh tokens with a proof; UserInfo takes the access token only as `DPoP`
//! with a fresh proof of the same key naming the request and the token; refresh needs a
//! proof of that key too. Every malformed, replayed, misdirected or foreign proof is
//! refused with `invalid_dpop_proof` and changes nothing.

use crate::oidc::{alice_with_password, code_from, REDIRECT};
use crate::oidc_clients::{begin, raw_rp, register_raw, sign_in};
use josekit::jwk::Jwk;
use josekit::jws::{JwsHeader, ES256};
use serde_json::{json, Map, Value};
use sichat_core::ids::{b64url, now_ms, random_token};
use sichat_e2e::{storage_tests, Backend, TestApp};
use url::Url;

storage_tests!(
    dpop_binds_tokens_to_the_clients_key,
    clients_that_registered_dpop_must_prove,
    codes_bound_to_a_key_by_dpop_jkt_or_a_pushed_proof
);

/// A client's DPoP key.
struct DpopKey {
    private: Jwk,
    public: Jwk,
}

impl DpopKey {
    fn new() -> Self {
        let pair = ES256.generate_key_pair().expect("key");
        Self { private: pair.to_jwk_private_key(), public: pair.to_jwk_public_key() }
    }

    fn jkt(&self) -> String {
        let map: Map<String, Value> = self.public.as_ref().clone();
        sichat_oidc::provider::thumbprint(&map).expect("thumbprint")
    }

    /// A proof, with `tweak` applied to its header and claims first.
    fn proof_with(
        &self,
        htm: &str,
        htu: &str,
        token: Option<&str>,
        tweak: impl FnOnce(&mut JwsHeader, &mut Value),
    ) -> String {
        let mut header = JwsHeader::new();
        header.set_token_type("dpop+jwt");
        header.set_jwk(self.public.clone());
        let mut claims = json!({"jti": random_token(), "htm": htm, "htu": htu, "iat": now_ms() / 1000});
        if let Some(t) = token {
            claims["ath"] = json!(b64url(&<sha2::Sha256 as sha2::Digest>::digest(t.as_bytes())));
        }
        tweak(&mut header, &mut claims);
        let signer = ES256.signer_from_jwk(&self.private).expect("signer");
        josekit::jws::serialize_compact(claims.to_string().as_bytes(), &header, &signer).expect("sign")
    }

    fn proof(&self, htm: &str, htu: &str, token: Option<&str>) -> String {
        self.proof_with(htm, htu, token, |_, _| {})
    }
}

async fn token_request(app: &TestApp, form: &[(&str, &str)], proofs: &[&str]) -> (u16, Value) {
    let mut req = app.http.post(format!("{}/oidc/token", app.url)).form(form);
    for p in proofs {
        req = req.header("DPoP", *p);
    }
    let r = req.send().await.expect("token");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn userinfo(app: &TestApp, scheme: &str, token: &str, proofs: &[&str]) -> (u16, Value, String) {
    let mut req =
        app.http.get(format!("{}/oidc/userinfo", app.url)).header("authorization", format!("{scheme} {token}"));
    for p in proofs {
        req = req.header("DPoP", *p);
    }
    let r = req.send().await.expect("userinfo");
    let challenge = r.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null), challenge)
}

fn refused(answer: &(u16, Value)) -> bool {
    answer.0 == 400 && answer.1["error"] == "invalid_dpop_proof"
}

async fn dpop_binds_tokens_to_the_clients_key(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let _alice = alice_with_password(&app).await;
    let body = json!({
        "client_name": "DPoP App",
        "redirect_uris": [REDIRECT],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
    });
    let (status, reg) = register_raw(&app, &body, None).await;
    assert_eq!(status, 201, "{reg}");
    let client_id = reg["client_id"].as_str().expect("id").to_owned();
    let (_, discovery) = app.get_json("/.well-known/openid-configuration").await;
    assert_eq!(discovery["dpop_signing_alg_values_supported"], json!(["ES256", "EdDSA", "RS256"]));
    let rp = raw_rp(&app, &reg).await;
    let (url, csrf, _, pkce) = begin(&rp, &["profile", "offline_access"], &[]);
    let (back, _) = sign_in(&app, &url, "alice", "DPoP App").await;
    let code = code_from(&app, &back, &csrf).secret().clone();
    let key = DpopKey::new();
    let token_url = format!("{}/oidc/token", app.url);
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", pkce.secret().as_str()),
        ("client_id", client_id.as_str()),
    ];

    // Bad proofs at the token endpoint are refused before the code is touched.
    let bad_token_proofs = [
        key.proof("GET", &token_url, None),
        key.proof("POST", &format!("{}/oidc/userinfo", app.url), None),
        key.proof_with("POST", &token_url, None, |h, _| h.set_token_type("JWT")),
        key.proof_with("POST", &token_url, None, |_, c| c["iat"] = json!(now_ms() / 1000 - 3600)),
        key.proof_with("POST", &token_url, None, |_, c| c["iat"] = json!(now_ms() / 1000 + 3600)),
        key.proof_with("POST", &token_url, None, |_, c| {
            c.as_object_mut().map(|m| m.remove("jti"));
        }),
        key.proof_with("POST", &token_url, None, |h, _| h.set_jwk(key.private.clone())),
        key.proof_with("POST", &token_url, None, |h, _| h.set_jwk(DpopKey::new().public)),
        "not.a.proof".to_owned(),
        format!("{}x", key.proof("POST", &token_url, None)),
    ];
    for (i, p) in bad_token_proofs.iter().enumerate() {
        let answer = token_request(&app, &form, &[p]).await;
        assert!(refused(&answer), "proof {i}: {answer:?}");
    }
    let one = key.proof("POST", &token_url, None);
    let answer = token_request(&app, &form, &[&one, &one]).await;
    assert!(refused(&answer), "two DPoP headers: {answer:?}");

    let first = key.proof("POST", &token_url, None);
    let (status, tokens) = token_request(&app, &form, &[&first]).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["token_type"], "DPoP");
    let access = tokens["access_token"].as_str().expect("access").to_owned();
    let refresh = tokens["refresh_token"].as_str().expect("refresh").to_owned();

    let info_url = format!("{}/oidc/userinfo", app.url);
    let good = key.proof("GET", &info_url, Some(&access));
    let (status, info, _) = userinfo(&app, "DPoP", &access, &[&good]).await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["preferred_username"], "alice");
    let (status, _, challenge) = userinfo(&app, "DPoP", &access, &[&good]).await;
    assert_eq!(status, 401, "a proof counts once");
    assert!(challenge.starts_with("DPoP error=\"invalid_dpop_proof\""), "{challenge}");
    let (status, answer, _) = userinfo(&app, "Bearer", &access, &[]).await;
    assert_eq!((status, answer["error"].as_str()), (401, Some("invalid_token")), "a bound token is no bearer token");
    let other = DpopKey::new();
    for (what, proof) in [
        ("no ath", key.proof("GET", &info_url, None)),
        ("another token's ath", key.proof("GET", &info_url, Some("other"))),
        ("POST for GET", key.proof("POST", &info_url, Some(&access))),
        ("another key", other.proof("GET", &info_url, Some(&access))),
    ] {
        let (status, answer, _) = userinfo(&app, "DPoP", &access, &[&proof]).await;
        assert_eq!((status, answer["error"].as_str()), (401, Some("invalid_dpop_proof")), "{what}: {answer}");
    }
    let (status, _, _) = userinfo(&app, "DPoP", &access, &[]).await;
    assert_eq!(status, 401, "DPoP with no proof");

    // Introspection names the key.
    let r = app
        .http
        .post(format!("{}/oidc/introspect", app.url))
        .form(&[("token", access.as_str()), ("client_id", client_id.as_str())])
        .send()
        .await
        .expect("introspect");
    let intro: Value = r.json().await.expect("json");
    assert_eq!(intro["active"], true, "{intro}");
    assert_eq!(intro["cnf"]["jkt"], key.jkt(), "{intro}");
    assert_eq!(intro["token_type"], "DPoP");

    // The refresh token is bound to the same key.
    let form =
        [("grant_type", "refresh_token"), ("refresh_token", refresh.as_str()), ("client_id", client_id.as_str())];
    assert!(refused(&token_request(&app, &form, &[]).await), "no proof");
    assert!(refused(&token_request(&app, &form, &[&other.proof("POST", &token_url, None)]).await), "another key");
    // The code's proof again: its jti was recorded with the code's tokens. The refresh token
    // is not spent by the refused attempt.
    assert!(refused(&token_request(&app, &form, &[&first]).await), "a replayed proof");
    let (status, again) = token_request(&app, &form, &[&key.proof("POST", &token_url, None)]).await;
    assert_eq!(status, 200, "the same key: {again}");
    assert_eq!(again["token_type"], "DPoP");
    app.stop().await;
}

/// A client that registered `dpop_bound_access_tokens` gets no token without a proof.
async fn clients_that_registered_dpop_must_prove(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let body = json!({
        "client_name": "Backend",
        "grant_types": ["client_credentials"],
        "dpop_bound_access_tokens": true,
        "scope": "inventory",
    });
    let (status, reg) = register_raw(&app, &body, None).await;
    assert_eq!(status, 201, "{reg}");
    assert_eq!(reg["dpop_bound_access_tokens"], true);
    let (id, secret) = (reg["client_id"].as_str().expect("id"), reg["client_secret"].as_str().expect("secret"));
    let form =
        [("grant_type", "client_credentials"), ("scope", "inventory"), ("client_id", id), ("client_secret", secret)];
    assert!(refused(&token_request(&app, &form, &[]).await));
    let key = DpopKey::new();
    let proof = key.proof("POST", &format!("{}/oidc/token", app.url), None);
    let (status, tokens) = token_request(&app, &form, &[&proof]).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["token_type"], "DPoP");
    assert!(refused(&token_request(&app, &form, &[&proof]).await), "a replayed proof");
    app.stop().await;
}

/// RFC 9449 §10: an authorization request names the key its code is bound to, as
/// `dpop_jkt` or, pushed (PAR), by a DPoP proof at `/oidc/par`. The code is then redeemed
/// only with a proof of that key: none, or another key's, spends it for nothing.
async fn codes_bound_to_a_key_by_dpop_jkt_or_a_pushed_proof(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let _alice = alice_with_password(&app).await;
    let body = json!({
        "client_name": "Bound App",
        "redirect_uris": [REDIRECT],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code"],
    });
    let (_, reg) = register_raw(&app, &body, None).await;
    let client_id = reg["client_id"].as_str().expect("id").to_owned();
    let rp = raw_rp(&app, &reg).await;
    let token_url = format!("{}/oidc/token", app.url);
    let (key, other) = (DpopKey::new(), DpopKey::new());

    // A malformed dpop_jkt is the client's error, shown on the page.
    let (url, _, _, _) = begin(&rp, &["profile"], &[("dpop_jkt", "not a thumbprint")]);
    let page = app.http.get(url.as_str()).send().await.expect("authorize");
    assert_eq!(page.status(), 400);
    assert!(page.text().await.expect("page").contains("dpop_jkt"));

    // A code bound by dpop_jkt, for a new sign-in each time.
    let bound_code = |extra: Vec<(&'static str, String)>| {
        let (app, rp, client_id) = (&app, &rp, client_id.clone());
        async move {
            let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let (url, csrf, _, pkce) = begin(rp, &["profile"], &extra);
            let (back, _) = sign_in(app, &url, "alice", "Bound App").await;
            let code = code_from(app, &back, &csrf).secret().clone();
            vec![
                ("grant_type", "authorization_code".to_owned()),
                ("code", code),
                ("redirect_uri", REDIRECT.to_owned()),
                ("code_verifier", pkce.secret().clone()),
                ("client_id", client_id),
            ]
        }
    };
    for (what, proof) in [("no proof", None), ("another key", Some(other.proof("POST", &token_url, None)))] {
        let form = bound_code(vec![("dpop_jkt", key.jkt())]).await;
        let proofs: Vec<&str> = proof.iter().map(String::as_str).collect();
        let (status, answer) = token_request(&app, &pairs(&form), &proofs).await;
        assert_eq!((status, answer["error"].as_str()), (400, Some("invalid_grant")), "{what}: {answer}");
        // The code is spent: the right key cannot use it afterwards either.
        let (status, _) = token_request(&app, &pairs(&form), &[&key.proof("POST", &token_url, None)]).await;
        assert_eq!(status, 400, "{what}: the code was spent");
    }
    let form = bound_code(vec![("dpop_jkt", key.jkt())]).await;
    let (status, tokens) = token_request(&app, &pairs(&form), &[&key.proof("POST", &token_url, None)]).await;
    assert_eq!((status, tokens["token_type"].as_str()), (200, Some("DPoP")), "{tokens}");

    // Pushed with a proof: the pushed request is bound to the proof's key; a dpop_jkt that
    // names another key is refused.
    let par_url = format!("{}/oidc/par", app.url);
    let (challenge, verifier) = openidconnect::PkceCodeChallenge::new_random_sha256();
    let pushed = |proof: String, extra: Option<(&'static str, String)>| {
        let mut form = vec![
            ("client_id", client_id.clone()),
            ("response_type", "code".to_owned()),
            ("scope", "openid profile".to_owned()),
            ("redirect_uri", REDIRECT.to_owned()),
            ("code_challenge", challenge.as_str().to_owned()),
            ("code_challenge_method", "S256".to_owned()),
            ("state", "s1".to_owned()),
        ];
        form.extend(extra);
        let req = app.http.post(&par_url).header("DPoP", proof).form(&form);
        async move {
            let r = req.send().await.expect("par");
            (r.status().as_u16(), r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, answer) = pushed(key.proof("POST", &par_url, None), Some(("dpop_jkt", other.jkt()))).await;
    assert_eq!((status, answer["error"].as_str()), (400, Some("invalid_dpop_proof")), "{answer}");
    let (status, answer) = pushed(key.proof("POST", &token_url, None), None).await;
    assert_eq!((status, answer["error"].as_str()), (400, Some("invalid_dpop_proof")), "htu of another endpoint");
    let (status, answer) = pushed(key.proof("POST", &par_url, None), None).await;
    assert_eq!(status, 201, "{answer}");
    let mut url = Url::parse(&format!("{}/oidc/authorize", app.url)).expect("url");
    url.query_pairs_mut()
        .append_pair("client_id", &client_id)
        .append_pair("request_uri", answer["request_uri"].as_str().expect("request_uri"));
    let (back, _) = sign_in(&app, &url, "alice", "Bound App").await;
    let code = back.query_pairs().find(|(k, _)| k == "code").map(|(_, v)| v.into_owned()).expect("code");
    let form = vec![
        ("grant_type", "authorization_code".to_owned()),
        ("code", code),
        ("redirect_uri", REDIRECT.to_owned()),
        ("code_verifier", verifier.secret().clone()),
        ("client_id", client_id.clone()),
    ];
    let (status, answer) = token_request(&app, &pairs(&form), &[&other.proof("POST", &token_url, None)]).await;
    assert_eq!((status, answer["error"].as_str()), (400, Some("invalid_grant")), "{answer}");
    app.stop().await;
}

fn pairs<'a>(form: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    form.iter().map(|(k, v)| (*k, v.as_str())).collect()
}
