//! Bad input gets a clear 4xx with a stable code, and leaves nothing behind.

use serde_json::{json, Value};
use sichat_accounts::protocol::*;
use sichat_core::did::Did;
use sichat_core::ids::{new_id, token_hash};
use sichat_core::jws;
use sichat_core::keys::{Ed25519KeyPair, X25519KeyPair};
use sichat_e2e::{storage_tests, Backend, TestApp};
use sqlx::Row;

storage_tests!(
    registration_rejects_bad_input_without_side_effects,
    login_is_mutual_single_use_and_hashed,
    expired_invites_and_rate_limits
);

/// A would-be user with fresh keys.
struct Joiner {
    root: Ed25519KeyPair,
    sign: Ed25519KeyPair,
    agree: X25519KeyPair,
    device_id: String,
}

impl Joiner {
    fn new() -> Self {
        Self {
            root: Ed25519KeyPair::generate(),
            sign: Ed25519KeyPair::generate(),
            agree: X25519KeyPair::generate(),
            device_id: new_id(),
        }
    }

    fn cert(&self, did: &Did, lifetime: i64) -> String {
        DeviceCertificate::issue(
            &self.root,
            did,
            &self.device_id,
            "test",
            &self.sign.public(),
            &self.agree.public(),
            lifetime,
        )
        .expect("cert")
    }

    fn claims(&self, app: &TestApp, challenge: &str, invite: &str, name: &str) -> RegistrationClaims {
        let did = app.node.identity.user_did(name).unwrap_or_else(|_| app.node.identity.did().clone());
        RegistrationClaims {
            aud: app.node.identity.did().to_string(),
            challenge: challenge.into(),
            invite: invite.into(),
            name: name.into(),
            root_key: self.root.public().to_multibase(),
            device_certificate: self.cert(&did, 3600),
            iat: now_secs(),
            key_did: None,
        }
    }

    fn sign(&self, claims: &RegistrationClaims) -> String {
        jws::sign(&self.root, TYP_REGISTER, None, claims).expect("sign")
    }
}

async fn challenge(app: &TestApp) -> String {
    let (status, body) = app.post_json("/api/v1/challenges", &json!({})).await;
    assert_eq!(status, 200);
    body["challenge"].as_str().expect("challenge").to_owned()
}

async fn register(app: &TestApp, request: &str) -> (u16, Value) {
    app.post_json("/api/v1/accounts", &json!({ "request": request })).await
}

/// Counts of every table registration writes to.
async fn footprint(app: &TestApp) -> Vec<i64> {
    let mut counts = Vec::new();
    for sql in [
        "SELECT COUNT(*) AS n FROM acct_users",
        "SELECT COUNT(*) AS n FROM acct_devices",
        "SELECT COUNT(*) AS n FROM acct_issuing_keys",
        "SELECT COUNT(*) AS n FROM acct_invites WHERE status = 'open'",
    ] {
        let row = sqlx::query(sql).fetch_one(app.node.db.pool()).await.expect("count");
        counts.push(row.try_get::<i64, _>("n").expect("n"));
    }
    counts
}

