//! Moving an account from node A to node B (`sichat move`): the DID follows (a did:webvh
//! log entry signed by the root key), what the user issued before keeps verifying and can
//! be revoked on B through A's old status-list URLs, the wallet and its devices sign in on
//! B, and A keeps answering for the old DIDs. Every bad step changes nothing on either node.

use crate::holder::{did, give, request_from, request_status};
use crate::messaging::{delivered, inbox, send, texts};
use crate::portable_did::{challenge, device_cert, first, issue, issuer_of, text, webvh_state, Raw};
use serde_json::{json, Value};
use sichat_accounts::protocol::*;
use sichat_core::did::Did;
use sichat_core::jws;
use sichat_core::keys::Ed25519KeyPair;
use sichat_core::net::NetPolicy;
use sichat_core::webvh;
use sichat_e2e::{json, sichat, stderr, storage_tests, Backend, TestApp};
use sichat_verifier::{Options, Verifier};
use sqlx::Row;

storage_tests!(a_moved_account_keeps_its_identity_and_what_it_issued, bad_moves_change_nothing_on_either_node);

/// A verifier that has never seen any of these DIDs (nothing cached).
fn fresh_verifier() -> Verifier {
    Verifier::new(NetPolicy { allow_local: true }, Default::default()).expect("verifier")
}

pub(crate) async fn verdict(credential: &str) -> (bool, String) {
    let report = fresh_verifier().verify(credential, &Options::default()).await;
    (report.valid, serde_json::to_string(&report).unwrap_or_default())
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query(sql).fetch_one(app.node.db.pool()).await.expect("count").try_get::<i64, _>(0).expect("n")
}

