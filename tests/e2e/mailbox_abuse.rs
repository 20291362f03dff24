//! The mailbox under abuse and mistakes: strangers flooding the requests folder, envelopes
//! no device can open, recipients that do not exist, replayed node requests, devices
//! opening pickup sessions without end, and drop reports a new device should not see.

use crate::mailbox::{next, say, Device};
use serde_json::{json, Value};
use sichat_core::did::Did;
use sichat_core::ids::now_ms;
use sichat_e2e::{json as json_out, sichat, stderr, storage_tests, Backend, TestApp};
use sichat_messaging::federation_auth::{sign_request, OutgoingRequest};

storage_tests!(
    strangers_cannot_evict_friends,
    misaddressed_messages_fail_at_once,
    replays_are_refused_by_every_replica,
    pickup_sessions_are_capped,
    a_new_device_is_not_told_of_older_drops,
);

/// Twelve messages from a stranger (requests folder) and five from a member (inbox), in a
/// mailbox too small for all: the requests folder keeps to its share and loses its oldest;
/// every inbox message is still there.
async fn strangers_cannot_evict_friends(backend: Backend) {
    let Some(a) = TestApp::spawn_with(backend, |c| {
        c.msg_max_bytes = 4096;
        c.msg_quota_bytes = 12 * 1024;
        c.msg_requests_quota_bytes = 4096;
        c.msg_requests_per_sender_per_day = 100;
    })
    .await
    else {
        return;
    };
    let Some(b) = TestApp::spawn(backend).await else { return };
    let alice_w = a.join("alice", &a.owner_invite).await;
    let invite = a.invite(&alice_w, 1).await;
    let dave_w = a.join("dave", &invite).await;
    let bob_w = b.join("bob", &b.owner_invite).await;
    let (alice, dave, bob) =
        (Device::of(&a, &alice_w).await, Device::of(&a, &dave_w).await, Device::of(&b, &bob_w).await);

    let mut friends = Vec::new();
    for i in 0..5 {
        let id = dave.send(&alice.did, &format!("from a member {i}")).await;
        assert_eq!(dave.settled(&id).await["state"], "delivered");
        friends.push(id);
    }
    for i in 0..12 {
        let id = bob.send(&alice.did, &format!("from a stranger {i}")).await;
        assert_eq!(bob.settled(&id).await["state"], "delivered");
    }

    let mut ws = alice.connect().await;
    say(&mut ws, "status-request", json!({})).await;
    let status = next(&mut ws, "status").await;
    let dropped: i64 =
        status["body"]["dropped"].as_array().expect("drops").iter().filter_map(|d| d["count"].as_i64()).sum();
    assert!(dropped > 0, "the mailbox was over its quota: {status}");
    say(&mut ws, "delivery-request", json!({"limit": 100})).await;
    let d = next(&mut ws, "delivery").await;
    let kept = d["attachments"].as_array().expect("list");
    let inbox: Vec<&str> =
        kept.iter().filter(|m| m["sichat"]["folder"] == "inbox").filter_map(|m| m["id"].as_str()).collect();
    assert_eq!(inbox, friends, "no member's message was dropped for a stranger's: {status}");
    let requests: Vec<&Value> = kept.iter().filter(|m| m["sichat"]["folder"] == "requests").collect();
    let request_bytes: usize = requests.iter().map(|m| m["data"]["json"].to_string().len()).sum();
    assert!(request_bytes <= 4096, "the requests folder keeps to its share: {request_bytes} bytes");
    assert!(!requests.is_empty(), "the newest requests are kept");
    assert_eq!(dropped as usize + requests.len(), 12, "only requests went: {status}");
    a.stop().await;
    b.stop().await;
}

/// An envelope none of the recipient's devices can open is refused before it is stored,
/// and a message to a user another node says does not exist (404) fails at once, not after
/// days of retries. Both with a reason the sender sees.
async fn misaddressed_messages_fail_at_once(backend: Backend) {
    let Some(a) = TestApp::spawn(backend).await else { return };
    let Some(b) = TestApp::spawn(backend).await else { return };
    let alice_w = a.join("alice", &a.owner_invite).await;
    let invite = a.invite(&alice_w, 1).await;
    let carol_w = a.join("carol", &invite).await;
    let bob_w = b.join("bob", &b.owner_invite).await;
    let (alice, carol, bob) =
        (Device::of(&a, &alice_w).await, Device::of(&a, &carol_w).await, Device::of(&b, &bob_w).await);

    // Encrypted to Carol's keys, addressed to Alice.
    let (id, body) = bob.forward(&carol.did, "not for alice's devices").await;
    let mut forward: Value = serde_json::from_str(&body).expect("json");
    forward["body"]["next"] = json!(alice.did);
    assert_eq!(bob.post(forward.to_string()).await.0, 202);
    let s = bob.settled(&id).await;
    assert_eq!(s["state"], "failed", "{s}");
    assert!(s["last_error"].as_str().is_some_and(|e| e.contains("not encrypted to any key")), "{s}");

    // A user A does not have: its DID document is 404.
    let nobody = Did::parse(&format!("{}:users:nobody", a.node.identity.did())).expect("did");
    let (id, body) = bob.forward(&alice.did, "to no one").await;
    let mut forward: Value = serde_json::from_str(&body).expect("json");
    forward["body"]["next"] = json!(nobody);
    assert_eq!(bob.post(forward.to_string()).await.0, 202);
    let s = bob.settled(&id).await;
    assert_eq!(s["state"], "failed", "{s}");
    assert!(s["last_error"].as_str().is_some_and(|e| e.contains("no such recipient") && e.contains("404")), "{s}");

    // Alice's mailbox holds neither.
    let mut ws = alice.connect().await;
    say(&mut ws, "status-request", json!({})).await;
    assert_eq!(next(&mut ws, "status").await["body"]["message_count"], 0);
    a.stop().await;
    b.stop().await;
}