async fn registration_rejects_bad_input_without_side_effects(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let invite = app.owner_invite.clone();
    let before = footprint(&app).await;

    let j = Joiner::new();
    let ch = challenge(&app).await;

    // Each case: what to send, and the status and code the node must answer.
    let mut cases: Vec<(&str, String, u16, &str)> = Vec::new();
    cases.push(("unknown invite", j.sign(&j.claims(&app, &ch, "NoSuchInviteCode", "alice")), 404, "invite_not_found"));
    cases.push(("invalid name", j.sign(&j.claims(&app, &ch, &invite, "Alice!")), 400, "invalid_name"));
    cases.push(("reserved name", j.sign(&j.claims(&app, &ch, &invite, "admin")), 400, "invalid_name"));
    let forged = {
        let mut c = j.claims(&app, &ch, &invite, "alice");
        c.root_key = Ed25519KeyPair::generate().public().to_multibase();
        j.sign(&c)
    };
    cases.push(("signature by another key", forged, 401, "invalid_signature"));
    let expired = {
        let mut c = j.claims(&app, &ch, &invite, "alice");
        c.device_certificate = j.cert(&app.node.identity.user_did("alice").expect("did"), -10);
        j.sign(&c)
    };
    cases.push(("expired device certificate", expired, 401, "certificate_expired"));
    let foreign_cert = {
        let mut c = j.claims(&app, &ch, &invite, "alice");
        let other = Joiner::new();
        c.device_certificate = other.cert(&app.node.identity.user_did("alice").expect("did"), 3600);
        j.sign(&c)
    };
    cases.push(("certificate by another root", foreign_cert, 400, "invalid_certificate"));
    let wrong_aud = {
        let mut c = j.claims(&app, &ch, &invite, "alice");
        c.aud = "did:web:evil.example".into();
        j.sign(&c)
    };
    cases.push(("wrong audience", wrong_aud, 400, "wrong_audience"));
    cases.push(("unknown challenge", j.sign(&j.claims(&app, "made-up", &invite, "alice")), 400, "challenge_invalid"));
    let stale = {
        let mut c = j.claims(&app, &ch, &invite, "alice");
        c.iat -= 3600;
        j.sign(&c)
    };
    cases.push(("stale iat", stale, 400, "invalid_request"));
    // An account is also known as a did:key only when the did:key is the root key it signs with.
    let claimed = {
        let mut c = j.claims(&app, &ch, &invite, "alice");
        c.key_did = Some(Did::key(&Ed25519KeyPair::generate().public()).to_string());
        j.sign(&c)
    };
    cases.push(("alsoKnownAs a did:key it does not hold", claimed, 400, "invalid_request"));
    let not_key = {
        let mut c = j.claims(&app, &ch, &invite, "alice");
        c.key_did = Some("did:web:evil.example".into());
        j.sign(&c)
    };
    cases.push(("alsoKnownAs another DID method", not_key, 400, "invalid_request"));
    let wrong_typ = jws::sign(&j.root, TYP_ROOT_OP, None, &j.claims(&app, &ch, &invite, "alice")).expect("sign");
    cases.push(("JWS of another type", wrong_typ, 400, "malformed_jws"));
    cases.push(("malformed JWS", "not.a.jws".into(), 400, "malformed_jws"));
    cases.push(("two-part JWS", "eyJhbGciOiJFZERTQSJ9.e30".into(), 400, "malformed_jws"));
    let good = j.sign(&j.claims(&app, &ch, &invite, "alice"));
    let (h, p, _) = split3(&good);
    cases.push(("tampered signature", format!("{h}.{p}.{}", "A".repeat(86)), 401, "invalid_signature"));

    for (what, request, status, code) in cases {
        let (got, body) = register(&app, &request).await;
        assert_eq!((got, body["error"].as_str()), (status, Some(code)), "{what}: {body}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: a human message");
        assert_eq!(footprint(&app).await, before, "{what} changed state");
    }

    // Not JSON, the wrong JSON, and too much JSON.
    let raw = |body: String| {
        app.http
            .post(format!("{}/api/v1/accounts", app.url))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let r = raw("{\"request\": ".into()).await.expect("send");
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(r.json::<Value>().await.expect("json")["error"], "malformed_json");
    let r = raw("{\"request\": 42}".into()).await.expect("send");
    assert_eq!(r.status().as_u16(), 422);
    assert_eq!(r.json::<Value>().await.expect("json")["error"], "invalid_json");
    let r = raw(format!("{{\"request\": \"{}\"}}", "x".repeat(100 * 1024))).await.expect("send");
    assert_eq!(r.status().as_u16(), 413);
    assert_eq!(r.json::<Value>().await.expect("json")["error"], "body_too_large");
    assert_eq!(footprint(&app).await, before);

    // The good request, still valid after all that, registers once...
    let (status, body) = register(&app, &good).await;
    assert_eq!(status, 201, "{body}");
    // ...and replaying it fails on the consumed challenge.
    let (status, body) = register(&app, &good).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("challenge_invalid")));
    // A used invite with a fresh challenge, and a taken name with a fresh invite.
    let k = Joiner::new();
    let (status, body) = register(&app, &k.sign(&k.claims(&app, &challenge(&app).await, &invite, "bob"))).await;
    assert_eq!((status, body["error"].as_str()), (409, Some("invite_used")));
    let fresh = app
        .node
        .accounts
        .create_invite(None, CreateInvite { quota: 1, label: None, expires_in_hours: None })
        .await
        .expect("invite");
    let (status, body) = register(&app, &k.sign(&k.claims(&app, &challenge(&app).await, &fresh.code, "alice"))).await;
    assert_eq!((status, body["error"].as_str()), (409, Some("name_taken")));
    let after = footprint(&app).await;
    assert_eq!(after[0], 1, "exactly one account");
    assert_eq!(after[3], 1, "the fresh invite is still open");
    // The invite code itself is never stored.
    let stored: i64 = sqlx::query("SELECT COUNT(*) AS n FROM acct_invites WHERE code_hash = $1")
        .bind(token_hash(&fresh.code))
        .fetch_one(app.node.db.pool())
        .await
        .expect("q")
        .try_get("n")
        .expect("n");
    assert_eq!(stored, 1);

    // Unknown routes and unauthenticated calls get the same error shape.
    let (status, body) = app.get_json("/api/v1/nope").await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
    let (status, body) = app.get_json("/api/v1/me").await;
    assert_eq!((status, body["error"].as_str()), (401, Some("unauthorized")));
    let (status, body) = app.get_json("/users/ghost/did.json").await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
    app.stop().await;
}

fn split3(t: &str) -> (&str, &str, &str) {
    let mut it = t.splitn(3, '.');
    (it.next().unwrap_or(""), it.next().unwrap_or(""), it.next().unwrap_or(""))
}

