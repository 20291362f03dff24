//! 1→many and many→1: a standby node keeps an account's messages while its node is down
//! and hands them over when it is back; removing it is one command.

use crate::messaging::{delivered, inbox, send, settled, texts};
use serde_json::{json, Value};
use sichat_core::jws;
use sichat_e2e::{json as out_json, sichat, stderr, storage_tests, Backend, TestApp};
use sqlx::Row;

storage_tests!(
    a_standby_keeps_messages_while_the_node_is_down,
    a_standby_takes_only_what_the_root_key_granted,
    a_standby_mirrors_what_verifies_the_account,
    a_full_standby_refuses_and_the_sender_keeps_the_message
);

async fn did_document(app: &TestApp, name: &str) -> Value {
    let (status, doc) = app.get_json(&format!("/users/{name}/did.json")).await;
    assert_eq!(status, 200, "{doc}");
    doc
}

fn didcomm_endpoints(doc: &Value) -> Vec<String> {
    doc["service"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["type"] == "DIDCommMessaging")
        .filter_map(|s| s["serviceEndpoint"]["uri"].as_str().map(str::to_owned))
        .collect()
}

async fn held_at(app: &TestApp) -> i64 {
    let row =
        sqlx::query("SELECT COUNT(*) AS n FROM msg_standby_held").fetch_one(app.node.db.pool()).await.expect("count");
    row.try_get("n").expect("n")
}

