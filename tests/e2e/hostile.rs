//! Hostile JSON: deeply nested documents and the inputs that made `ssi`/`json-ld` panic,
//! sent where they reach JSON-LD processing (OpenID4VP `direct_post`, `ldp_vc` issuance,
//! a planted credential checked for the consent page, a forward's `presentation` delivered
//! by another node to `POST /didcomm`), and nested or ill-typed JSON at every JSON endpoint. The node answers each with a clear 4xx in the JSON error body (the
//! OAuth format on OAuth endpoints), names no Rust type, and keeps answering.

use crate::mailbox::Device;
use serde_json::{json, Value};
use sichat_core::ids::{b64url, now_ms};
use sichat_core::jws;
use sichat_core::keys::Ed25519KeyPair;
use sichat_e2e::{login, storage_tests, Backend, TestApp};
use sichat_issuer::credential::VCDM2_CONTEXT;
use sichat_messaging::federation_auth::{sign_request, OutgoingRequest};
use sqlx::Row;

storage_tests!(
    json_ld_bombs_are_refused_and_the_node_lives,
    every_json_endpoint_refuses_hostile_json,
    a_bomb_in_a_delivered_presentation_is_refused_and_the_node_lives,
);

/// Words that give away a Rust type in an error message.
const RUST_WORDS: &[&str] =
    &["expected struct", "expected enum", "expected u", "expected i", "expected f", "Some(", "alloc::", "core::"];

/// An attacker's own `did:key`, able to name itself as issuer or holder.
struct Attacker {
    key: Ed25519KeyPair,
    did: String,
    method: String,
}

impl Attacker {
    fn new() -> Self {
        let key = Ed25519KeyPair::generate();
        let mb = key.public().to_multibase();
        Self { did: format!("did:key:{mb}"), method: format!("did:key:{mb}#{mb}"), key }
    }

    fn proof(&self, purpose: &str) -> Value {
        json!({
            "type": "DataIntegrityProof",
            "cryptosuite": "eddsa-rdfc-2022",
            "verificationMethod": self.method,
            "proofPurpose": purpose,
            "created": "2026-01-01T00:00:00Z",
            "proofValue": "z3FXQjecWufY46yg5abdVZsXqLhxhueuSoZgNSARiKBk9czhSePTFehP8c3PGfb6a22gkfUKKsQG5iaPuhbB2DHd",
        })
    }

    /// A credential about `subject`, with a (false) Data Integrity proof by this attacker.
    fn credential(&self, subject: &str, claims: Value) -> Value {
        let mut s = json!({"id": subject});
        s.as_object_mut().expect("object").extend(claims.as_object().cloned().unwrap_or_default());
        json!({
            "@context": [VCDM2_CONTEXT],
            "type": ["VerifiableCredential"],
            "issuer": self.did,
            "validFrom": "2026-01-01T00:00:00Z",
            "credentialSubject": s,
            "proof": self.proof("assertionMethod"),
        })
    }

    /// An `ldp_vp` by this attacker carrying `credential`, with a (false) proof.
    fn ldp_vp(&self, credential: Value) -> Value {
        json!({
            "@context": [VCDM2_CONTEXT],
            "type": ["VerifiablePresentation"],
            "holder": self.did,
            "verifiableCredential": [credential],
            "proof": self.proof("authentication"),
        })
    }

    /// A `vp+jwt` carrying `credential` as a plain object, its signature broken.
    fn vp_jwt(&self, credential: Value, aud: &str) -> String {
        let jwt = self.signed_vp_jwt(credential, aud, "n");
        let (signed, _) = jwt.rsplit_once('.').expect("jws");
        format!("{signed}.{}", "A".repeat(86))
    }

    /// A `vp+jwt` carrying `credential` as a plain object, validly signed by this attacker
    /// for `aud` and `nonce`.
    fn signed_vp_jwt(&self, credential: Value, aud: &str, nonce: &str) -> String {
        let vp = json!({
            "@context": [VCDM2_CONTEXT],
            "type": ["VerifiablePresentation"],
            "holder": self.did,
            "verifiableCredential": [credential],
            "iss": self.did, "aud": aud, "nonce": nonce,
        });
        jws::sign(&self.key, "vp+jwt", Some(&self.method), &vp).expect("sign")
    }
}

/// `{"x:n": {"x:n": … "deep"}}`, `levels` objects deep: a property named by
/// an absolute IRI, which JSON-LD expands (and recurses into) with no context at all.
fn nested(levels: usize) -> Value {
    (0..levels).fold(json!("deep"), |inner, _| json!({ "x:n": inner }))
}

