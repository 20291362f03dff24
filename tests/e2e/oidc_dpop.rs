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

storage_tests!(dpop_binds_tokens_to_the_clients_key, clients_that_registered_dpop_must_prove);

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