/// Alice's node A has Bob's node B as standby. Carol (node C) writes to her while A runs,
/// then while A is down: that one goes to B, which hands it over once A is back; Alice
/// gets both, once each. Then Alice removes the standby: her DID document lists A alone,
/// and B keeps nothing more for her.
async fn a_standby_keeps_messages_while_the_node_is_down(backend: Backend) {
    let Some(a) = TestApp::spawn(backend).await else { return };
    let Some(b) = TestApp::spawn_with(backend, |c| c.msg_standby_handover_secs = 1).await else { return };
    let Some(c) = TestApp::spawn(backend).await else { return };
    let alice = a.join("alice", &a.owner_invite).await;
    let bob = b.join("bob", &b.owner_invite).await;
    let carol = c.join("carol", &c.owner_invite).await;
    let invite = b.invite(&bob, 1).await;
    let out = sichat(&alice, &["--json", "standby", "add", "--server", &b.url, "--invite", &invite]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let endpoints = didcomm_endpoints(&did_document(&a, "alice").await);
    assert_eq!(endpoints.len(), 2, "{endpoints:?}");
    assert!(endpoints[0].starts_with(&a.url) && endpoints[1].starts_with(&b.url), "A first, then B: {endpoints:?}");
    let alice_did = out_json(&sichat(&alice, &["--json", "whoami"]).await)["did"].as_str().expect("did").to_owned();

    let first = send(&carol, &alice_did, "while A is up", &[]).await;
    delivered(&carol, &first).await;
    let port = a.url.rsplit(':').next().and_then(|p| p.parse::<u16>().ok()).expect("port");
    let stopped = a.stop_keeping().await;
    let second = send(&carol, &alice_did, "while A is down", &[]).await;
    delivered(&carol, &second).await;
    assert_eq!(held_at(&b).await, 1, "B keeps it");

    let a = stopped.serve_at(([127, 0, 0, 1], port).into()).await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while held_at(&b).await > 0 {
        assert!(tokio::time::Instant::now() < deadline, "B never handed it over");
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    let mut got = texts(&inbox(&alice, &["--requests"]).await);
    got.sort();
    assert_eq!(got, ["while A is down", "while A is up"], "each once");

    // A move would leave the standby handing over to a node the account left: refused.
    let out = sichat(&alice, &["move", "--to", &c.url, "--invite", &c.invite(&carol, 1).await]).await;
    assert!(!out.status.success() && stderr(&out).contains("standby"), "{}", stderr(&out));

    // many→1.
    let out = sichat(&alice, &["--json", "standby", "remove"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out_json(&out)["standby_told"], true);
    assert_eq!(didcomm_endpoints(&did_document(&a, "alice").await).len(), 1);
    let open: i64 = sqlx::query("SELECT COUNT(*) AS n FROM msg_standbys WHERE ended_at IS NULL")
        .fetch_one(b.node.db.pool())
        .await
        .expect("count")
        .try_get("n")
        .expect("n");
    assert_eq!(open, 0, "B stands by for no one");
    let out = sichat(&alice, &["--json", "standby", "show"]).await;
    assert_eq!(out_json(&out)["standby"], Value::Null);
    a.stop().await;
    b.stop().await;
    c.stop().await;
}

/// A grant not signed by the account's root key (a device key, a stranger's key, or for
/// another node) is refused and spends no invite; a handover from a node that is not the
/// account's standby is refused and stores nothing.
async fn a_standby_takes_only_what_the_root_key_granted(backend: Backend) {
    let Some(a) = TestApp::spawn(backend).await else { return };
    let Some(b) = TestApp::spawn(backend).await else { return };
    let alice = a.join("alice", &a.owner_invite).await;
    let bob = b.join("bob", &b.owner_invite).await;
    let invite = b.invite(&bob, 1).await;
    let secrets = sichat_e2e::unseal(&alice);
    let did = secrets.profile["did"].as_str().expect("did").to_owned();
    let root = secrets.root.expect("root");
    let grant = |aud: &str| json!({"iss": did, "aud": aud, "primary": format!("{}/didcomm", a.url), "iat": sichat_accounts::protocol::now_secs()});
    let b_did = b.node.identity.did().to_string();
    let stranger = sichat_core::keys::Ed25519KeyPair::generate();
    let root_kid = format!("{did}#root");
    let cases = [
        (
            "signed by a device key",
            jws::sign(&secrets.device_sign, "sichat-standby-grant+jwt", Some(&root_kid), &grant(&b_did)),
        ),
        ("signed by a stranger", jws::sign(&stranger, "sichat-standby-grant+jwt", Some(&root_kid), &grant(&b_did))),
        (
            "naming the device key",
            jws::sign(&root, "sichat-standby-grant+jwt", Some(&format!("{did}#device-x")), &grant(&b_did)),
        ),
        (
            "for another node",
            jws::sign(&root, "sichat-standby-grant+jwt", Some(&root_kid), &grant("did:web:other.example")),
        ),
        ("of another type", jws::sign(&root, "sichat-standby-end+jwt", Some(&root_kid), &grant(&b_did))),
    ];
    for (what, token) in cases {
        let (status, body) =
            b.post_json("/api/v1/standbys", &json!({"grant": token.expect("sign"), "invite": invite})).await;
        assert_eq!(status, 400, "{what}: {body}");
    }
    let count: i64 = sqlx::query("SELECT COUNT(*) AS n FROM msg_standbys")
        .fetch_one(b.node.db.pool())
        .await
        .expect("count")
        .try_get("n")
        .expect("n");
    assert_eq!(count, 0);
    // The invite was not spent: the real grant still gets in with it.
    let out = sichat(&alice, &["--json", "standby", "add", "--server", &b.url, "--invite", &invite]).await;
    assert!(out.status.success(), "{}", stderr(&out));

    // A handover signed by a node that is not Alice's standby (A itself) is refused.
    let claims = json!({"iss": a.node.identity.did().to_string(), "to": did, "iat": sichat_accounts::protocol::now_secs(),
        "target_uri": format!("{}/didcomm", b.url), "received_at": sichat_core::ids::now_ms(), "headers": {},
        "body_sha256": sichat_core::ids::b64url(&<sha2::Sha256 as sha2::Digest>::digest(b"{}"))});
    let token = a.node.identity.sign_jws("sichat-standby-handover+jwt", &claims).expect("sign");
    let answer = reqwest::Client::new()
        .post(format!("{}/didcomm/handover", a.url))
        .header("sichat-handover", token)
        .header("content-type", "application/didcomm-plain+json")
        .body("{}")
        .send()
        .await
        .expect("post");
    assert_eq!(answer.status().as_u16(), 403, "{}", answer.text().await.unwrap_or_default());
    a.stop().await;
    b.stop().await;
}

async fn get_text(url: &str) -> (u16, String) {
    let r = reqwest::get(url).await.expect("get");
    (r.status().as_u16(), r.text().await.expect("text"))
}

async fn set_mirrored_log(b: &TestApp, scid: &str, log: &str) {
    sqlx::query("UPDATE msg_standby_mirror SET log = $1 WHERE scid = $2")
        .bind(log)
        .bind(scid)
        .execute(b.node.db.pool())
        .await
        .expect("update");
}

/// Alice (on A, with a did:webvh) names B as her standby: her log names B as its watcher,
/// and B mirrors the log and her status lists. Node C, which resolved her DID while A ran
/// and keeps no document (`did_cache_secs = 0`), still verifies what she issued while A is
/// down, status and all, from B; a verifier that never saw her log cannot. A copy at B that
/// was altered, or is older than what C saw, is not used.
async fn a_standby_mirrors_what_verifies_the_account(backend: Backend) {
    let Some(a) = TestApp::spawn(backend).await else { return };
    let Some(b) = TestApp::spawn_with(backend, |c| c.msg_standby_handover_secs = 1).await else { return };
    let Some(c) = TestApp::spawn_with(backend, |c| c.did_cache_secs = 0).await else { return };
    let alice = a.join("alice", &a.owner_invite).await;
    let bob = b.join("bob", &b.owner_invite).await;
    let out = sichat(&alice, &["--json", "did", "upgrade"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let webvh = out_json(&out)["did"].as_str().expect("did").to_owned();
    let scid = webvh.split(':').nth(2).expect("scid").to_owned();
    let invite = b.invite(&bob, 1).await;
    let out = sichat(&alice, &["--json", "standby", "add", "--server", &b.url, "--invite", &invite]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let (status, log) = get_text(&format!("{}/users/alice/did.jsonl", a.url)).await;
    assert_eq!(status, 200);
    let last: Value = serde_json::from_str(log.lines().last().expect("entry")).expect("json");
    assert_eq!(last["parameters"]["watchers"], json!([format!("{}/webvh-watcher", b.url)]), "{last}");

    let bob_did = out_json(&sichat(&bob, &["--json", "whoami"]).await)["did"].as_str().expect("did").to_owned();
    let (_, credential) = crate::portable_did::issue(&a, &alice, &bob_did, "vc+jwt").await;
    let vc: Value = jws::unverified_payload(&credential).expect("payload");
    let list = vc["credentialStatus"][0]["statusListCredential"].as_str().expect("list").to_owned();
    let path = list.strip_prefix(&format!("{}/users/alice/", a.url)).expect("under the DID").to_owned();

    // B mirrors the log and the list.
    let watcher = format!("{}/webvh-watcher", b.url);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (s1, mirrored) = get_text(&format!("{watcher}/log?scid={scid}")).await;
        let (s2, _) = get_text(&format!("{watcher}/resource?scid={scid}&path={path}")).await;
        if s1 == 200 && s2 == 200 && mirrored.trim() == log.trim() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "B never mirrored the log and the list ({s1}, {s2})");
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    let verdict = |app: &TestApp| {
        let verifier = app.node.verifier.clone();
        let credential = credential.clone();
        async move { verifier.verify(&credential, &sichat_verifier::Options::default()).await }
    };
    let report = verdict(&c).await;
    assert!(report.valid, "while A runs: {report:?}");

    let file = c.dir.path().join("credential.jwt");
    std::fs::write(&file, &credential).expect("write");
    let _gone = a.stop_keeping().await;
    let report = verdict(&c).await;
    assert!(report.valid, "with A down, from B: {report:?}");
    assert!(format!("{report:?}").contains("no status set"), "its status was read: {report:?}");
    // A verifier that never resolved Alice's DID has nothing to find B by.
    let out = sichat(&bob, &["--json", "verify", file.to_str().expect("path")]).await;
    assert!(!out.status.success(), "a fresh verifier cannot know the watcher");

    // Altered at B, or rolled back to an older version: not used.
    let altered = log.replacen("#root", "#r00t", 1);
    set_mirrored_log(&b, &scid, &altered).await;
    assert!(!verdict(&c).await.valid, "an altered copy is refused");
    let older: String = log.lines().take(log.lines().count() - 1).map(|l| format!("{l}\n")).collect();
    set_mirrored_log(&b, &scid, &older).await;
    assert!(!verdict(&c).await.valid, "an older copy is refused");
    set_mirrored_log(&b, &scid, &log).await;
    assert!(verdict(&c).await.valid, "the true copy again");

    // The watcher API refuses what it does not mirror.
    assert_eq!(get_text(&format!("{watcher}/log?scid=QmNotMirrored")).await.0, 404);
    assert_eq!(get_text(&format!("{watcher}/log")).await.0, 400);
    assert_eq!(get_text(&format!("{watcher}/resource?scid={scid}&path=status/none")).await.0, 404);
    let notified = reqwest::Client::new()
        .post(format!("{watcher}/log?did=did:webvh:QmNotMirrored:example.com"))
        .send()
        .await
        .expect("post");
    assert_eq!(notified.status().as_u16(), 404);
    b.stop().await;
    c.stop().await;
}

/// B stands by for Alice within B's quota (`msg_quota_bytes`, 8 KiB here). With A down, a
/// small message is held; a larger one than B may keep for her is refused (429), and
/// Carol's node keeps it and tries again: once A is back it is delivered there, and B
/// hands over the first. Nothing is lost.
async fn a_full_standby_refuses_and_the_sender_keeps_the_message(backend: Backend) {
    let Some(a) = TestApp::spawn(backend).await else { return };
    let Some(b) = TestApp::spawn_with(backend, |c| {
        c.msg_standby_handover_secs = 1;
        c.msg_quota_bytes = 8 * 1024;
    })
    .await
    else {
        return;
    };
    let Some(c) = TestApp::spawn(backend).await else { return };
    let alice = a.join("alice", &a.owner_invite).await;
    let bob = b.join("bob", &b.owner_invite).await;
    let carol = c.join("carol", &c.owner_invite).await;
    let invite = b.invite(&bob, 1).await;
    let out = sichat(&alice, &["--json", "standby", "add", "--server", &b.url, "--invite", &invite]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let alice_did = out_json(&sichat(&alice, &["--json", "whoami"]).await)["did"].as_str().expect("did").to_owned();
    // Carol's wallet reads Alice's DID document once while A runs (a DID names one host).
    let first = send(&carol, &alice_did, "hello", &[]).await;
    delivered(&carol, &first).await;
    let port = a.url.rsplit(':').next().and_then(|p| p.parse::<u16>().ok()).expect("port");
    let stopped = a.stop_keeping().await;

    let small = send(&carol, &alice_did, "small", &[]).await;
    delivered(&carol, &small).await;
    assert_eq!(held_at(&b).await, 1);
    let large_text = "x".repeat(9 * 1024);
    let large = send(&carol, &alice_did, &large_text, &[]).await;
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    let out = sichat(&carol, &["--json", "message", "status", &large]).await;
    let status = out_json(&out);
    assert_eq!(status["state"], "queued", "the sender keeps what the standby refused: {status}");
    assert_eq!(held_at(&b).await, 1, "B keeps no more than its quota");

    let a = stopped.serve_at(([127, 0, 0, 1], port).into()).await;
    let status = settled(&carol, &large).await;
    assert_eq!(status["state"], "delivered", "{status}");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while held_at(&b).await > 0 {
        assert!(tokio::time::Instant::now() < deadline, "B never handed over");
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    let mut got = texts(&inbox(&alice, &["--requests"]).await);
    got.sort();
    assert_eq!(got, ["hello".to_owned(), "small".to_owned(), large_text], "each once");
    a.stop().await;
    b.stop().await;
    c.stop().await;
}