/// Each hostile credential about `subject`: 114 levels deep (the 2 KB request that
/// overflowed a worker's stack), and the inputs that made the JSON-LD libraries panic.
fn hostile_credentials(a: &Attacker, subject: &str) -> Vec<(&'static str, Value)> {
    let mut out = vec![
        ("nested 114 levels", a.credential(subject, json!({"x:n": nested(114)}))),
        ("number 1e308", a.credential(subject, json!({"x:n": 1e308}))),
        ("number -1e308", a.credential(subject, json!({"x:n": -1e308}))),
    ];
    let mut year = a.credential(subject, json!({"name": "x"}));
    year["proof"]["created"] = json!("999-01-01T00:00:00Z");
    out.push(("three-digit year in proof.created", year));
    let mut iri = a.credential(subject, json!({"name": "x"}));
    iri["type"] = json!(["VerifiableCredential", "Friend%edCredential"]);
    out.push(("%ed in a type IRI", iri));
    let mut key = a.credential(subject, json!({"name": "x"}));
    key["credentialSubject"]["a%ed"] = json!("x");
    out.push(("%ed in a property IRI", key));
    out
}

async fn healthy(app: &TestApp) {
    let (status, body) = app.get_json("/healthz").await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")), "the node no longer answers");
}

/// A refusal: 4xx, a JSON body with `error` and a message, and no Rust type named.
fn assert_refused(what: &str, status: u16, body: &str) {
    assert!((400..500).contains(&status), "{what}: {status} {body}");
    let v: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("{what}: not a JSON body: {body}"));
    assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{what}: {body}");
    let message = v["message"].as_str().or(v["error_description"].as_str());
    assert!(message.is_some_and(|m| !m.is_empty()), "{what}: no message: {body}");
    for w in RUST_WORDS {
        assert!(!body.contains(w), "{what}: names a Rust type ({w}): {body}");
    }
}

async fn json_ld_bombs_are_refused_and_the_node_lives(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let alice = app.join("alice", &app.owner_invite).await;
    let http = login(&app, &alice).await;
    let alice_did = app.node.identity.user_did("alice").expect("did").to_string();
    let a = Attacker::new();
    let bombs = hostile_credentials(&a, &a.did);
    assert!(nested(114).to_string().len() < 2048, "the nested credential fits in 2 KB");

    // OpenID4VP direct_post, unauthenticated: a presentation that is itself a bomb, one
    // carrying a bomb, and a vp+jwt whose signature fails carrying a bomb as a plain object.
    let mut answers = Vec::new();
    for (what, vc) in &bombs {
        let mut vp_bomb = a.ldp_vp(json!({"@context": [VCDM2_CONTEXT]}));
        vp_bomb["verifiableCredential"] = json!([vc.clone()]);
        if let Some(n) = vc["credentialSubject"].get("x:n") {
            vp_bomb["x:n"] = n.clone();
        }
        answers.push((format!("ldp_vp with {what}"), json!({"ldp": [a.ldp_vp(vc.clone())]})));
        answers.push((format!("ldp_vp itself {what}"), json!({"ldp": [vp_bomb]})));
        answers.push((format!("vp+jwt carrying {what}"), json!({"jwt": [a.vp_jwt(vc.clone(), "x")]})));
    }
    for (what, vp_token) in answers {
        let created: Value = http
            .post(format!("{}/api/v1/verifier/requests", app.url))
            .json(&json!({"type": "FriendCredential"}))
            .send()
            .await
            .expect("create")
            .json()
            .await
            .expect("json");
        let id = created["id"].as_str().expect("request id");
        let r = app
            .http
            .post(format!("{}/users/alice/oid4vp/responses/{id}", app.url))
            .form(&[("vp_token", vp_token.to_string()), ("state", id.to_owned())])
            .send()
            .await
            .expect("direct_post");
        let status = r.status().as_u16();
        assert_refused(&what, status, &r.text().await.expect("body"));
        healthy(&app).await;
    }

    // ldp_vc issuance by a signed-in user: deep or out-of-range claims of a type whose
    // schema lets anything through.
    let any = json!({"name": "AnythingCredential", "display_name": "Anything", "schema": {"type": "object"}});
    let r = http.post(format!("{}/api/v1/issuer/types", app.url)).json(&any).send().await.expect("type");
    assert!(r.status().is_success(), "{}", r.text().await.unwrap_or_default());
    for (what, claims) in [
        ("nested 60 levels", json!({"x:n": nested(60)})),
        ("number 1e308", json!({"x:n": 1e308})),
        ("%ed in a property IRI", json!({"a%ed": "x"})),
    ] {
        let body = json!({"type": "AnythingCredential", "subject": alice_did, "claims": claims, "format": "ldp_vc"});
        let r = http.post(format!("{}/api/v1/issuer/credentials", app.url)).json(&body).send().await.expect("issue");
        let status = r.status().as_u16();
        assert_refused(&format!("ldp_vc issuance with {what}"), status, &r.text().await.expect("body"));
        healthy(&app).await;
    }

    // A planted credential: refused when it is too deep to ever verify; otherwise kept,
    // and the consent page's check of the user's credentials refuses it without harm.
    for (what, vc) in hostile_credentials(&a, &alice_did) {
        let stored = json!({"id": format!("bomb-{}", what.len()), "format": "ldp_vc", "credential": vc.to_string(), "received_at": 1});
        let r = http.post(format!("{}/api/v1/holder/credentials", app.url)).json(&stored).send().await.expect("put");
        let status = r.status().as_u16();
        let body = r.text().await.expect("body");
        if status != 204 {
            assert_refused(&format!("planting {what}"), status, &body);
        }
    }
    let user_id: String = sqlx::query("SELECT id FROM acct_users WHERE name = 'alice'")
        .fetch_one(app.node.db.pool())
        .await
        .expect("alice")
        .try_get("id")
        .expect("id");
    // What the consent page runs over the user's credentials: it answers (the planted ones
    // simply do not count), and the node is still there.
    app.node.oidc.evidence(&user_id, "openid friends membership").await.expect("evidence");
    healthy(&app).await;
    app.stop().await;
}

