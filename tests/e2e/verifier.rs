//! Presentations: OpenID4VP between real wallets and a node, offline `sichat verify`, and
//! every reason a careful verifier gives for "no".

use serde_json::{json, Value};
use sichat_core::ids::{b64url, now_ms};
use sichat_core::jws;
use sichat_core::keys::Ed25519KeyPair;
use sichat_core::net::NetPolicy;
use sichat_e2e::{json, sichat, sichat_env, stderr, stdout, storage_tests, Backend, TestApp};
use sichat_issuer::credential::{build, Draft, StatusEntry, VCDM2_CONTEXT};
use sichat_verifier::verify::{Expectation, Options, Outcome, Report};
use sichat_verifier::Verifier;
use sqlx::Row;
use std::path::Path;

storage_tests!(
    present_revoke_present_again,
    presentations_refused_for_every_reason,
    responses_that_are_not_signed_answers_leave_the_request_open
);

const LOCAL: &[(&str, &str)] = &[("SICHAT_ALLOW_LOCAL_NETWORK", "true"), ("SICHAT_PASSPHRASE", sichat_e2e::PASSPHRASE)];

async fn did(wallet: &Path) -> String {
    json(&sichat(wallet, &["--json", "whoami"]).await)["did"].as_str().expect("did").to_owned()
}

