//! The wallet as a holder against verifiers and issuers it does not control: whole DCQL
//! queries, credentials whose status rules them out, and one network policy for every
//! fetch (offers, `verify`), with failures that tell a remote party nothing about the
//! network.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde_json::{json, Value};
use sichat_core::ids::{b64url, now_ms};
use sichat_core::jws;
use sichat_core::keys::Ed25519KeyPair;
use sichat_core::net::NetPolicy;
use sichat_e2e::{json, sichat, sichat_env, stderr, stdout, storage_tests, Backend, TestApp};
use sichat_messaging::federation_auth::{sign_request, NodeSigner, OutgoingRequest};
use sichat_verifier::oid4vp::REQUEST_TYP;
use sichat_verifier::verify::{Expectation, Options};
use sichat_verifier::Verifier;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

storage_tests!(
    present_answers_the_whole_dcql_query,
    present_leaves_out_revoked_and_suspended_credentials,
    receive_follows_the_wallet_network_policy,
    verify_reaches_the_wallets_own_node,
    fetch_failures_do_not_describe_the_network
);

pub(crate) async fn did(wallet: &Path) -> String {
    json(&sichat(wallet, &["--json", "whoami"]).await)["did"].as_str().expect("did").to_owned()
}

/// `from` offers `to` a credential of `type_name`, and `to` receives it. Returns its id.
pub(crate) async fn give(from: &Path, to: &Path, type_name: &str, extra: &[&str]) -> String {
    let to_did = did(to).await;
    let mut args = vec!["--json", "credential", "offer", "--type", type_name, "--to", &to_did, "--claim", "name=Bob"];
    args.extend_from_slice(extra);
    let out = sichat(from, &args).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let uri = json(&out)["offer_uri"].as_str().expect("uri").to_owned();
    let out = sichat(to, &["--json", "credential", "receive", &uri]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    json(&out)["id"].as_str().expect("id").to_owned()
}

/// The request object served, and the forms posted back.
type Shared = (Arc<Mutex<String>>, Arc<Mutex<Vec<HashMap<String, String>>>>);

/// A verifier that is not Sichat's: it serves a signed request object with any DCQL query
/// and records what the wallet posts back.
struct OtherVerifier {
    url: String,
    client_id: String,
    key: Arc<Ed25519KeyPair>,
    request: Arc<Mutex<String>>,
    posted: Arc<Mutex<Vec<HashMap<String, String>>>>,
}

impl OtherVerifier {
    async fn start() -> Self {
        let key = Ed25519KeyPair::generate();
        let mb = key.public().to_multibase();
        let client_id = format!("decentralized_identifier:did:key:{mb}");
        let request = Arc::new(Mutex::new(String::new()));
        let posted: Arc<Mutex<Vec<HashMap<String, String>>>> = Arc::new(Mutex::new(Vec::new()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://127.0.0.1:{}", listener.local_addr().expect("addr").port());
        let app = Router::new()
            .route(
                "/request",
                get(|State((r, _)): State<Shared>| async move {
                    let jwt = r.lock().expect("lock").clone();
                    ([("content-type", "application/oauth-authz-req+jwt")], jwt)
                }),
            )
            .route(
                "/response",
                post(|State((_, p)): State<Shared>, Form(form): Form<HashMap<String, String>>| async move {
                    p.lock().expect("lock").push(form);
                    Json(json!({}))
                }),
            )
            .with_state((request.clone(), posted.clone()));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, client_id, key: Arc::new(key), request, posted }
    }

    /// Publish a request with this DCQL query; returns the openid4vp:// URI and the nonce.
    fn ask(&self, dcql: Value) -> (String, String) {
        let nonce = b64url(&rand_bytes());
        let claims = json!({
            "client_id": self.client_id,
            "response_type": "vp_token",
            "response_mode": "direct_post",
            "response_uri": format!("{}/response", self.url),
            "nonce": nonce,
            "state": "s1",
            "dcql_query": dcql,
            "client_metadata": {"client_name": "Other verifier"},
            "exp": now_ms() / 1000 + 300,
        });
        let mb = self.key.public().to_multibase();
        let kid = format!("did:key:{mb}#{mb}");
        *self.request.lock().expect("lock") = jws::sign(&self.key, REQUEST_TYP, Some(&kid), &claims).expect("sign");
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let uri = format!(
            "openid4vp://?client_id={}&request_uri={}",
            enc(&self.client_id),
            enc(&format!("{}/request", self.url))
        );
        (uri, nonce)
    }

    fn posted(&self) -> Vec<HashMap<String, String>> {
        self.posted.lock().expect("lock").clone()
    }
}

fn rand_bytes() -> [u8; 16] {
    *uuid::Uuid::new_v4().as_bytes()
}

fn query(id: &str, type_name: &str) -> Value {
    json!({"id": id, "format": "jwt_vc_json", "meta": {"type_values": [[type_name]]}})
}

/// Every presentation in the posted vp_token, by query id, checked by an independent
/// verifier: signed by the holder, for this verifier and nonce, each credential valid.
async fn checked(v: &OtherVerifier, form: &HashMap<String, String>, nonce: &str) -> HashMap<String, Vec<String>> {
    let token: Value = serde_json::from_str(form.get("vp_token").expect("vp_token")).expect("JSON vp_token");
    assert_eq!(form.get("state").map(String::as_str), Some("s1"));
    let verifier = Verifier::new(NetPolicy { allow_local: true }, Default::default()).expect("verifier");
    let opts = Options {
        expect: Some(Expectation { nonce: nonce.into(), audience: v.client_id.clone() }),
        ..Options::default()
    };
    let mut out = HashMap::new();
    for (id, vps) in token.as_object().expect("vp_token is an object keyed by query id") {
        let vps = vps.as_array().expect("an array of presentations");
        assert_eq!(vps.len(), 1, "one presentation for {id}");
        let report = verifier.verify(vps[0].as_str().expect("vp+jwt"), &opts).await;
        assert!(report.valid, "{id}: {}", serde_json::to_string_pretty(&report).unwrap_or_default());
        out.insert(id.clone(), report.credentials.iter().flat_map(|c| c.types.clone()).collect());
    }
    out
}

/// A verifier asks for two credentials at once (OpenID4VP 1.0 §6): the wallet answers both
/// or, when it lacks one, answers nothing and says which part it cannot answer.
async fn present_answers_the_whole_dcql_query(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let alice = app.join("alice", &app.owner_invite).await;
    let bob = app.join("bob", &app.invite(&alice, 1).await).await;
    give(&alice, &bob, "FriendCredential", &[]).await;
    let v = OtherVerifier::start().await;

    // Both required: a FriendCredential and the MembershipCredential of Bob's node.
    let (uri, nonce) =
        v.ask(json!({"credentials": [query("friend", "FriendCredential"), query("member", "MembershipCredential")]}));
    let out = sichat(&bob, &["--json", "present", &uri, "--yes"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&out)["presented"].as_array().map(Vec::len), Some(2), "{}", stdout(&out));
    let posted = v.posted();
    assert_eq!(posted.len(), 1);
    let got = checked(&v, &posted[0], &nonce).await;
    assert!(got["friend"].iter().any(|t| t == "FriendCredential"), "{got:?}");
    assert!(got["member"].iter().any(|t| t == "MembershipCredential"), "{got:?}");

    // One of two required credentials missing: nothing is sent, and the missing part named.
    let (uri, _) =
        v.ask(json!({"credentials": [query("friend", "FriendCredential"), query("club", "ClubCredential")]}));
    let out = sichat(&bob, &["present", &uri, "--yes"]).await;
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(e.contains("\"club\"") && e.contains("ClubCredential") && e.contains("presents nothing"), "{e}");
    assert_eq!(v.posted().len(), 1, "nothing was posted");

    // credential_sets: the first option that can be met; an optional set is not sent.
    let (uri, nonce) = v.ask(json!({
        "credentials": [query("club", "ClubCredential"), query("friend", "FriendCredential"), query("member", "MembershipCredential")],
        "credential_sets": [{"options": [["club"], ["friend"]]}, {"options": [["member"]], "required": false}],
    }));
    let out = sichat(&bob, &["present", &uri, "--yes"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let posted = v.posted();
    let got = checked(&v, &posted[1], &nonce).await;
    assert_eq!(got.keys().collect::<Vec<_>>(), ["friend"], "{got:?}");

    // A required set no option can meet.
    let (uri, _) = v.ask(json!({
        "credentials": [query("club", "ClubCredential"), query("friend", "FriendCredential")],
        "credential_sets": [{"options": [["friend"]]}, {"options": [["club"]]}],
    }));
    let out = sichat(&bob, &["present", &uri, "--yes"]).await;
    assert!(stderr(&out).contains("credential set 2"), "{}", stderr(&out));

    // A value constraint on a claim is a constraint: Bob's friend credential names Bob.
    let mut named = query("friend", "FriendCredential");
    named["claims"] = json!([{"path": ["credentialSubject", "name"], "values": ["Alice"]}]);
    let (uri, _) = v.ask(json!({"credentials": [named]}));
    let out = sichat(&bob, &["present", &uri, "--yes"]).await;
    assert!(stderr(&out).contains("credentialSubject.name"), "{}", stderr(&out));

    // A malformed query is refused before anything is sent.
    let (uri, _) = v.ask(
        json!({"credentials": [query("friend", "FriendCredential")], "credential_sets": [{"options": [["nope"]]}]}),
    );
    let out = sichat(&bob, &["present", &uri, "--yes"]).await;
    assert!(stderr(&out).contains("malformed"), "{}", stderr(&out));
    assert_eq!(v.posted().len(), 2);
}

pub(crate) async fn request_from(carol: &Path, issuer: &str) -> (String, String) {
    let out = sichat(carol, &["--json", "verifier", "request", "--type", "FriendCredential", "--issuer", issuer]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let r = json(&out);
    (r["id"].as_str().expect("id").to_owned(), r["request_uri"].as_str().expect("uri").to_owned())
}

pub(crate) async fn request_status(carol: &Path, id: String) -> Value {
    json(&sichat(carol, &["--json", "verifier", "result", &id]).await)["status"].clone()
}

/// A revoked or suspended credential is not offered: presenting it would use up the
/// verifier's request for a certain "no". The request stays open for a good one.
async fn present_leaves_out_revoked_and_suspended_credentials(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let alice = app.join("alice", &app.owner_invite).await;
    let bob = app.join("bob", &app.invite(&alice, 1).await).await;
    let carol = app.join("carol", &app.invite(&alice, 1).await).await;
    let alice_did = did(&alice).await;
    let request = || request_from(&carol, &alice_did);
    let status = |id: String| request_status(&carol, id);

    let revoked = give(&alice, &bob, "FriendCredential", &[]).await;
    assert!(sichat(&alice, &["credential", "revoke", &revoked]).await.status.success());
    let (req, uri) = request().await;
    // Chosen by id: refused by the wallet, the request untouched.
    let out = sichat(&bob, &["present", &uri, "--select", &revoked, "--yes"]).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains(&format!("{revoked} is revoked")), "{}", stderr(&out));
    // Not chosen: left out, with the reason; no other credential answers.
    let out = sichat(&bob, &["present", &uri, "--yes"]).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains(&format!("Left out {revoked}: it is revoked")), "{}", stderr(&out));
    assert_eq!(status(req.clone()).await, "pending");

    // A suspended one likewise; a good one answers the same request.
    let suspended = give(&alice, &bob, "FriendCredential", &["--suspendable"]).await;
    assert!(sichat(&alice, &["credential", "suspend", &suspended]).await.status.success());
    let out = sichat(&bob, &["present", &uri, "--select", &suspended, "--yes"]).await;
    assert!(stderr(&out).contains(&format!("{suspended} is suspended")), "{}", stderr(&out));
    assert_eq!(status(req.clone()).await, "pending");
    let good = give(&alice, &bob, "FriendCredential", &[]).await;
    let out = sichat(&bob, &["--json", "present", &uri, "--yes"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&out)["presented"], json!([good]));
    assert_eq!(status(req).await, "verified");

    // Resumed, it is offered again.
    assert!(sichat(&alice, &["credential", "resume", &suspended]).await.status.success());
    let (req, uri) = request().await;
    let out = sichat(&bob, &["present", &uri, "--select", &suspended, "--yes"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(status(req).await, "verified");
}

/// A did:key wallet, given no flag, reaches no local address an offer names: it neither
/// fetches the issuer's metadata nor posts the pre-authorized code there. The offer stays
/// redeemable, and the error names the flag that allows it.
async fn receive_follows_the_wallet_network_policy(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let alice = app.join("alice", &app.owner_invite).await;
    let dana = app.wallet("dana");
    assert!(sichat(&dana, &["init"]).await.status.success());
    let offer = |by_value: bool| {
        let alice = alice.clone();
        async move {
            let mut args = vec![
                "--json",
                "credential",
                "offer",
                "--type",
                "FriendCredential",
                "--to",
                "anyone",
                "--claim",
                "name=D",
            ];
            if by_value {
                args.push("--by-value");
            }
            let out = sichat(&alice, &args).await;
            assert!(out.status.success(), "{}", stderr(&out));
            json(&out)[if by_value { "offer_by_value" } else { "offer_uri" }].as_str().expect("uri").to_owned()
        }
    };
    for by_value in [false, true] {
        let uri = offer(by_value).await;
        let out = sichat(&dana, &["credential", "receive", &uri]).await;
        assert!(!out.status.success(), "by_value={by_value}: {}", stdout(&out));
        let e = stderr(&out);
        assert!(e.contains("loopback or private") && e.contains("--allow-local-network"), "{e}");
        // The code is single-use: it still works, so it never reached the token endpoint.
        let out = sichat(&dana, &["--allow-local-network", "--json", "credential", "receive", &uri]).await;
        assert!(out.status.success(), "{}", stderr(&out));
    }
}

/// The README's `sichat verify friend.jwt` from a wallet whose node is on localhost: the
/// wallet's own node is reachable for `verify` as for every command. Without a wallet, the
/// refusal says which flag allows it.
async fn verify_reaches_the_wallets_own_node(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let alice = app.join("alice", &app.owner_invite).await;
    let bob = app.join("bob", &app.invite(&alice, 1).await).await;
    let id = give(&alice, &bob, "FriendCredential", &[]).await;
    let file = app.dir.path().join("friend.jwt");
    let f = file.to_str().expect("path");
    assert!(sichat(&bob, &["credential", "export", &id, "--out", f]).await.status.success());
    let out = sichat(&bob, &["verify", f]).await;
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("VALID: FriendCredential"), "{}", stdout(&out));

    let nobody = app.wallet("nobody");
    let out = sichat(&nobody, &["verify", f]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(stderr(&out).contains("--allow-local-network"), "{}", stderr(&out));
    let out = sichat_env(&nobody, &["verify", f], &[("SICHAT_ALLOW_LOCAL_NETWORK", "true")]).await;
    assert!(out.status.success(), "{}", stdout(&out));
}

struct Stranger {
    key: Ed25519KeyPair,
    did: String,
}

impl NodeSigner for Stranger {
    fn key_id(&self) -> String {
        format!("{}#node-key-1", self.did)
    }
    fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message)
    }
}

/// A request names a node whose DID cannot be fetched: the answer says "could not fetch"
/// and nothing about how (refused, timed out, reset), which would make the node a port
/// scanner for anyone.
async fn fetch_failures_do_not_describe_the_network(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let stranger = Stranger { key: Ed25519KeyPair::generate(), did: format!("did:web:127.0.0.1%3A{closed}") };
    let sender = sichat_core::did::Did::parse(&format!("{}:users:mallory", stranger.did)).expect("did");
    let target = format!("{}/didcomm", app.url);
    let body = json!({"id": "x", "type": "https://didcomm.org/routing/2.0/forward"}).to_string();
    let signed =
        sign_request(&stranger, &OutgoingRequest::delivery(&target, &sender, body.as_bytes()), now_ms() / 1000)
            .expect("sign");
    let r = reqwest::Client::new()
        .post(&target)
        .headers(signed.to_header_map().expect("headers"))
        .body(body)
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status().as_u16(), 401);
    let answer: Value = r.json().await.expect("json");
    let message = answer["message"].as_str().unwrap_or_default().to_ascii_lowercase();
    assert!(message.contains("could not fetch"), "{answer}");
    for detail in ["refused", "os error", "tcp", "connect", "timed out", "dns"] {
        assert!(!message.contains(detail), "the answer describes the network ({detail}): {answer}");
    }
}