async fn login_is_mutual_single_use_and_hashed(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let j = Joiner::new();
    let did = app.node.identity.user_did("alice").expect("did");
    let claims = j.claims(&app, &challenge(&app).await, &app.owner_invite, "alice");
    let cert = claims.device_certificate.clone();
    let (status, _) = register(&app, &j.sign(&claims)).await;
    assert_eq!(status, 201);

    // Step 1: the node answers with a nonce signed by the key in its DID document.
    let (status, body) = app.post_json("/api/v1/sessions/challenge", &json!({ "certificate": cert })).await;
    assert_eq!(status, 200, "{body}");
    let ch: LoginChallengeClaims =
        jws::verify(body["challenge"].as_str().expect("jws"), &app.node.identity.public_key(), TYP_LOGIN_CHALLENGE)
            .expect("node-signed");
    assert_eq!(ch.aud, j.device_id);
    assert!(body.get("certificate").is_none(), "nothing newer to hand back");

    let answer = |nonce: &str, aud: &str, key: &Ed25519KeyPair| {
        let c = LoginClaims {
            iss: did.to_string(),
            sub: j.device_id.clone(),
            aud: aud.into(),
            nonce: nonce.into(),
            iat: now_secs(),
            seq: None,
        };
        json!({ "response": jws::sign(key, TYP_LOGIN, None, &c).expect("sign") })
    };
    let node_did = app.node.identity.did().to_string();
    // Wrong key, wrong audience: refused, and the nonce survives them.
    let (status, body) = app.post_json("/api/v1/sessions", &answer(&ch.nonce, &node_did, &j.root)).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_signature")));
    let (status, body) = app.post_json("/api/v1/sessions", &answer(&ch.nonce, "did:web:other.example", &j.sign)).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("wrong_audience")));
    // Step 2 succeeds once.
    let good = answer(&ch.nonce, &node_did, &j.sign);
    let (status, session) = app.post_json("/api/v1/sessions", &good).await;
    assert_eq!(status, 200, "{session}");
    let token = session["token"].as_str().expect("token").to_owned();
    let (status, body) = app.post_json("/api/v1/sessions", &good).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("challenge_invalid")), "a nonce is single-use");

    // The token works, is stored only as a hash, and logout ends it.
    let me = app.http.get(format!("{}/api/v1/me", app.url)).bearer_auth(&token).send().await.expect("me");
    assert_eq!(me.status().as_u16(), 200);
    assert_eq!(me.json::<Value>().await.expect("json")["did"], did.to_string());
    let rows = sqlx::query("SELECT token_hash FROM acct_sessions").fetch_all(app.node.db.pool()).await.expect("q");
    let hashes: Vec<String> = rows.iter().map(|r| r.try_get("token_hash").expect("hash")).collect();
    assert_eq!(hashes, vec![token_hash(&token)]);
    let out = app
        .http
        .delete(format!("{}/api/v1/sessions/current", app.url))
        .bearer_auth(&token)
        .send()
        .await
        .expect("logout");
    assert_eq!(out.status().as_u16(), 204);
    let me = app.http.get(format!("{}/api/v1/me", app.url)).bearer_auth(&token).send().await.expect("me");
    assert_eq!(me.status().as_u16(), 401);

    // A certificate for an unregistered device gets no challenge.
    let stranger = Joiner::new();
    let (status, body) =
        app.post_json("/api/v1/sessions/challenge", &json!({ "certificate": stranger.cert(&did, 3600) })).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_certificate")));
    app.stop().await;
}

async fn expired_invites_and_rate_limits(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |c| {
        c.rate_limit_per_second = 1;
        c.rate_limit_burst = 8;
    })
    .await
    else {
        return;
    };
    // An invite past its expiry is refused as expired.
    sqlx::query("UPDATE acct_invites SET expires_at = 0").execute(app.node.db.pool()).await.expect("expire");
    let j = Joiner::new();
    let (status, body) =
        register(&app, &j.sign(&j.claims(&app, &challenge(&app).await, &app.owner_invite, "alice"))).await;
    assert_eq!((status, body["error"].as_str()), (410, Some("invite_expired")), "{body}");

    // One address gets its burst, then 429 with Retry-After; health checks stay outside.
    let mut limited = None;
    for _ in 0..20 {
        let r = app.http.get(format!("{}/api/v1/me", app.url)).send().await.expect("send");
        if r.status().as_u16() == 429 {
            limited = Some((r.headers().get("retry-after").is_some(), r.json::<Value>().await.expect("json")));
            break;
        }
    }
    let (retry_after, body) = limited.expect("the rate limit answers 429 within 20 requests");
    assert!(retry_after);
    assert_eq!(body["error"], "rate_limited");
    let (status, _) = app.get_json("/healthz").await;
    assert_eq!(status, 200);
    app.stop().await;
}
