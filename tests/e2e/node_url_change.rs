//! A node changes its public URL (`sichatd admin change-url`, the real binary) with all its
//! users: the old name keeps pointing at the node (here a TCP forward from the old port to
//! the new one, which keeps the old `Host`, as a DNS alias would), and the node answers
//! there for the old DIDs. Credentials issued before verify and revoke through their old
//! URLs; the wallets follow on their own (the root key moves the did:webvh); messages to
//! the old DIDs, from this node and another, arrive once; a bad configuration changes nothing.

use crate::holder::{give, request_from, request_status};
use crate::messaging::{delivered, inbox, send, texts};
use crate::portable_did::{issue, issuer_of, text, Raw};
use serde_json::Value;
use sichat_accounts::protocol::{MoveDraft, RootOperation};
use sichat_core::did::Did;
use sichat_core::keys::Ed25519KeyPair;
use sichat_core::net::NetPolicy;
use sichat_core::webvh;
use sichat_e2e::{json, session_token, sichat, stderr, storage_tests, unseal, Backend, TestApp};
use sichat_verifier::{Options, Verifier};
use std::net::SocketAddr;
use tokio::net::{TcpListener, TcpStream};

storage_tests!(a_node_changes_its_url_and_its_users_keep_everything);

async fn verdict(credential: &str) -> (bool, String) {
    let verifier = Verifier::new(NetPolicy { allow_local: true }, Default::default()).expect("verifier");
    let report = verifier.verify(credential, &Options::default()).await;
    (report.valid, serde_json::to_string(&report).unwrap_or_default())
}

/// Every connection to `from` is carried to `to`, bytes unchanged (the `Host` header too).
async fn forward(from: SocketAddr, to: SocketAddr) -> tokio::task::JoinHandle<()> {
    let listener = TcpListener::bind(from).await.expect("bind the old port");
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut outbound) = TcpStream::connect(to).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    })
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':').next().and_then(|p| p.parse().ok()).expect("port")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn status_url(credential: &str) -> String {
    let payload = credential.split('.').nth(1).expect("payload");
    let vc: Value = serde_json::from_slice(&sichat_core::ids::b64url_decode(payload).expect("b64")).expect("json");
    let status = &vc["credentialStatus"];
    status[0]["statusListCredential"].as_str().or(status["statusListCredential"].as_str()).expect("list").to_owned()
}