async fn a_moved_account_keeps_its_identity_and_what_it_issued(backend: Backend) {
    let Some(a) = TestApp::spawn(backend).await else { return };
    let Some(b) = TestApp::spawn(backend).await else { return };
    let alice = a.join("alice", &a.owner_invite).await;
    let bob = a.wallet("bob");
    let out = sichat(&bob, &["--json", "init"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let bob_did = json(&out)["did"].as_str().expect("did").to_owned();
    let old_web = json(&sichat(&alice, &["--json", "whoami"]).await)["did"].as_str().expect("did").to_owned();

    // Issued under did:web on A before anything else, then under did:webvh on A.
    let (web_id, web_cred) = issue(&a, &alice, &bob_did, "vc+jwt").await;
    assert_eq!(issuer_of(&web_cred), old_web);
    let out = sichat(&alice, &["--json", "did", "upgrade"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let old_webvh = json(&out)["did"].as_str().expect("did").to_owned();
    let (vh_id, vh_cred) = issue(&a, &alice, &bob_did, "vc+jwt").await;
    let (_, ldp_cred) = issue(&a, &alice, &bob_did, "ldp_vc").await;
    assert_eq!(issuer_of(&vh_cred), old_webvh);

    // Alice's phone: a second device, made before the move.
    let phone = a.wallet("alice-phone");
    let out =
        sichat(&alice, &["--json", "device", "add", "--name", "phone", "--out", phone.to_str().expect("path")]).await;
    assert!(out.status.success(), "device add: {}", stderr(&out));

    // Carol, on A, writes before the move; alice reads it there.
    let carol = a.join("carol", &a.invite(&alice, 1).await).await;
    let id = send(&carol, &old_web, "before the move", &[]).await;
    delivered(&carol, &id).await;
    assert!(texts(&inbox(&alice, &[]).await).contains(&"before the move".to_owned()));
    // Carol gives alice a credential: alice holds it, about her DID on A.
    let held = give(&carol, &alice, "FriendCredential", &[]).await;
    // One more she has not fetched when she moves: it moves with her mailbox.
    let id = send(&carol, &old_web, "waiting during the move", &[]).await;
    delivered(&carol, &id).await;

    let out = sichat(&alice, &["--json", "move", "--to", &b.url, "--invite", &b.owner_invite]).await;
    assert!(out.status.success(), "move: {}", stderr(&out));
    let moved = json(&out);
    assert_eq!(moved["old_server_told"], true, "{moved}");
    let new_did = moved["did"].as_str().expect("did").to_owned();
    let scid = old_webvh.split(':').nth(2).expect("scid");
    assert!(new_did.starts_with(&format!("did:webvh:{scid}:")), "same SCID: {new_did}");
    let b_host = b.url.trim_start_matches("http://").replace(':', "%3A");
    assert!(new_did.contains(&b_host), "{new_did} is on B");

    // The wallet follows: it signs in on B, and its devices are there.
    let who = json(&sichat(&alice, &["--json", "whoami"]).await);
    assert_eq!(who["server"], b.url.as_str());
    let out = sichat(&alice, &["--json", "device", "list"]).await;
    assert!(out.status.success(), "device list on B: {}", stderr(&out));

    // B's log verifies for the new DID; A's log ends with the same move and resolves the
    // old DID to the new document.
    let (status, _, on_b) = text(&b, "/users/alice/did.jsonl").await;
    assert_eq!(status, 200);
    let log_b = webvh::verify_log(&new_did, &on_b).await.expect("B's log verifies");
    let aka = log_b.document["alsoKnownAs"].to_string();
    assert!(aka.contains(&old_webvh) && aka.contains(&old_web), "the new DID names the old ones: {aka}");
    let (status, _, on_a) = text(&a, "/users/alice/did.jsonl").await;
    assert_eq!(status, 200, "A keeps serving the log");
    assert_eq!(on_a.trim(), on_b.trim(), "both nodes serve the same log");
    let log_a = webvh::verify_log(&old_webvh, &on_a).await.expect("the old DID resolves");
    assert_eq!(log_a.document["id"], new_did.as_str());
    // A's did:web document stays, naming the new DID and B's messaging endpoint.
    let (status, doc) = a.get_json("/users/alice/did.json").await;
    assert_eq!(status, 200);
    assert!(doc["alsoKnownAs"].to_string().contains(&new_did), "{doc}");
    assert!(doc["service"].to_string().contains(&format!("{}/didcomm", b.url)), "{doc}");

    // Everything issued before the move verifies, by a verifier that never saw it.
    for c in [&web_cred, &vh_cred, &ldp_cred] {
        let (valid, report) = verdict(c).await;
        assert!(valid, "{report}");
    }
    // A redirects the old status-list URLs to B.
    let no_redirects = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let payload: Value = serde_json::from_slice(
        &sichat_core::ids::b64url_decode(vh_cred.split('.').nth(1).expect("payload")).expect("b64"),
    )
    .expect("json");
    let status_url = payload["credentialStatus"][0]["statusListCredential"]
        .as_str()
        .or(payload["credentialStatus"]["statusListCredential"].as_str())
        .expect("status list")
        .to_owned();
    assert!(status_url.starts_with(&a.url), "{status_url}");
    let r = no_redirects.get(&status_url).send().await.expect("GET");
    assert_eq!(r.status().as_u16(), 308);
    let location = r.headers()["location"].to_str().expect("location").to_owned();
    assert!(location.starts_with(&b.url), "{location}");

    // Revoking on B is seen by verifiers that only know A's URL.
    for id in [&web_id, &vh_id] {
        let out = sichat(&alice, &["credential", "revoke", id]).await;
        assert!(out.status.success(), "revoke on B: {}", stderr(&out));
    }
    for c in [&web_cred, &vh_cred] {
        let (valid, report) = verdict(c).await;
        assert!(!valid && report.contains("revoked"), "{report}");
    }
    // New credentials on B name the moved DID and verify.
    let (_, fresh) = issue(&b, &alice, &bob_did, "vc+jwt").await;
    assert_eq!(issuer_of(&fresh), new_did);
    let (valid, report) = verdict(&fresh).await;
    assert!(valid, "{report}");

    // Carol still writes to the DID she knows: A's copy of alice's document names B's
    // endpoint, A tells its own outbox so (421 recipient_moved), and B takes the message for
    // the DID alice had on A. It arrives once; so does one to the new DID.
    for (to, text) in [(&old_web, "after the move"), (&new_did, "to the new DID")] {
        let id = send(&carol, to, text, &[]).await;
        delivered(&carol, &id).await;
    }
    let listings = [inbox(&alice, &[]).await, inbox(&alice, &["--requests"]).await];
    let got: Vec<String> = listings.iter().flat_map(texts).collect();
    for text in ["waiting during the move", "after the move", "to the new DID"] {
        assert_eq!(got.iter().filter(|t| *t == text).count(), 1, "{text:?} once in {listings:?}");
    }

    // What alice holds still presents from B: under the DID it is about (her did:web on A,
    // whose document A keeps serving), so the holder binding holds.
    let (req, uri) = request_from(&carol, &did(&carol).await).await;
    let out = sichat(&alice, &["--json", "present", &uri, "--yes"]).await;
    assert!(out.status.success(), "present after the move: {}", stderr(&out));
    assert_eq!(json(&out)["presented"], json!([held]));
    assert_eq!(request_status(&carol, req).await, "verified");

    // The phone's wallet still names A: A answers that the account moved, and the phone
    // follows to B on its own (B re-certified it in the move), where the messages wait for it.
    let out = sichat(&phone, &["device", "list"]).await;
    assert!(out.status.success(), "the phone follows: {}", stderr(&out));
    assert!(stderr(&out).contains("this wallet follows it"), "{}", stderr(&out));
    let who = json(&sichat(&phone, &["--json", "whoami"]).await);
    assert_eq!(who["server"], b.url.as_str(), "{who}");
    let mut on_phone = texts(&inbox(&phone, &[]).await);
    on_phone.extend(texts(&inbox(&phone, &["--requests"]).await));
    assert!(on_phone.contains(&"after the move".to_owned()), "{on_phone:?}");
    let id = send(&phone, &did(&carol).await, "from the phone, on B", &[]).await;
    delivered(&phone, &id).await;

    // A holds no usable secret of the account, and refuses its sessions.
    assert_eq!(count(&a, "SELECT COUNT(*) FROM acct_users WHERE status = 'moved'").await, 1);
    let alices = "(SELECT id FROM acct_users WHERE name = 'alice')";
    assert_eq!(count(&a, &format!("SELECT COUNT(*) FROM acct_sessions WHERE user_id = {alices}")).await, 0);
    let erased =
        &format!("SELECT COUNT(*) FROM acct_issuing_keys WHERE user_id = {alices} AND LENGTH(sealed_secret) > 0");
    assert_eq!(count(&a, erased).await, 0);

    // A answers for the account for `moved_account_days` (180) after the move, then no more.
    // 181 days, in milliseconds.
    let aged = "UPDATE acct_moves SET finished_at = finished_at - 15638400000 WHERE direction = 'out'";
    sqlx::query(aged).execute(a.node.db.pool()).await.expect("age the move");
    let r = no_redirects.get(&status_url).send().await.expect("GET");
    assert_eq!(r.status().as_u16(), 410, "old status lists are gone");
    for path in ["/users/alice/did.json", "/users/alice/did.jsonl"] {
        let (status, body) = a.get_json(path).await;
        assert_eq!((status, body["error"].as_str()), (410, Some("account_moved")), "{path}: {body}");
    }
}

/// A ticket of B and the sealed export of A, by hand.
async fn ticket(b: &TestApp) -> MoveTicket {
    let (status, body) = b.post_json("/api/v1/moves/tickets", &json!({"invite": b.owner_invite})).await;
    assert_eq!(status, 201, "{body}");
    serde_json::from_value(body).expect("ticket")
}

async fn export(a: &TestApp, alice: &Raw, signer: &Ed25519KeyPair, b: &TestApp, t: &MoveTicket) -> (u16, Value) {
    let claims = RootOpClaims {
        iss: alice.did.to_string(),
        aud: a.node.identity.did().to_string(),
        challenge: challenge(a).await,
        iat: now_secs(),
        op: RootOperation::MoveOut {
            to: b.url.clone(),
            ticket: t.ticket.clone(),
            recipient_key: t.recipient_key.clone(),
        },
        did_log_entry: None,
    };
    let request = jws::sign(signer, TYP_ROOT_OP, Some(&alice.did.url("root")), &claims).expect("sign");
    a.post_json("/api/v1/moves/export", &json!({ "request": request })).await
}

async fn import(
    b: &TestApp,
    t: &MoveTicket,
    signer: &Ed25519KeyPair,
    did: &str,
    entry: &str,
    certs: Vec<String>,
) -> (u16, Value) {
    let claims = MoveInClaims {
        iss: did.to_owned(),
        aud: t.node_did.clone(),
        challenge: challenge(b).await,
        iat: now_secs(),
        ticket: t.ticket.clone(),
        entry: entry.to_owned(),
        certificates: certs,
    };
    let request = jws::sign(signer, TYP_MOVE_IN, None, &claims).expect("sign");
    b.post_json("/api/v1/moves/import", &json!({ "request": request })).await
}

fn refused(got: (u16, Value), status: u16, says: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    assert!(got.1["message"].as_str().unwrap_or_default().contains(says), "{} does not say {says:?}", got.1);
}

async fn bad_moves_change_nothing_on_either_node(backend: Backend) {
    let Some(a) = TestApp::spawn(backend).await else { return };
    let Some(b) = TestApp::spawn(backend).await else { return };
    let alice = Raw::register(&a).await;
    let template = format!("did:webvh:{{SCID}}:{}", alice.did.as_str().trim_start_matches("did:web:"));

    // A DID bound to A cannot move.
    let t = ticket(&b).await;
    refused(export(&a, &alice, &alice.root, &b, &t).await, 400, "sichat did upgrade");
    let (old_did, entry) = first(webvh_state(&a, &alice.did, &template).await, &[&alice.root], &alice.root, true);
    let (status, body) = alice.root_op(&a, RootOperation::UpgradeDid { entry }, None).await;
    assert_eq!(status, 200, "{body}");

    // Tickets need a real invite.
    let (status, _) = b.post_json("/api/v1/moves/tickets", &json!({"invite": "nope"})).await;
    assert_eq!(status, 404);
    // An export not signed by the root key.
    let stranger = Ed25519KeyPair::generate();
    refused(export(&a, &alice, &stranger, &b, &t).await, 401, "signature");
    let moves = "SELECT COUNT(*) FROM acct_moves";
    assert_eq!(count(&a, moves).await, 0, "nothing recorded on A");

    let (status, body) = export(&a, &alice, &alice.root, &b, &t).await;
    assert_eq!(status, 200, "{body}");
    let bundle = body["bundle"].as_str().expect("bundle").to_owned();
    // One move at a time, and no change to the account while it moves.
    refused(export(&a, &alice, &alice.root, &b, &t).await, 409, "in flight");
    let cert = device_cert(&alice.root, &alice.did, &sichat_core::ids::new_id());
    refused(alice.root_op(&a, RootOperation::AddDevice { certificate: cert }, None).await, 409, "moving");
    // Nor does A issue for it: the credential would not reach B.
    let user_id: String = sqlx::query("SELECT id FROM acct_users WHERE name = 'alice'")
        .fetch_one(a.node.db.pool())
        .await
        .expect("alice")
        .try_get("id")
        .expect("id");
    let me = sichat_accounts::AuthDevice {
        user_id,
        user_name: "alice".into(),
        device_id: "any".into(),
        token_hash: String::new(),
    };
    let req = sichat_issuer::service::IssueRequest {
        type_name: "FriendCredential".into(),
        subject: alice.did.to_string(),
        claims: serde_json::from_value(json!({"name": "Bob"})).expect("claims"),
        valid_until: None,
        suspendable: false,
        format: Default::default(),
    };
    let refused_issue = a.node.issuer.issue(&me, req).await.expect_err("no issuance while moving");
    assert!(refused_issue.to_string().contains("moving"), "{refused_issue}");
    assert_eq!(count(&a, "SELECT COUNT(*) FROM issuer_credentials").await, 0);

    // A bundle changed on the way, or sealed for another ticket, is refused.
    let mut parts: Vec<String> = bundle.split('.').map(str::to_owned).collect();
    parts[3] = parts[3].chars().rev().collect();
    let tampered = parts.join(".");
    let draft_req = |bundle: &str, ticket: &str| json!({"ticket": ticket, "bundle": bundle});
    let (status, body) = b.post_json("/api/v1/moves/draft", &draft_req(&tampered, &t.ticket)).await;
    assert_eq!(status, 400, "{body}");
    let other = ticket(&b).await;
    let (status, body) = b.post_json("/api/v1/moves/draft", &draft_req(&bundle, &other.ticket)).await;
    assert_eq!(status, 400, "a bundle sealed to another ticket's key: {body}");

    let (status, body) = b.post_json("/api/v1/moves/draft", &draft_req(&bundle, &t.ticket)).await;
    assert_eq!(status, 200, "{body}");
    let draft: MoveDraft = serde_json::from_value(body).expect("draft");
    let web = Did::parse(&draft.web_did).expect("did");
    let certs: Vec<String> = draft
        .devices
        .iter()
        .map(|d| {
            let sign = sichat_core::keys::Ed25519Public::from_multibase(&d.sign_key).expect("key");
            let agree = sichat_core::keys::X25519Public::from_multibase(&d.agree_key).expect("key");
            DeviceCertificate::issue(&alice.root, &web, &d.id, &d.name, &sign, &agree, 3600).expect("cert")
        })
        .collect();
    let good = webvh::append(&draft.last_entry, draft.state.clone(), json!({}), &alice.root).expect("entry").line;
    let users = "SELECT COUNT(*) FROM acct_users";

    // The move signed by another key; an entry signed by another key; an entry whose
    // document is not the account's; a certificate missing.
    refused(import(&b, &t, &stranger, &draft.did, &good, certs.clone()).await, 401, "signature");
    let forged = webvh::append(&draft.last_entry, draft.state.clone(), json!({}), &stranger).expect("entry").line;
    refused(import(&b, &t, &alice.root, &draft.did, &forged, certs.clone()).await, 400, "DID log entry");
    let mut other_state = draft.state.clone();
    other_state["service"] = json!([]);
    let wrong = webvh::append(&draft.last_entry, other_state, json!({}), &alice.root).expect("entry").line;
    refused(import(&b, &t, &alice.root, &draft.did, &wrong, certs.clone()).await, 400, "document");
    refused(import(&b, &t, &alice.root, &draft.did, &good, Vec::new()).await, 400, "certif");
    assert_eq!(count(&b, users).await, 0, "nothing created on B");
    let (status, _) = b.get_json("/users/alice/did.json").await;
    assert_eq!(status, 404);

    let (status, body) = import(&b, &t, &alice.root, &draft.did, &good, certs.clone()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(count(&b, users).await, 1);
    // The ticket is used: a replay changes nothing.
    refused(import(&b, &t, &alice.root, &draft.did, &good, certs).await, 409, "done");
    assert_eq!(count(&b, users).await, 1);

    // A hears of the move only with the entry that made it, for the node it went to.
    let done = |to: &str| RootOperation::MoveDone { to: to.to_owned(), did: draft.did.clone() };
    refused(alice.root_op(&a, done("https://elsewhere.example"), Some(good.clone())).await, 409, "no move");
    refused(alice.root_op(&a, done(&b.url), Some(forged)).await, 400, "DID log entry");
    assert_eq!(count(&a, "SELECT COUNT(*) FROM acct_users WHERE status = 'active'").await, 1, "A keeps the account");
    let (status, body) = alice.root_op(&a, done(&b.url), Some(good)).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = alice.root_op(&a, done(&b.url), None).await;
    assert_eq!((status, body["error"].as_str()), (410, Some("account_moved")), "{body}");
    let log = webvh::verify_log(&old_did, &text(&a, "/users/alice/did.jsonl").await.2).await.expect("log");
    assert_eq!(log.document["id"], draft.did.as_str());
}
