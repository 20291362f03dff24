//! What ends a live pickup WebSocket besides the device itself: revoking the device, and
//! removing the account. The socket closes at once with a close code and reason saying
//! why (the periodic re-check is set to an hour here, so nothing else could close it), no
//! message reaches it after, and the account's other devices go on. The real `sichat`
//! revokes and removes, and its `message watch` stops with the node's reason; with
//! replicas the socket held by another replica, or a removal by `sichatd admin`, closes too.

use crate::mailbox::{ack, next, say, Device, Socket};
use crate::oidc_clients::sichatd_admin;
use futures_util::StreamExt;
use serde_json::{json, Value};
use sichat_e2e::{json as json_out, sichat, stderr, storage_tests, Backend, TestApp, Watch};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message as Frame;

storage_tests!(revoked_device_and_removed_account_lose_their_sockets);

/// `sichat_messaging::pickup::close::ENDED`, spelled out: the wire value the wallet relies on.
const ENDED: u16 = 4003;

/// A node whose pickup sessions re-check their tokens only hourly.
async fn node(backend: Backend) -> Option<TestApp> {
    TestApp::spawn_with(backend, |c| c.msg_pickup_recheck_secs = 3600).await
}

/// `who`'s wallet adds a device `name`; its wallet and id.
async fn add_device(app: &TestApp, wallet: &Path, name: &str) -> (PathBuf, String) {
    let dir = app.wallet(name);
    let out = sichat(wallet, &["--json", "device", "add", "--name", name, "--out", dir.to_str().expect("path")]).await;
    assert!(out.status.success(), "device add: {}", stderr(&out));
    let id = json_out(&out)["device_id"].as_str().expect("id").to_owned();
    (dir, id)
}

/// A live pickup session of `device`, its queue delivered and acknowledged.
async fn live(device: &Device) -> Socket {
    let mut ws = device.connect().await;
    say(&mut ws, "live-delivery-change", json!({"live_delivery": true})).await;
    next(&mut ws, "status").await;
    ws
}

/// The ids in a `delivery` frame.
fn delivered(frame: &Value) -> Vec<String> {
    frame["attachments"].as_array().into_iter().flatten().filter_map(|a| a["id"].as_str().map(str::to_owned)).collect()
}

/// Read `ws` until the node closes it (within 10 s): the close code and reason, and the
/// message ids delivered before. Panics if it stays open or drops without a close frame.
async fn closed(ws: &mut Socket, what: &str) -> (u16, String, Vec<String>) {
    let mut ids = Vec::new();
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .unwrap_or_else(|_| panic!("{what}: the socket is still open 10 s later"));
        match frame {
            Some(Ok(Frame::Close(Some(f)))) => return (u16::from(f.code), f.reason.as_str().to_owned(), ids),
            Some(Ok(Frame::Text(t))) => {
                let v: Value = serde_json::from_str(t.as_str()).expect("json frame");
                ids.extend(delivered(&v));
            }
            Some(Ok(_)) => {}
            other => panic!("{what}: the socket ended without a close frame: {other:?}"),
        }
    }
}

/// Nothing more comes on a socket the node closed.
async fn silent(ws: &mut Socket, what: &str) {
    match tokio::time::timeout(Duration::from_secs(2), ws.next()).await {
        Ok(None) | Ok(Some(Err(_))) | Err(_) => {}
        Ok(Some(Ok(frame))) => panic!("{what}: a frame after the close: {frame:?}"),
    }
}