/// Every JSON endpoint of the node, whether it needs a session, and whether it answers
/// in the OAuth error format.
const ENDPOINTS: &[(&str, &str, bool)] = &[
    ("POST", "/api/v1/accounts", false),
    ("POST", "/api/v1/sessions/challenge", false),
    ("POST", "/api/v1/sessions", false),
    ("POST", "/oidc/passkey/options", false),
    ("POST", "/oidc/register", false),
    ("POST", "/users/alice/oid4vci/credential", false),
    ("POST", "/api/v1/root-operations", true),
    ("POST", "/api/v1/invites", true),
    ("POST", "/api/v1/issuer/types", true),
    ("POST", "/api/v1/issuer/credentials", true),
    ("POST", "/api/v1/issuer/offers", true),
    ("POST", "/api/v1/holder/credentials", true),
    ("POST", "/api/v1/verifier/requests", true),
    ("POST", "/api/v1/messages", true),
    ("PUT", "/api/v1/messages/policy", true),
    ("PUT", "/api/v1/password", true),
    ("POST", "/api/v1/oidc/approvals", true),
    ("POST", "/api/v1/oidc/passkey-links", true),
];

/// Bodies no endpoint takes: nested, ill-typed, out of range, not JSON.
fn hostile_bodies() -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    for levels in [100, 1000, 100_000] {
        out.push((format!("{levels} nested arrays"), format!("{}{}", "[".repeat(levels), "]".repeat(levels)).into()));
        out.push((
            format!("{levels} nested objects"),
            format!("{}1{}", "{\"a\":".repeat(levels), "}".repeat(levels)).into(),
        ));
    }
    out.push(("an object 100 levels deep in a field".into(), json!({"request": nested(100)}).to_string().into()));
    for (what, body) in [
        ("a number", "42"),
        ("a string", "\"x\""),
        ("null", "null"),
        ("an array", "[1, 2]"),
        ("1e308 everywhere", r#"{"request": 1e308, "type": 1e308, "name": 1e308, "id": 1e308}"#),
        ("1e400", r#"{"request": 1e400}"#),
        ("a huge integer", r#"{"quota": 123456789012345678901234567890}"#),
        ("wrong field types", r#"{"request": 1, "type": [], "name": {}, "id": true, "quota": "x", "format": 7}"#),
        ("truncated", r#"{"request": "#),
        ("a three-digit year", r#"{"proof": {"created": "999-01-01T00:00:00Z"}, "validFrom": "999-01-01"}"#),
        ("%ed in a type", r#"{"type": "Friend%edCredential", "@context": ["https://www.w3.org/ns/credentials/v2"]}"#),
    ] {
        out.push((what.into(), body.as_bytes().to_vec()));
    }
    out.push(("not UTF-8".into(), b"{\"request\": \"\xff\xfe\"}".to_vec()));
    out
}

async fn every_json_endpoint_refuses_hostile_json(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let alice = app.join("alice", &app.owner_invite).await;
    let http = login(&app, &alice).await;
    let bodies = hostile_bodies();
    for (method, path, authenticated) in ENDPOINTS {
        let client = if *authenticated { &http } else { &app.http };
        for (what, body) in &bodies {
            let url = format!("{}{path}", app.url);
            let req = match *method {
                "PUT" => client.put(url),
                _ => client.post(url),
            };
            // A fresh connection each time: one the node closed on an oversized body is not reused.
            let req = req.header("connection", "close").header("content-type", "application/json");
            let r = match req.body(body.clone()).send().await {
                Ok(r) => r,
                // A body over the limit may be answered and the connection closed before
                // it is all written: the node refused it unread.
                Err(e) if body.len() > 64 * 1024 && e.is_request() => continue,
                Err(e) => panic!("{method} {path} with {what}: {e}"),
            };
            let status = r.status().as_u16();
            assert_refused(&format!("{method} {path} with {what}"), status, &r.text().await.expect("body"));
        }
        healthy(&app).await;
    }

    // Path, query and WebSocket-upgrade rejections take the same JSON error body.
    for (what, path) in [
        ("a path segment that is not UTF-8", "/api/v1/verifier/requests/%FF"),
        ("a pickup socket without the upgrade", "/api/v1/messages/ws"),
    ] {
        let r = http.get(format!("{}{path}", app.url)).send().await.expect("send");
        let status = r.status().as_u16();
        assert_refused(what, status, &r.text().await.expect("body"));
    }
    let r = http.post(format!("{}/api/v1/issuer/credentials/%FF/revoke", app.url)).send().await.expect("send");
    let status = r.status().as_u16();
    assert_refused("POST with a path segment that is not UTF-8", status, &r.text().await.expect("body"));
    healthy(&app).await;
    app.stop().await;
}

/// Another node delivers to `POST /didcomm` a forward whose `presentation` attachment
/// carries the 114-level credential: in a `vp+jwt` validly signed for this very forward,
/// or as an `ldp_vp`. Each is refused as a malformed message, nothing is stored, and the
/// node goes on: `/healthz` answers and the next ordinary delivery is taken.
async fn a_bomb_in_a_delivered_presentation_is_refused_and_the_node_lives(backend: Backend) {
    let Some(a) = TestApp::spawn(backend).await else { return };
    let Some(b) = TestApp::spawn(backend).await else { return };
    let alice_w = a.join("alice", &a.owner_invite).await;
    let mallory_w = b.join("mallory", &b.owner_invite).await;
    let (alice, mallory) = (Device::of(&a, &alice_w).await, Device::of(&b, &mallory_w).await);
    let attacker = Attacker::new();
    let (_, bomb) = hostile_credentials(&attacker, &attacker.did).swap_remove(0);
    assert!(bomb.to_string().len() < 4096, "a small request");

    // What B's node key signs and posts to A, as a delivery of mallory's.
    let deliver = |body: String| {
        let identity = b.node.identity.clone();
        let (url, sender) = (format!("{}/didcomm", a.url), mallory.did.clone());
        async move {
            let signed =
                sign_request(&*identity, &OutgoingRequest::delivery(&url, &sender, body.as_bytes()), now_ms() / 1000)
                    .expect("sign");
            let r = reqwest::Client::new()
                .post(url)
                .headers(signed.to_header_map().expect("headers"))
                .body(body)
                .send()
                .await
                .expect("POST /didcomm");
            (r.status().as_u16(), r.text().await.expect("body"))
        }
    };
    let mailbox = || async {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM msg_mailbox")
            .fetch_one(a.node.db.pool())
            .await
            .expect("count")
    };

    for (what, presentation, said) in [
        ("a vp+jwt signed for this forward", None, "nests deeper than"),
        ("an ldp_vp", Some(attacker.ldp_vp(bomb.clone()).to_string()), "not a readable vp+jwt"),
    ] {
        let (id, forward) = mallory.forward(&alice.did, "with a presentation").await;
        let vp = presentation.unwrap_or_else(|| attacker.signed_vp_jwt(bomb.clone(), alice.did.as_str(), &id));
        let mut forward: Value = serde_json::from_str(&forward).expect("forward");
        forward["attachments"].as_array_mut().expect("attachments").push(json!({
            "id": "presentation", "media_type": "application/vp+jwt", "data": {"base64": b64url(vp.as_bytes())},
        }));
        let (status, body) = deliver(forward.to_string()).await;
        let what = format!("POST /didcomm with the 114-level credential in {what}");
        assert_refused(&what, status, &body);
        let answer: Value = serde_json::from_str(&body).expect("json");
        assert_eq!((status, answer["error"].as_str()), (400, Some("malformed_message")), "{what}: {body}");
        let message = answer["message"].as_str().unwrap_or_default();
        assert!(message.contains("presentation attachment") && message.contains(said), "{what}: {message}");
        assert_eq!(mailbox().await, 0, "{what}: nothing is stored");
        healthy(&a).await;
    }

    // The node goes on: an ordinary delivery from the same node is taken.
    let (_, forward) = mallory.forward(&alice.did, "an ordinary message").await;
    let (status, body) = deliver(forward).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(mailbox().await, 1, "the ordinary message is stored");
    healthy(&a).await;
    a.stop().await;
    b.stop().await;
}