/// A signed node request is taken once: sent again to the same node, or to another replica
/// of it (a fresh process, as after a restart), it is refused as a replay.
async fn replays_are_refused_by_every_replica(backend: Backend) {
    let Some(a) = TestApp::spawn(backend).await else { return };
    let Some(b) = TestApp::spawn(backend).await else { return };
    let a2 = a.replica(|_| {}).await;
    // Opening the replica minted a fresh owner invite (the node still has no account).
    let alice_w = a.join("alice", &a2.owner_invite).await;
    let bob_w = b.join("bob", &b.owner_invite).await;
    let (alice, bob) = (Device::of(&a, &alice_w).await, Device::of(&b, &bob_w).await);

    let (_, body) = bob.forward(&alice.did, "signed once").await;
    let target = format!("{}/didcomm", a.url);
    let signed = sign_request(
        &*b.node.identity,
        &OutgoingRequest::delivery(&target, &bob.did, body.as_bytes()),
        now_ms() / 1000,
    )
    .expect("sign");
    let post = |url: String| {
        let (signed, body) = (signed.clone(), body.clone());
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .headers(signed.to_header_map().expect("headers"))
                .body(body)
                .send()
                .await
                .expect("POST");
            (r.status().as_u16(), r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, answer) = post(target.clone()).await;
    assert_eq!(status, 202, "{answer}");
    for url in [target.clone(), format!("{}/didcomm", a2.url)] {
        let (status, answer) = post(url.clone()).await;
        assert_eq!(status, 401, "{url}: {answer}");
        assert!(answer["message"].as_str().is_some_and(|m| m.contains("replay")), "{answer}");
    }
    // Housekeeping forgets only expired nonces: the replay is still refused.
    a2.node.messaging.housekeeping().await.expect("housekeeping");
    assert_eq!(post(format!("{}/didcomm", a2.url)).await.0, 401);
    a2.stop().await;
    a.stop().await;
    b.stop().await;
}

/// One device may hold only so many pickup WebSockets: past that the upgrade is refused
/// with a JSON error, and the wallet says why; closing one frees its place.
async fn pickup_sessions_are_capped(backend: Backend) {
    let Some(a) = TestApp::spawn_with(backend, |c| {
        c.msg_pickup_sessions_per_device = 2;
        c.msg_pickup_sessions_per_account = 16;
    })
    .await
    else {
        return;
    };
    let alice_w = a.join("alice", &a.owner_invite).await;
    let alice = Device::of(&a, &alice_w).await;
    let first = alice.connect().await;
    let _second = alice.connect().await;
    match alice.try_connect().await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 429);
            let body: Value = serde_json::from_slice(resp.body().as_deref().unwrap_or_default()).expect("JSON body");
            assert_eq!(body["error"], "too_many_sessions", "{body}");
        }
        Err(e) => panic!("refused, but not with an HTTP answer: {e}"),
        Ok(_) => panic!("a third session of one device was opened"),
    }
    let out = sichat(&alice_w, &["message", "inbox"]).await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("too_many_sessions") && stderr(&out).contains("connections open"),
        "{}",
        stderr(&out)
    );

    drop(first);
    // The node notices the closed socket; then the place is free again.
    let mut reopened = None;
    for _ in 0..50 {
        if let Ok(ws) = alice.try_connect().await {
            reopened = Some(ws);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let mut ws = reopened.expect("a closed session frees its place");
    say(&mut ws, "status-request", json!({})).await;
    assert_eq!(next(&mut ws, "status").await["body"]["message_count"], 0);
    a.stop().await;
}

/// Drops are reported to the devices that missed the messages: a device added afterwards
/// is not told of them. A device that is gets one summary, however many drops there were.
async fn a_new_device_is_not_told_of_older_drops(backend: Backend) {
    let Some(a) = TestApp::spawn_with(backend, |c| {
        c.msg_max_bytes = 4096;
        c.msg_quota_bytes = 4096;
    })
    .await
    else {
        return;
    };
    let alice_w = a.join("alice", &a.owner_invite).await;
    let invite = a.invite(&alice_w, 1).await;
    let carol_w = a.join("carol", &invite).await;
    let (alice, carol) = (Device::of(&a, &alice_w).await, Device::of(&a, &carol_w).await);
    for i in 0..6 {
        let id = carol.send(&alice.did, &format!("number {i}")).await;
        assert_eq!(carol.settled(&id).await["state"], "delivered");
    }
    let phone_w = a.wallet("alice-phone");
    let out =
        sichat(&alice_w, &["--json", "device", "add", "--name", "phone", "--out", phone_w.to_str().expect("path")])
            .await;
    assert!(out.status.success(), "{}", stderr(&out));

    let out = sichat(&phone_w, &["--json", "message", "inbox"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("dropped"), "{}", stderr(&out));
    assert_eq!(json_out(&out)["dropped"], json!([]));

    let out = sichat(&alice_w, &["--json", "message", "inbox"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let reports = json_out(&out)["dropped"].as_array().expect("drops").len();
    assert!(reports > 1, "several drop events: {}", json_out(&out));
    assert_eq!(stderr(&out).matches("your node dropped").count(), 1, "one summary: {}", stderr(&out));
    a.stop().await;
}