/// Alice issues Bob a FriendCredential (offer, receive). Returns its id.
async fn befriend(alice: &Path, bob: &Path, format: &str) -> String {
    let bob_did = did(bob).await;
    let out = sichat(
        alice,
        &[
            "--json",
            "credential",
            "offer",
            "--type",
            "FriendCredential",
            "--to",
            &bob_did,
            "--claim",
            "name=Bob",
            "--format",
            format,
        ],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let uri = json(&out)["offer_uri"].as_str().expect("uri").to_owned();
    let out = sichat(bob, &["--json", "credential", "receive", &uri]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    json(&out)["id"].as_str().expect("id").to_owned()
}

async fn request(carol: &Path, args: &[&str]) -> (String, String) {
    let mut all = vec!["--json", "verifier", "request", "--type", "FriendCredential"];
    all.extend_from_slice(args);
    let out = sichat(carol, &all).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let r = json(&out);
    assert!(r["request_uri"]
        .as_str()
        .is_some_and(|u| u.starts_with("openid4vp://?client_id=decentralized_identifier%3Adid%3Aweb")));
    (r["id"].as_str().expect("id").to_owned(), r["request_uri"].as_str().expect("uri").to_owned())
}

async fn result(carol: &Path, id: &str) -> Value {
    let out = sichat(carol, &["--json", "verifier", "result", id]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    json(&out)
}

/// The issue's own check: Bob presents Alice's FriendCredential to Carol's verifier; Alice
/// revokes it; the same presentation then fails with the reason "revoked". In both formats.
async fn present_revoke_present_again(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let alice = app.join("alice", &app.owner_invite).await;
    let bob = app.join("bob", &app.invite(&alice, 1).await).await;
    let carol = app.join("carol", &app.invite(&alice, 1).await).await;
    let alice_did = did(&alice).await;

    for format in ["vc+jwt", "ldp_vc"] {
        let id = befriend(&alice, &bob, format).await;
        let (req, uri) = request(&carol, &["--issuer", &alice_did]).await;
        assert_eq!(result(&carol, &req).await["status"], "pending");

        let out = sichat_env(&bob, &["--json", "present", &uri, "--select", &id, "--yes"], LOCAL).await;
        assert!(out.status.success(), "{format}: {}", stderr(&out));
        let r = result(&carol, &req).await;
        assert_eq!(r["status"], "verified", "{format}: {r}");
        let checks: Vec<&str> =
            r["result"]["checks"].as_array().expect("checks").iter().filter_map(|c| c["check"].as_str()).collect();
        assert_eq!(checks, ["syntax", "signature", "audience_and_nonce", "holder_binding"]);
        let cred = &r["result"]["credentials"][0];
        assert_eq!((cred["valid"].as_bool(), cred["issuer"].as_str()), (Some(true), Some(alice_did.as_str())));
        for c in cred["checks"].as_array().expect("checks") {
            assert_eq!(c["outcome"], "passed", "{c}");
        }

        // A request is answered once: the same URI now fails, and nothing changes.
        let out = sichat_env(&bob, &["present", &uri, "--select", &id, "--yes"], LOCAL).await;
        assert!(stderr(&out).contains("already answered"), "{}", stderr(&out));
        assert_eq!(result(&carol, &req).await["status"], "verified");

        // Offline: the exported credential verifies with no wallet at all.
        let file = app.dir.path().join(format!("friend-{id}"));
        let out = sichat(&bob, &["credential", "export", &id, "--out", file.to_str().expect("p")]).await;
        assert!(out.status.success(), "{}", stderr(&out));
        let nobody = app.wallet("nobody");
        let f = file.to_str().expect("p");
        let out = sichat_env(
            &nobody,
            &["--json", "verify", f, "--trust-issuer", &alice_did, "--trust-type", "FriendCredential"],
            LOCAL,
        )
        .await;
        assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
        assert_eq!(json(&out)["valid"], true);

        // Alice revokes: Bob's wallet sees it before presenting and keeps the new request
        // open (a revoked credential would only use it up); the file says "revoked".
        assert!(sichat(&alice, &["credential", "revoke", &id]).await.status.success());
        let (req, uri) = request(&carol, &["--issuer", &alice_did]).await;
        let out = sichat_env(&bob, &["present", &uri, "--select", &id, "--yes"], LOCAL).await;
        assert!(!out.status.success());
        assert!(stderr(&out).contains("revoked"), "{}", stderr(&out));
        assert_eq!(result(&carol, &req).await["status"], "pending");
        let out = sichat_env(&nobody, &["verify", f], LOCAL).await;
        assert_eq!(out.status.code(), Some(2));
        assert!(stdout(&out).contains("INVALID") && stdout(&out).contains("revoked"), "{}", stdout(&out));
    }

    // "FriendCredential from anyone I have befriended": Carol trusts issuers she gave a
    // FriendCredential to. Bob's FriendCredential from Alice: refused until Carol
    // befriends Alice.
    let id = befriend(&alice, &bob, "vc+jwt").await;
    let (req, uri) = request(&carol, &["--trust-holders-of", "FriendCredential"]).await;
    let out = sichat_env(&bob, &["present", &uri, "--select", &id, "--yes"], LOCAL).await;
    assert!(stderr(&out).contains("not a trusted issuer"), "{}", stderr(&out));
    assert_eq!(result(&carol, &req).await["status"], "rejected");
    befriend(&carol, &alice, "vc+jwt").await;
    let (req, uri) = request(&carol, &["--trust-holders-of", "FriendCredential"]).await;
    let out = sichat_env(&bob, &["present", &uri, "--select", &id, "--yes"], LOCAL).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(result(&carol, &req).await["status"], "verified");
}

fn did_key_issuer() -> (Ed25519KeyPair, String, String) {
    let key = Ed25519KeyPair::generate();
    let mb = key.public().to_multibase();
    let did = format!("did:key:{mb}");
    let kid = format!("{did}#{mb}");
    (key, did, kid)
}

fn credential(issuer: &str, subject: &str, from_ms: i64, until_ms: Option<i64>, statuses: &[StatusEntry]) -> Value {
    let s = json!({"id": subject, "name": "Bob"});
    build(&Draft {
        id: "0190a1b2-0000-7000-8000-000000000001",
        node_url: "https://example.org",
        issuer,
        type_name: "FriendCredential",
        subject: &s,
        schema_url: Some("https://example.org/schema.json"),
        statuses,
        valid_from_ms: from_ms,
        valid_until_ms: until_ms,
    })
}

fn without_schema(mut vc: Value) -> Value {
    vc.as_object_mut().expect("object").remove("credentialSchema");
    vc
}

fn jwt(key: &Ed25519KeyPair, typ: &str, kid: &str, payload: &Value) -> String {
    jws::sign(key, typ, Some(kid), payload).expect("sign")
}

fn reason(r: &Report, check: &str) -> String {
    let all: Vec<&Report> = std::iter::once(r).chain(r.credentials.iter()).collect();
    all.iter()
        .flat_map(|r| r.checks.iter())
        .find(|c| c.check == check && c.outcome == Outcome::Failed)
        .map(|c| c.reason.clone())
        .unwrap_or_else(|| panic!("no failed {check} check in {}", serde_json::to_string_pretty(r).unwrap_or_default()))
}

/// Each bad input is refused with its own reason, and none changes state or crashes.
async fn presentations_refused_for_every_reason(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let v = Verifier::new(NetPolicy { allow_local: true }, Default::default()).expect("verifier");
    let opts = Options::default();
    let (issuer_key, issuer, kid) = did_key_issuer();
    let (holder_key, holder, holder_kid) = did_key_issuer();
    let now = now_ms();
    let good = without_schema(credential(&issuer, &holder, now - 1000, None, &[]));
    let good_jwt = jwt(&issuer_key, "vc+jwt", &kid, &good);
    let r = v.verify(&good_jwt, &opts).await;
    assert!(r.valid, "{}", serde_json::to_string_pretty(&r).unwrap_or_default());
    // `typ` is a media type: `application/vc+jwt` is `vc+jwt` (RFC 7515 §4.1.9).
    let r = v.verify(&jwt(&issuer_key, "application/vc+jwt", &kid, &good), &opts).await;
    assert!(r.valid, "{}", serde_json::to_string_pretty(&r).unwrap_or_default());
    assert_eq!(r.kind, "credential");
    let why = reason(&v.verify(&jwt(&issuer_key, "JWT", &kid, &good), &opts).await, "syntax");
    assert_eq!(why, "a JWT of typ JWT: expected vc+jwt or vp+jwt", "no Rust debug output in reasons");

    // Forged signature; wrong issuer key; a key of another DID.
    let mut parts: Vec<String> = good_jwt.split('.').map(str::to_owned).collect();
    let mut forged = good.clone();
    forged["credentialSubject"]["name"] = json!("Mallory");
    parts[1] = b64url(forged.to_string().as_bytes());
    assert!(reason(&v.verify(&parts.join("."), &opts).await, "signature").contains("does not verify"));
    let (other_key, _, _) = did_key_issuer();
    assert!(reason(&v.verify(&jwt(&other_key, "vc+jwt", &kid, &good), &opts).await, "signature")
        .contains("does not verify"));
    let (_, _, stranger_kid) = did_key_issuer();
    assert!(reason(&v.verify(&jwt(&issuer_key, "vc+jwt", &stranger_kid, &good), &opts).await, "signature")
        .contains("another DID"));

    // A key that the DID document lists, but not for assertionMethod: a device key.
    let alice = app.join("alice", &app.owner_invite).await;
    let alice_did = did(&alice).await;
    let (_, doc) = app.get_json("/users/alice/did.json").await;
    let device_kid = doc["authentication"][0].as_str().expect("device key").to_owned();
    let vc = without_schema(credential(&alice_did, &holder, now - 1000, None, &[]));
    let by_device = jwt(&issuer_key, "vc+jwt", &device_kid, &vc);
    assert!(reason(&v.verify(&by_device, &opts).await, "signature").contains("not listed under assertionMethod"));

    // Expired, not yet valid.
    let expired = jwt(
        &issuer_key,
        "vc+jwt",
        &kid,
        &without_schema(credential(&issuer, &holder, now - 10_000_000, Some(now - 5_000_000), &[])),
    );
    assert!(reason(&v.verify(&expired, &opts).await, "validity").starts_with("expired"));
    let early =
        jwt(&issuer_key, "vc+jwt", &kid, &without_schema(credential(&issuer, &holder, now + 5_000_000, None, &[])));
    assert!(reason(&v.verify(&early, &opts).await, "validity").starts_with("not yet valid"));

    // A status list that fails its own check: Alice's real list, named by another issuer.
    let (_, list) = {
        let offer = sichat(
            &alice,
            &["--json", "credential", "issue", "--type", "FriendCredential", "--to", &holder, "--claim", "name=Bob"],
        )
        .await;
        assert!(offer.status.success(), "{}", stderr(&offer));
        let row = sqlx::query("SELECT revocation_list FROM issuer_credentials")
            .fetch_one(app.node.db.pool())
            .await
            .expect("row");
        ((), row.try_get::<String, _>("revocation_list").expect("list"))
    };
    let entry =
        [StatusEntry { purpose: "revocation", list_url: format!("{}/users/alice/status/{list}", app.url), index: 7 }];
    let pointed =
        jwt(&issuer_key, "vc+jwt", &kid, &without_schema(credential(&issuer, &holder, now - 1000, None, &entry)));
    let why = reason(&v.verify(&pointed, &opts).await, "status");
    assert!(why.contains("fails its own check") && why.contains("not by the credential's issuer"), "{why}");

    // Unresolvable DIDs, and a did:web on a private address when the local network is not allowed.
    let nowhere = without_schema(credential("did:web:nowhere.invalid", &holder, now - 1000, None, &[]));
    let r = v.verify(&jwt(&issuer_key, "vc+jwt", "did:web:nowhere.invalid#k", &nowhere), &opts).await;
    assert!(reason(&r, "signature").contains("nowhere.invalid"));
    let strict = Verifier::new(NetPolicy { allow_local: false }, Default::default()).expect("verifier");
    let (_, issued) = {
        let out = sichat(
            &alice,
            &["--json", "credential", "issue", "--type", "FriendCredential", "--to", &holder, "--claim", "name=Bob"],
        )
        .await;
        ((), json(&out)["credential"].as_str().expect("jwt").to_owned())
    };
    assert!(v.verify(&issued, &opts).await.valid);
    assert!(reason(&strict.verify(&issued, &opts).await, "signature").contains("loopback or private address"));

    // Malformed JWT and JSON-LD.
    assert!(reason(&v.verify("abc.def", &opts).await, "syntax").contains("malformed JWT"));
    assert!(reason(&v.verify("{\"@context\": [", &opts).await, "syntax").contains("malformed JSON"));
    let mut di = good.clone();
    di["proof"] = json!({"type": "DataIntegrityProof", "cryptosuite": "eddsa-rdfc-2022", "verificationMethod": kid, "proofPurpose": "assertionMethod", "proofValue": "zBad"});
    assert!(!v.verify(&di.to_string(), &opts).await.valid);
    let mut not_vc = good.clone();
    not_vc["@context"] = json!(["https://www.w3.org/2018/credentials/v1"]);
    assert!(reason(&v.verify(&jwt(&issuer_key, "vc+jwt", &kid, &not_vc), &opts).await, "syntax").contains("@context"));

    // Presentations: by someone who is not the subject; wrong audience; replayed nonce.
    let vp = |signer: &Ed25519KeyPair, signer_kid: &str, holder: &str, nonce: &str, aud: &str| {
        let body = json!({
            "@context": [VCDM2_CONTEXT], "type": ["VerifiablePresentation"], "holder": holder,
            "verifiableCredential": [{"@context": [VCDM2_CONTEXT], "type": "EnvelopedVerifiableCredential", "id": format!("data:application/vc+jwt,{good_jwt}")}],
            "nonce": nonce, "aud": aud, "iat": now / 1000, "exp": now / 1000 + 300,
        });
        jwt(signer, "vp+jwt", signer_kid, &body)
    };
    let expect = Options {
        expect: Some(Expectation { nonce: "n-1".into(), audience: "decentralized_identifier:did:web:v".into() }),
        ..Options::default()
    };
    let ok = vp(&holder_key, &holder_kid, &holder, "n-1", "decentralized_identifier:did:web:v");
    assert!(v.verify(&ok, &expect).await.valid);
    let (mallory_key, mallory, mallory_kid) = did_key_issuer();
    let stolen = vp(&mallory_key, &mallory_kid, &mallory, "n-1", "decentralized_identifier:did:web:v");
    assert!(reason(&v.verify(&stolen, &expect).await, "holder_binding").contains("not the subject"));
    let elsewhere = vp(&holder_key, &holder_kid, &holder, "n-1", "decentralized_identifier:did:web:other");
    assert!(reason(&v.verify(&elsewhere, &expect).await, "audience_and_nonce").contains("another audience"));
    let replay = vp(&holder_key, &holder_kid, &holder, "n-0", "decentralized_identifier:did:web:v");
    assert!(reason(&v.verify(&replay, &expect).await, "audience_and_nonce").contains("nonce"));

    // Over HTTP: bad responses change nothing; an oversized body is refused.
    let carol = app.join("carol", &app.invite(&alice, 1).await).await;
    let (req, _) = request(&carol, &[]).await;
    let url = format!("{}/users/carol/oid4vp/responses/{req}", app.url);
    for body in [
        vec![("state", req.as_str())],
        vec![("vp_token", "not json")],
        vec![("vp_token", "{\"jwt\": [\"abc.def\"], \"ldp\": []}")],
        vec![("vp_token", "{\"other\": [\"x\"]}")],
    ] {
        let r = app.http.post(&url).form(&body).send().await.expect("post");
        assert_eq!(r.status().as_u16(), 400);
        let e: Value = r.json().await.expect("json");
        assert_eq!(e["error"], "invalid_request", "{e}");
    }
    let huge = "x".repeat(100 * 1024);
    let r = app.http.post(&url).form(&[("vp_token", huge.as_str())]).send().await.expect("post");
    assert_eq!(r.status().as_u16(), 413);
    assert_eq!(result(&carol, &req).await["status"], "pending", "nothing changed");
    let r = app
        .http
        .post(format!("{}/users/carol/oid4vp/responses/no-such", app.url))
        .form(&[("vp_token", "{}")])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 404);
}

/// Anyone who sees the QR code can fetch the request and post to its `response_uri`. A
/// response that is not its holder's signed answer (alg `none`, signed with another DID's
/// key, made for another request, or with no proof) is refused and counted, and the
/// request stays open: the real holder's `sichat present` then succeeds.
async fn responses_that_are_not_signed_answers_leave_the_request_open(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let alice = app.join("alice", &app.owner_invite).await;
    let bob = app.join("bob", &app.invite(&alice, 1).await).await;
    let carol = app.join("carol", &app.invite(&alice, 1).await).await;
    let bob_did = did(&bob).await;
    let id = befriend(&alice, &bob, "vc+jwt").await;
    let (req, uri) = request(&carol, &[]).await;

    // What the QR code gives away: the request object, with its nonce and response URI.
    let request_uri = url::Url::parse(&uri)
        .expect("uri")
        .query_pairs()
        .find(|(k, _)| k == "request_uri")
        .map(|(_, v)| v.into_owned())
        .expect("request_uri");
    let object = app.http.get(&request_uri).send().await.expect("request").text().await.expect("text");
    let claims: Value = jws::unverified_payload(&object).expect("claims");
    let (nonce, audience) = (claims["nonce"].as_str().expect("nonce"), claims["client_id"].as_str().expect("aud"));
    let response_uri = claims["response_uri"].as_str().expect("response_uri").to_owned();

    let (issuer_key, issuer, issuer_kid) = did_key_issuer();
    let some_vc =
        jwt(&issuer_key, "vc+jwt", &issuer_kid, &without_schema(credential(&issuer, &bob_did, now_ms(), None, &[])));
    let vp = |holder: &str, nonce: &str| {
        json!({
            "@context": [VCDM2_CONTEXT], "type": ["VerifiablePresentation"], "holder": holder,
            "verifiableCredential": [{"@context": [VCDM2_CONTEXT], "type": "EnvelopedVerifiableCredential",
                "id": format!("data:application/vc+jwt,{some_vc}")}],
            "nonce": nonce, "aud": audience, "iat": now_ms() / 1000, "exp": now_ms() / 1000 + 300,
        })
    };
    let (_, bob_doc) = app.get_json("/users/bob/did.json").await;
    let bob_kid = bob_doc["authentication"][0].as_str().expect("bob's device key").to_owned();
    let unsigned = |sig: &str| {
        let header = json!({"alg": "none", "typ": "vp+jwt", "kid": bob_kid});
        format!(
            "{}.{}.{sig}",
            b64url(header.to_string().as_bytes()),
            b64url(vp(&bob_did, nonce).to_string().as_bytes())
        )
    };
    let (mallory_key, mallory, mallory_kid) = did_key_issuer();
    let hostile = [
        json!({"jwt": [unsigned("")]}),
        json!({"jwt": [unsigned("AAAA")]}),
        // Signed, but by a key of another DID than the holder it names.
        json!({"jwt": [jwt(&mallory_key, "vp+jwt", &mallory_kid, &vp(&bob_did, nonce))]}),
        // Mallory's own, properly signed, but made for another request.
        json!({"jwt": [jwt(&mallory_key, "vp+jwt", &mallory_kid, &vp(&mallory, "another-nonce"))]}),
        // A Data Integrity presentation with no proof at all.
        json!({"ldp": [vp(&bob_did, nonce)]}),
    ];
    for token in &hostile {
        let r = app
            .http
            .post(&response_uri)
            .form(&[("vp_token", token.to_string().as_str()), ("state", req.as_str())])
            .send()
            .await
            .expect("post");
        assert_eq!(r.status().as_u16(), 400, "{token}");
        let e: Value = r.json().await.expect("json");
        assert_eq!(e["error"], "invalid_request", "{e}");
        assert!(e["error_description"].as_str().is_some_and(|d| d.contains("stays open")), "{e}");
    }
    let state = result(&carol, &req).await;
    assert_eq!((state["status"].as_str(), state["refused_answers"].as_i64()), (Some("pending"), Some(5)), "{state}");
    let out = sichat(&carol, &["verifier", "result", &req]).await;
    assert!(stdout(&out).contains("5 response(s) refused"), "{}", stdout(&out));

    // The holder answers after all that, with the real wallet.
    let out = sichat_env(&bob, &["--json", "present", &uri, "--select", &id, "--yes"], LOCAL).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let state = result(&carol, &req).await;
    assert_eq!(state["status"], "verified", "{state}");
    app.stop().await;
}