async fn a_node_changes_its_url_and_its_users_keep_everything(backend: Backend) {
    let Some(a) = TestApp::spawn(backend).await else { return };
    let Some(other) = TestApp::spawn(backend).await else { return };
    let old_url = a.url.clone();
    let alice = a.join("alice", &a.owner_invite).await;
    let carol = a.join("carol", &a.invite(&alice, 1).await).await;
    let dave = other.join("dave", &other.owner_invite).await;
    let bob = a.wallet("bob");
    let out = sichat(&bob, &["--json", "init"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let bob_did = json(&out)["did"].as_str().expect("did").to_owned();
    let old_web = json(&sichat(&alice, &["--json", "whoami"]).await)["did"].as_str().expect("did").to_owned();
    let carol_old = json(&sichat(&carol, &["--json", "whoami"]).await)["did"].as_str().expect("did").to_owned();
    let old_node_did = a.get_json("/.well-known/did.json").await.1["id"].as_str().expect("id").to_owned();

    // Issued under did:web, then under a did:webvh at the old host.
    let (web_id, web_cred) = issue(&a, &alice, &bob_did, "vc+jwt").await;
    let out = sichat(&alice, &["--json", "did", "upgrade"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let old_webvh = json(&out)["did"].as_str().expect("did").to_owned();
    let (vh_id, vh_cred) = issue(&a, &alice, &bob_did, "vc+jwt").await;
    assert_eq!(issuer_of(&vh_cred), old_webvh);
    let id = send(&carol, &old_web, "before the change", &[]).await;
    delivered(&carol, &id).await;
    assert!(texts(&inbox(&alice, &[]).await).contains(&"before the change".to_owned()));
    let held = give(&carol, &alice, "FriendCredential", &[]).await;
    let id = send(&carol, &old_web, "waiting during the change", &[]).await;
    delivered(&carol, &id).await;

    // The operator stops the node and moves it to a new port (a new host name would do the
    // same): the real binary, with progress on stderr.
    let mut stopped = a.stop_keeping().await;
    let new_port = free_port();
    let new_url = format!("http://localhost:{new_port}");
    let run = |args: Vec<String>| {
        let config = stopped.config.clone();
        async move {
            tokio::process::Command::new(sichat_e2e::binary("sichatd"))
                .arg("--data-dir")
                .arg(&config.data_dir)
                .arg("--database-url")
                .arg(config.database_url())
                .args(args)
                .stdin(std::process::Stdio::null())
                .output()
                .await
                .expect("run sichatd")
        }
    };
    let out = run(vec!["admin".into(), "change-url".into(), "--to".into(), new_url.clone()]).await;
    assert!(!out.status.success(), "without --yes and no terminal it asks first");
    assert!(stderr(&out).contains("--yes"), "{}", stderr(&out));
    let out =
        run(vec!["admin".into(), "change-url".into(), "--to".into(), new_url.clone(), "--yes".into(), "--json".into()])
            .await;
    assert!(out.status.success(), "change-url: {}", stderr(&out));
    assert!(stderr(&out).contains("accounts following the new URL: 2/2"), "progress: {}", stderr(&out));
    let changed = json(&out);
    assert_eq!(changed["accounts"], 2, "{changed}");
    assert_eq!(changed["former_urls"][0], format!("{old_url}/"), "{changed}");
    // Configuring the old URL again is refused, and changes nothing.
    let out = run(vec!["--public-url".into(), old_url.clone(), "admin".into(), "users".into()]).await;
    assert!(!out.status.success(), "the old URL again");
    assert!(stderr(&out).contains("left"), "{}", stderr(&out));

    // Behind a reverse proxy (here: loopback) that names the host in `X-Forwarded-Host`.
    stopped.config.trusted_proxies = vec!["127.0.0.1".parse().expect("cidr")];
    let a = stopped.serve_at(format!("127.0.0.1:{new_port}").parse().expect("addr")).await;
    assert_eq!(a.url, new_url);
    let _old_name = forward(format!("127.0.0.1:{}", port_of(&old_url)).parse().expect("addr"), a_addr(new_port)).await;
    let at_old = |path: &str| format!("{old_url}{path}");
    let http = reqwest::Client::new();

    // The node's DIDs: new at the new URL, naming the old one; the old one at the old URL.
    let (_, node_doc) = a.get_json("/.well-known/did.json").await;
    let new_node_did = node_doc["id"].as_str().expect("id").to_owned();
    assert_ne!(new_node_did, old_node_did);
    assert!(node_doc["alsoKnownAs"].to_string().contains(&old_node_did), "{node_doc}");
    let old_doc: Value =
        http.get(at_old("/.well-known/did.json")).send().await.expect("GET").json().await.expect("json");
    assert_eq!(old_doc["id"], old_node_did.as_str(), "{old_doc}");
    assert_eq!(
        old_doc["verificationMethod"][0]["publicKeyMultibase"],
        node_doc["verificationMethod"][0]["publicKeyMultibase"]
    );

    // The node's own did:webvh followed it, signed by the node key.
    let (status, _, node_log) = text(&a, "/.well-known/did.jsonl").await;
    assert_eq!(status, 200);
    let node_webvh = node_doc["alsoKnownAs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .find(|d| d.starts_with("did:webvh:"))
        .expect("the node's did:webvh")
        .to_owned();
    assert!(node_webvh.contains(&new_port.to_string()), "{node_webvh}");
    webvh::verify_log(&node_webvh, &node_log).await.expect("the node's log verifies at the new host");

    // Alice's old did:web document, at the old URL: her keys, the new DIDs, the new endpoint.
    let old_alice: Value =
        http.get(at_old("/users/alice/did.json")).send().await.expect("GET").json().await.expect("json");
    assert_eq!(old_alice["id"], old_web.as_str(), "{old_alice}");
    let (_, new_alice) = a.get_json("/users/alice/did.json").await;
    let new_web = new_alice["id"].as_str().expect("id").to_owned();
    assert!(new_web.contains(&new_port.to_string()), "{new_web}");
    assert!(old_alice["alsoKnownAs"].to_string().contains(&new_web), "{old_alice}");
    assert!(old_alice["service"].to_string().contains(&format!("{new_url}/didcomm")), "{old_alice}");
    assert!(new_alice["alsoKnownAs"].to_string().contains(&old_web), "{new_alice}");
    // Through the proxy, the forwarded host decides.
    let old_host = old_url.trim_start_matches("http://").to_owned();
    let proxied: Value = http
        .get(format!("{new_url}/users/alice/did.json"))
        .header("x-forwarded-host", &old_host)
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("json");
    assert_eq!(proxied["id"], old_web.as_str(), "{proxied}");
    // Not a DID this node ever had: nothing.
    let r = http.get(at_old("/users/nobody/did.json")).send().await.expect("GET");
    assert_eq!(r.status().as_u16(), 404);

    // What alice issued before verifies, by a verifier that never saw it, through the old
    // DIDs and the old status-list URLs.
    assert!(status_url(&web_cred).starts_with(&old_url));
    for c in [&web_cred, &vh_cred] {
        let (valid, report) = verdict(c).await;
        assert!(valid, "{report}");
    }

    // Dave, on another node, writes to the old DID: the old document sends him to the new
    // endpoint. Carol's wallet still names the old URL and DID: it signs in, follows, and
    // writes too.
    let id = send(&dave, &old_web, "from another node", &[]).await;
    delivered(&dave, &id).await;
    let id = send(&carol, &old_web, "after the change", &[]).await;
    delivered(&carol, &id).await;
    let who = json(&sichat(&carol, &["--json", "whoami"]).await);
    assert_eq!(who["server"], new_url.as_str(), "{who}");
    assert_ne!(who["did"], carol_old.as_str(), "{who}");

    bad_follows_change_nothing(&a, &alice, &old_web).await;

    // Alice's wallet follows at its next session, and its root key moves the did:webvh.
    let out = sichat(&alice, &["device", "list"]).await;
    assert!(out.status.success(), "device list: {}", stderr(&out));
    assert!(stderr(&out).contains("Your node moved to"), "{}", stderr(&out));
    assert!(stderr(&out).contains("Your portable DID follows"), "{}", stderr(&out));
    let who = json(&sichat(&alice, &["--json", "whoami"]).await);
    assert_eq!(who["server"], new_url.as_str(), "{who}");
    assert_eq!(who["did"], new_web.as_str(), "{who}");
    let scid = old_webvh.split(':').nth(2).expect("scid");
    let new_webvh = format!("did:webvh:{scid}:{}", new_web.trim_start_matches("did:web:"));
    let (status, _, log) = text(&a, "/users/alice/did.jsonl").await;
    assert_eq!(status, 200);
    let verified = webvh::verify_log(&new_webvh, &log).await.expect("the log verifies at the new host");
    let aka = verified.document["alsoKnownAs"].to_string();
    assert!(aka.contains(&old_webvh) && aka.contains(&old_web), "{aka}");
    // The old did:webvh resolves (through the old URL) to the moved document.
    let old_log = http.get(at_old("/users/alice/did.jsonl")).send().await.expect("GET").text().await.expect("log");
    let resolved = webvh::verify_log(&old_webvh, &old_log).await.expect("the old did:webvh resolves");
    assert_eq!(resolved.document["id"], new_webvh.as_str());
    // Once is enough: a second draft has nothing to do.
    let out = sichat(&alice, &["device", "list"]).await;
    assert!(out.status.success() && !stderr(&out).contains("follows"), "{}", stderr(&out));

    // What alice held before the change presents, under the DID it is about (answered at
    // the old URL), to a verifier that knows carol, its issuer, by her DID then.
    let (req, uri) = request_from(&carol, &carol_old).await;
    let out = sichat(&alice, &["--json", "present", &uri, "--yes"]).await;
    assert!(out.status.success(), "present after the change: {}", stderr(&out));
    assert_eq!(json(&out)["presented"], serde_json::json!([held]));
    assert_eq!(request_status(&carol, req).await, "verified");

    // Every message arrived, once (dave's, from a stranger, in the requests folder).
    let mut all = texts(&inbox(&alice, &[]).await);
    all.extend(texts(&inbox(&alice, &["--requests"]).await));
    for t in ["before the change", "waiting during the change", "from another node", "after the change"] {
        assert_eq!(all.iter().filter(|m| *m == t).count(), 1, "{t}: {all:?}");
    }

    // Revoking now is seen through the old status-list URLs.
    for id in [&web_id, &vh_id] {
        let out = sichat(&alice, &["credential", "revoke", id]).await;
        assert!(out.status.success(), "revoke: {}", stderr(&out));
    }
    for c in [&web_cred, &vh_cred] {
        let (valid, report) = verdict(c).await;
        assert!(!valid && report.contains("revoked"), "{report}");
    }
    // New credentials name the DID at the new host, and lists there.
    let (_, fresh) = issue(&a, &alice, &bob_did, "vc+jwt").await;
    assert_eq!(issuer_of(&fresh), new_webvh);
    assert!(status_url(&fresh).starts_with(&new_url), "{}", status_url(&fresh));
    let (valid, report) = verdict(&fresh).await;
    assert!(valid, "{report}");
    other.stop().await;
    a.stop().await;
}

/// A `follow_host` to a host the node does not have, with an entry not signed by the update
/// key, signed by another key than the root, or whose document is not the account's: each
/// refused, the log unchanged.
async fn bad_follows_change_nothing(a: &TestApp, alice: &std::path::Path, old_web: &str) {
    let token = session_token(a, alice).await;
    let r = a.http.post(format!("{}/api/v1/did/rehost-draft", a.url)).bearer_auth(&token).json(&serde_json::json!({}));
    let draft: MoveDraft = r.send().await.expect("POST").json().await.expect("draft");
    let (_, _, before) = text(a, "/users/alice/did.jsonl").await;
    let raw = Raw { root: unseal(alice).root.expect("the root key"), did: Did::parse(old_web).expect("did") };
    let stranger = Ed25519KeyPair::generate();
    let scid = draft.did.split(':').nth(2).expect("scid");
    let evil = format!("did:webvh:{scid}:evil.example:users:alice");
    let entry = |state: Value, key: &Ed25519KeyPair| {
        webvh::append(&draft.last_entry, state, serde_json::json!({}), key).expect("entry").line
    };
    let elsewhere: Value = serde_json::from_str(&draft.state.to_string().replace(&draft.did, &evil)).expect("json");
    let mut tampered = draft.state.clone();
    tampered["alsoKnownAs"].as_array_mut().expect("aka").push(Value::String("did:web:evil.example".into()));
    let cases = [
        (RootOperation::FollowHost { did: evil.clone() }, entry(elsewhere, &raw.root), "must move the DID to"),
        (RootOperation::FollowHost { did: draft.did.clone() }, entry(draft.state.clone(), &stranger), "DID log entry"),
        (
            RootOperation::FollowHost { did: draft.did.clone() },
            entry(tampered, &raw.root),
            "not the account's document",
        ),
    ];
    for (op, line, says) in cases {
        let (status, body) = raw.root_op(a, op, Some(line)).await;
        assert_eq!(status, 400, "{body}");
        assert!(body.to_string().contains(says), "{says}: {body}");
    }
    let forger = Raw { root: stranger, did: raw.did.clone() };
    let line = entry(draft.state.clone(), &raw.root);
    let (status, body) = forger.root_op(a, RootOperation::FollowHost { did: draft.did.clone() }, Some(line)).await;
    assert!(matches!(status, 400 | 401), "{status} {body}");
    let (_, _, after) = text(a, "/users/alice/did.jsonl").await;
    assert_eq!(before, after, "nothing changed");
}

fn a_addr(port: u16) -> SocketAddr {
    format!("127.0.0.1:{port}").parse().expect("addr")
}