async fn revoked_device_and_removed_account_lose_their_sockets(backend: Backend) {
    let Some(app) = node(backend).await else { return };
    let alice_w = app.join("alice", &app.owner_invite).await;
    let (phone_w, phone_id) = add_device(&app, &alice_w, "alice-phone").await;
    let invite = app.invite(&alice_w, 1).await;
    let bob_w = app.join("bob", &invite).await;
    let (laptop, phone, bob) =
        (Device::of(&app, &alice_w).await, Device::of(&app, &phone_w).await, Device::of(&app, &bob_w).await);

    // Alice's two devices and Bob are live; the phone is also watched by the real wallet.
    let (mut laptop_ws, mut phone_ws, mut bob_ws) = (live(&laptop).await, live(&phone).await, live(&bob).await);
    let mut watch = Watch::start(&phone_w);
    watch.expect("stderr", "Watching for messages").await;
    let first = bob.send(&laptop.did, "to both devices").await;
    for ws in [&mut laptop_ws, &mut phone_ws] {
        assert_eq!(delivered(&next(ws, "delivery").await), vec![first.clone()]);
    }
    ack(&mut laptop_ws, &[&first]).await;
    // The phone's raw socket acknowledges only once the wallet watching as the same device
    // has it too: an earlier acknowledgement takes it off the device's queue first.
    watch.expect("stdout", "to both devices").await;
    ack(&mut phone_ws, &[&first]).await;

    // The laptop revokes the phone: its socket closes now, saying why, and the wallet
    // watching on the phone stops with that reason instead of logging in again.
    let out = sichat(&alice_w, &["device", "revoke", &phone_id]).await;
    assert!(out.status.success(), "revoke: {}", stderr(&out));
    let (code, reason, ids) = closed(&mut phone_ws, "the revoked phone").await;
    assert_eq!((code, reason.as_str()), (ENDED, "this device was revoked"));
    assert!(ids.is_empty(), "nothing is delivered to a revoked device: {ids:?}");
    let said = watch.expect("stderr", "closed the message connection").await;
    assert!(said.contains("this device was revoked"), "{said}");
    assert!(!watch.exited().await.success(), "sichat message watch fails once its device is revoked");

    // A message after the revocation reaches the laptop, never the phone.
    let second = bob.send(&laptop.did, "after the phone went").await;
    assert_eq!(delivered(&next(&mut laptop_ws, "delivery").await), vec![second.clone()]);
    ack(&mut laptop_ws, &[&second]).await;
    silent(&mut phone_ws, "the revoked phone").await;

    // Alice removes Bob's account: his socket closes, hers stays.
    let out = sichat(&alice_w, &["user", "remove", "bob"]).await;
    assert!(out.status.success(), "user remove: {}", stderr(&out));
    let (code, reason, _) = closed(&mut bob_ws, "removed Bob").await;
    assert_eq!((code, reason.as_str()), (ENDED, "this account was removed"));
    say(&mut laptop_ws, "status-request", json!({})).await;
    assert_eq!(next(&mut laptop_ws, "status").await["body"]["message_count"], 0, "the laptop goes on");
    app.stop().await;
}

/// Replicas on one PostgreSQL: a revocation made through one replica closes the device's
/// socket on another, and a removal by `sichatd admin` (a process of its own) closes the
/// account's sockets on both; told through `NOTIFY`, every re-check being an hour away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ends_cross_replicas() {
    sichat_e2e::or_hung(ends_cross_replicas_run()).await
}

async fn ends_cross_replicas_run() {
    let Some(a) = node(Backend::Postgres).await else { return };
    let a2 = a.replica(|c| c.msg_pickup_recheck_secs = 3600).await;
    let alice_w = a.join("alice", &a2.owner_invite).await;
    let (phone_w, phone_id) = add_device(&a, &alice_w, "alice-phone").await;
    let node_did = a.node.identity.did().to_string();
    let phone = Device::at(&a2.url, &node_did, &phone_w).await;
    let (laptop_at_a, laptop_at_a2) =
        (Device::at(&a.url, &node_did, &alice_w).await, Device::at(&a2.url, &node_did, &alice_w).await);
    let mut phone_ws = live(&phone).await;
    let (mut laptop_ws, mut laptop_ws2) = (live(&laptop_at_a).await, live(&laptop_at_a2).await);

    // The wallet's node is the first replica: the revocation commits there.
    let out = sichat(&alice_w, &["device", "revoke", &phone_id]).await;
    assert!(out.status.success(), "revoke: {}", stderr(&out));
    let (code, reason, _) = closed(&mut phone_ws, "the phone on the other replica").await;
    assert_eq!((code, reason.as_str()), (ENDED, "this device was revoked"));

    // The operator removes alice from the command line: both replicas close her sockets.
    let out = sichatd_admin(&a, &["remove", "alice"]).await;
    assert!(out.status.success(), "sichatd admin remove: {}", stderr(&out));
    for (ws, what) in [(&mut laptop_ws, "on the first replica"), (&mut laptop_ws2, "on the second replica")] {
        let (code, reason, _) = closed(ws, what).await;
        assert_eq!((code, reason.as_str()), (ENDED, "this account was removed"), "{what}");
    }
    a2.stop().await;
    a.stop().await;
}
