//! The node side of messaging, driven over its wire protocols: devices post forwards and
//! pick up over the Message Pickup WebSocket, nodes deliver to each other with signed
//! requests. The wallet CLI's own tests are in `messaging.rs`.

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use sichat_core::db::Db;
use sichat_core::did::Did;
use sichat_core::ids::now_ms;
use sichat_core::net::{Fetcher, NetPolicy};
use sichat_core::resolver::Resolver;
use sichat_e2e::{
    json as json_out, session_token_at, sichat, stderr, storage_tests, unseal, Backend, TempDir, TestApp, TestDb,
    WalletSecrets,
};
use sichat_messaging::federation_auth::{sign_request, OutgoingRequest};
use sichat_messaging::mailbox::{insert_all, Incoming, Inserted, NewMessage, Quota};
use sichat_messaging::outbox::{self, NewEntry};
use sichat_messaging::{pack_authcrypt, unpack, AgreementKey, Message, RecipientKey, SigningKey, UnpackOptions};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as Frame;

pub(crate) type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;
const PICKUP: &str = "https://didcomm.org/messagepickup/3.0/";

storage_tests!(
    across_nodes_offline_then_live,
    policy_decides_the_folder,
    bad_deliveries_change_nothing,
    quota_and_expiry_drop_and_report,
    revoked_device_owes_nothing,
    a_batch_is_stored_as_one_by_one,
    forwards_queued_together_answer_alone,
);

pub(crate) fn resolver() -> Resolver {
    Resolver::new(Arc::new(Fetcher::new(NetPolicy { allow_local: true }).expect("fetcher")))
}

/// One device of a test wallet, speaking the wire protocols by hand.
pub(crate) struct Device {
    pub did: Did,
    keys: WalletSecrets,
    token: String,
    node: String,
}

impl Device {
    pub(crate) async fn of(app: &TestApp, wallet: &Path) -> Self {
        Self::at(&app.url, app.node.identity.did().as_str(), wallet).await
    }

    /// The device of `wallet`, logged in to the node at `url`.
    pub async fn at(url: &str, node_did: &str, wallet: &Path) -> Self {
        let keys = unseal(wallet);
        let did = Did::parse(keys.profile["did"].as_str().expect("did")).expect("did");
        Self { did, token: session_token_at(url, node_did, wallet).await, keys, node: url.to_owned() }
    }

    pub(crate) fn device_id(&self) -> &str {
        self.keys.profile["device_id"].as_str().expect("device id")
    }

    pub(crate) fn agreement(&self) -> AgreementKey {
        let kid = self.did.url(&format!("device-{}-x25519", self.device_id()));
        AgreementKey::new(
            kid,
            sichat_core::keys::X25519KeyPair::from_secret(&self.keys.device_agree.secret()).expect("key"),
        )
    }

    /// The device's signing key.
    pub(crate) fn sign_key(&self) -> &sichat_core::keys::Ed25519KeyPair {
        &self.keys.device_sign
    }

    /// A forward to `to` carrying `text`, packed as the wallet packs it.
    pub async fn forward(&self, to: &Did, text: &str) -> (String, String) {
        let keys = resolver().resolve(to.as_str()).await.expect("recipient resolves");
        let msg = Message::new("https://sichat.dev/message/1.0/text", json!({"text": text}))
            .with_from(self.did.clone())
            .with_to(vec![to.clone()]);
        let kid = self.did.url(&format!("device-{}", self.device_id()));
        let signer = SigningKey { kid: &kid, key: &self.keys.device_sign };
        let packed =
            pack_authcrypt(&msg, &self.agreement(), Some(&signer), &RecipientKey::all_of(&keys)).expect("pack");
        let id = sichat_core::ids::new_id();
        let forward = json!({
            "id": id, "type": "https://didcomm.org/routing/2.0/forward", "body": {"next": to},
            "attachments": [{"id": "envelope", "data": {"json": serde_json::from_str::<Value>(&packed).expect("json")}}],
        });
        (id, forward.to_string())
    }

    pub async fn post(&self, body: String) -> (u16, Value) {
        let r = reqwest::Client::new()
            .post(format!("{}/api/v1/messages", self.node))
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("POST");
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    pub async fn send(&self, to: &Did, text: &str) -> String {
        let (id, body) = self.forward(to, text).await;
        let (status, answer) = self.post(body).await;
        assert_eq!(status, 202, "send: {answer}");
        // A new forward is answered from its insert: queued, whatever the worker does next.
        assert_eq!(answer["state"], "queued", "{answer}");
        id
    }

    pub async fn status(&self, id: &str) -> Value {
        let r = reqwest::Client::new()
            .get(format!("{}/api/v1/messages/{id}", self.node))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("GET");
        r.json().await.expect("status")
    }

    /// Wait until the outbox is done with `id`; its final state.
    pub async fn settled(&self, id: &str) -> Value {
        for _ in 0..200 {
            let s = self.status(id).await;
            if s["state"] != "queued" {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("message {id} still queued: {}", self.status(id).await);
    }

    pub async fn connect(&self) -> Socket {
        self.try_connect().await.expect("websocket")
    }

    /// The pickup WebSocket, or why not (the node is down).
    pub async fn try_connect(&self) -> Result<Socket, tokio_tungstenite::tungstenite::Error> {
        let url = format!("{}/api/v1/messages/ws", self.node.replace("http://", "ws://"));
        let mut req = url.into_client_request()?;
        req.headers_mut().insert("authorization", format!("Bearer {}", self.token).parse().expect("header"));
        Ok(tokio_tungstenite::connect_async(req).await?.0)
    }

    /// Post a forward; `None` when the node cannot be reached.
    pub async fn try_post(&self, body: &str) -> Option<u16> {
        let r = reqwest::Client::new()
            .post(format!("{}/api/v1/messages", self.node))
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .ok()?;
        Some(r.status().as_u16())
    }

    /// Open a delivered envelope as this device would.
    pub async fn open(&self, envelope: &Value) -> Message {
        let unpacked =
            unpack(envelope.to_string().as_bytes(), &[self.agreement()], &resolver(), &UnpackOptions::default())
                .await
                .expect("unpack");
        assert!(unpacked.authcrypted() && unpacked.signed());
        unpacked.message
    }
}

pub(crate) async fn say(ws: &mut Socket, kind: &str, body: Value) {
    let m = json!({"id": sichat_core::ids::new_id(), "type": format!("{PICKUP}{kind}"), "body": body});
    ws.send(Frame::Text(m.to_string().into())).await.expect("send frame");
}

/// The next frame of `kind` (`status`, `delivery`), skipping others.
pub(crate) async fn next(ws: &mut Socket, kind: &str) -> Value {
    let wanted = format!("{PICKUP}{kind}");
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .unwrap_or_else(|_| panic!("no {kind} within 10 s"))
            .expect("socket open")
            .expect("frame");
        if let Frame::Text(text) = frame {
            let v: Value = serde_json::from_str(text.as_str()).expect("json frame");
            if v["type"] == wanted.as_str() {
                return v;
            }
            assert_ne!(v["type"], "https://didcomm.org/report-problem/2.0/problem-report", "problem: {v}");
        }
    }
}

/// Nothing but `status` arrives for a while.
async fn quiet(ws: &mut Socket) {
    if let Ok(Some(Ok(Frame::Text(t)))) = tokio::time::timeout(Duration::from_millis(600), ws.next()).await {
        assert!(!t.as_str().contains("/delivery"), "unexpected delivery: {t}");
    }
}

pub(crate) async fn ack(ws: &mut Socket, ids: &[&str]) -> Value {
    say(ws, "messages-received", json!({"message_id_list": ids})).await;
    next(ws, "status").await
}

async fn two_nodes(backend: Backend) -> Option<(TestApp, TestApp)> {
    let a = TestApp::spawn(backend).await?;
    let b = TestApp::spawn(backend).await?;
    Some((a, b))
}

/// Bob (node B) writes to Alice (node A) while none of her devices is connected; she gets
/// it when one connects, then live; what is not acknowledged comes again on reconnect.
async fn across_nodes_offline_then_live(backend: Backend) {
    // Bob is a stranger to Alice: raise the requests allowance for the burst below.
    let Some(a) = TestApp::spawn_with(backend, |c| c.msg_requests_per_sender_per_day = 100).await else { return };
    let Some(b) = TestApp::spawn(backend).await else { return };
    let alice_w = a.join("alice", &a.owner_invite).await;
    let bob_w = b.join("bob", &b.owner_invite).await;
    let (alice, bob) = (Device::of(&a, &alice_w).await, Device::of(&b, &bob_w).await);

    // The DID document names the node's DIDComm endpoint.
    let doc = resolver().resolve(alice.did.as_str()).await.expect("resolve");
    assert_eq!(doc.didcomm_endpoints, vec![format!("{}/didcomm", a.url)]);

    let first = bob.send(&alice.did, "hello while you sleep").await;
    let settled = bob.settled(&first).await;
    assert_eq!(settled["state"], "delivered", "{settled}");

    let mut ws = alice.connect().await;
    say(&mut ws, "status-request", json!({})).await;
    let status = next(&mut ws, "status").await;
    assert_eq!(status["body"]["message_count"], 1);
    assert_eq!(status["body"]["requests_count"], 1, "a stranger lands in requests");
    say(&mut ws, "live-delivery-change", json!({"live_delivery": true})).await;
    let delivery = next(&mut ws, "delivery").await;
    let attachments = delivery["attachments"].as_array().expect("attachments");
    assert_eq!(attachments.len(), 1);
    assert_eq!(attachments[0]["id"], first.as_str());
    assert_eq!(attachments[0]["sichat"]["from"], bob.did.as_str());
    assert_eq!(attachments[0]["sichat"]["folder"], "requests");
    let msg = alice.open(&attachments[0]["data"]["json"]).await;
    assert_eq!(msg.body["text"], "hello while you sleep");
    assert_eq!(msg.from.as_ref(), Some(&bob.did));

    // Live: the next one arrives without asking.
    let second = bob.send(&alice.did, "and now live").await;
    let delivery = next(&mut ws, "delivery").await;
    assert_eq!(delivery["attachments"][0]["id"], second.as_str());
    let status = ack(&mut ws, &[&first]).await;
    assert_eq!(status["body"]["message_count"], 1, "the second is not acknowledged yet");
    drop(ws);

    // Reconnecting redelivers what was not acknowledged, and only that.
    let mut ws = alice.connect().await;
    say(&mut ws, "live-delivery-change", json!({"live_delivery": true})).await;
    let delivery = next(&mut ws, "delivery").await;
    let ids: Vec<&str> =
        delivery["attachments"].as_array().expect("list").iter().filter_map(|a| a["id"].as_str()).collect();
    assert_eq!(ids, vec![second.as_str()]);
    assert_eq!(ack(&mut ws, &[&second]).await["body"]["message_count"], 0);
    quiet(&mut ws).await;

    // A burst while live: every message arrives once, in order.
    let mut sent = Vec::new();
    for i in 0..20 {
        sent.push(bob.send(&alice.did, &format!("burst {i}")).await);
    }
    for id in &sent {
        assert_eq!(bob.settled(id).await["state"], "delivered");
    }
    let mut got = Vec::new();
    while got.len() < sent.len() {
        let d = next(&mut ws, "delivery").await;
        got.extend(d["attachments"].as_array().expect("list").iter().map(|a| a["id"].as_str().expect("id").to_owned()));
    }
    assert_eq!(got, sent, "each message once, in the order it arrived");
    let refs: Vec<&str> = got.iter().map(String::as_str).collect();
    assert_eq!(ack(&mut ws, &refs).await["body"]["message_count"], 0);
    a.stop().await;
    b.stop().await;
}

/// Members and friends go to the inbox, strangers to requests; the policy can refuse
/// strangers and block DIDs or whole nodes, and the sender only learns "not accepted".
async fn policy_decides_the_folder(backend: Backend) {
    let Some((a, b)) = two_nodes(backend).await else { return };
    let alice_w = a.join("alice", &a.owner_invite).await;
    let invite = a.invite(&alice_w, 1).await;
    let dave_w = a.join("dave", &invite).await;
    let bob_w = b.join("bob", &b.owner_invite).await;
    let invite = b.invite(&bob_w, 1).await;
    let carol_w = b.join("carol", &invite).await;
    let alice = Device::of(&a, &alice_w).await;
    let dave = Device::of(&a, &dave_w).await;
    let bob = Device::of(&b, &bob_w).await;
    let carol = Device::of(&b, &carol_w).await;

    // Alice issues Bob a FriendCredential; her node knows it from her issuance log.
    let alice_http = sichat_e2e::login(&a, &alice_w).await;
    let issued = alice_http
        .post(format!("{}/api/v1/issuer/credentials", a.url))
        .json(&json!({"type": "FriendCredential", "subject": bob.did, "claims": {"name": "Bob"}}))
        .send()
        .await
        .expect("issue");
    assert!(issued.status().is_success(), "issue: {}", issued.text().await.unwrap_or_default());

    let from_friend = bob.send(&alice.did, "friend").await;
    let from_stranger = carol.send(&alice.did, "stranger").await;
    let from_member = dave.send(&alice.did, "member").await;
    for (d, id) in [(&bob, &from_friend), (&carol, &from_stranger), (&dave, &from_member)] {
        assert_eq!(d.settled(id).await["state"], "delivered");
    }
    let mut ws = alice.connect().await;
    say(&mut ws, "delivery-request", json!({"limit": 10})).await;
    let d = next(&mut ws, "delivery").await;
    let folder = |id: &str| {
        d["attachments"].as_array().expect("list").iter().find(|a| a["id"] == id).expect("delivered")["sichat"]
            ["folder"]
            .clone()
    };
    assert_eq!(folder(&from_friend), "inbox");
    assert_eq!(folder(&from_stranger), "requests");
    assert_eq!(folder(&from_member), "inbox");
    ack(&mut ws, &[&from_friend, &from_stranger, &from_member]).await;

    // Strangers refused; a blocked DID and a blocked node refused even as friends.
    let set = |policy: Value| {
        let http = alice_http.clone();
        let url = format!("{}/api/v1/messages/policy", a.url);
        async move {
            let r = http.put(url).json(&policy).send().await.expect("PUT policy");
            (r.status().as_u16(), r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, body) = set(
        json!({"accept_members": true, "accept_credentials": ["FriendCredential"], "requests": false, "blocked": []}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let refused = carol.send(&alice.did, "let me in").await;
    let s = carol.settled(&refused).await;
    assert_eq!(s["state"], "not_accepted");
    assert!(s["last_error"].is_null(), "a refusal says nothing more: {s}");
    assert_eq!(bob.settled(&bob.send(&alice.did, "still a friend").await).await["state"], "delivered");

    let b_host = b.url.trim_start_matches("http://").to_owned();
    let (status, _) = set(json!({"accept_members": true, "accept_credentials": ["FriendCredential"], "requests": true, "blocked": [b_host]})).await;
    assert_eq!(status, 200);
    assert_eq!(bob.settled(&bob.send(&alice.did, "blocked node").await).await["state"], "not_accepted");
    let (status, _) =
        set(json!({"accept_members": true, "accept_credentials": [], "requests": true, "blocked": [dave.did]})).await;
    assert_eq!(status, 200);
    assert_eq!(dave.settled(&dave.send(&alice.did, "blocked member").await).await["state"], "not_accepted");

    // A policy that makes no sense is refused whole.
    let (status, body) =
        set(json!({"accept_members": true, "accept_credentials": [], "requests": true, "blocked": ["not a host!"]}))
            .await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_request")), "{body}");
    let (status, _) = set(json!({"accept_members": true, "requests": true})).await;
    assert_eq!(status, 422, "missing fields are refused");

    say(&mut ws, "status-request", json!({})).await;
    assert_eq!(next(&mut ws, "status").await["body"]["message_count"], 1, "only the friend's second message");
    a.stop().await;
    b.stop().await;
}

/// Malformed, oversized, misaddressed, replayed, forged and flooding deliveries are each
/// refused with their reason, and the mailbox holds only what was legitimately sent.
async fn bad_deliveries_change_nothing(backend: Backend) {
    let Some(a) = TestApp::spawn_with(backend, |c| {
        c.msg_max_bytes = 8 * 1024;
        c.msg_sender_per_second = 1;
    })
    .await
    else {
        return;
    };
    let Some(b) = TestApp::spawn(backend).await else { return };
    let alice_w = a.join("alice", &a.owner_invite).await;
    let bob_w = b.join("bob", &b.owner_invite).await;
    let alice = Device::of(&a, &alice_w).await;
    let bob = Device::of(&b, &bob_w).await;

    // From a device to its node.
    let (status, body) = bob.post("{not json".into()).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("malformed_message")));
    let (status, body) = bob.post(json!({"id": "x", "type": "https://didcomm.org/routing/2.0/forward", "body": {"next": alice.did}, "attachments": [{"data": {"json": {"protected": "e30", "ciphertext": "AA", "recipients": []}}}]}).to_string()).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("malformed_message")), "{body}");
    let (status, body) = bob.post(json!({"id": "y", "type": "https://didcomm.org/routing/2.0/forward", "body": {"next": alice.did}, "attachments": [{"data": {"json": {"hello": "plaintext"}}}]}).to_string()).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("malformed_message")), "a plaintext inner message: {body}");
    let (id, body) = bob.forward(&alice.did, "kept").await;
    assert_eq!(bob.post(body.clone()).await.0, 202);
    assert_eq!(bob.post(body.clone()).await.0, 202, "the same forward again is the same request");
    let (_, other) = bob.forward(&alice.did, "other content").await;
    let reused = other.replacen(
        &serde_json::from_str::<Value>(&other).expect("json")["id"].as_str().expect("id").to_string(),
        &id,
        1,
    );
    let (status, answer) = bob.post(reused).await;
    assert_eq!((status, answer["error"].as_str()), (409, Some("duplicate_message")), "{answer}");
    assert_eq!(bob.settled(&id).await["state"], "delivered");
    let unknown = Did::parse(&format!("{}:users:nobody", b.node.identity.did())).expect("did");
    let (_, body) = bob.forward(&bob.did, "to self").await;
    let (status, answer) = bob.post(body.replace(bob.did.as_str(), unknown.as_str())).await;
    assert_eq!((status, answer["error"].as_str()), (404, Some("unknown_recipient")), "{answer}");

    // From another node to A: what B's key signs, tampered with in transit or not.
    let deliver = |body: String, sender: Did, target: Option<String>| {
        let target = target.unwrap_or_else(|| format!("{}/didcomm", a.url));
        let url = format!("{}/didcomm", a.url);
        let identity = b.node.identity.clone();
        async move {
            let signed = sign_request(
                &*identity,
                &OutgoingRequest::delivery(&target, &sender, body.as_bytes()),
                now_ms() / 1000,
            )
            .expect("sign");
            (signed, url, body)
        }
    };
    let post = |signed: sichat_messaging::federation_auth::SignedHeaders, url: String, body: String| async move {
        let r = reqwest::Client::new()
            .post(url)
            .headers(signed.to_header_map().expect("headers"))
            .body(body)
            .send()
            .await
            .expect("POST");
        (r.status().as_u16(), r.json::<Value>().await.unwrap_or(Value::Null))
    };
    let (fresh_id, fresh) = bob.forward(&alice.did, "signed by B").await;
    let (signed, url, body) = deliver(fresh.clone(), bob.did.clone(), None).await;
    let (status, answer) =
        post(signed.clone(), url.clone(), fresh.replacen(&fresh_id, &sichat_core::ids::new_id(), 1)).await;
    assert_eq!((status, answer["error"].as_str()), (401, Some("bad_signature")), "tampered body: {answer}");
    let (status, answer) = post(signed.clone(), url.clone(), body.clone()).await;
    assert_eq!(status, 202, "{answer}");
    let (status, answer) = post(signed, url.clone(), body.clone()).await;
    assert_eq!((status, answer["error"].as_str()), (401, Some("bad_signature")), "a replayed request: {answer}");
    assert!(answer["message"].as_str().unwrap_or("").contains("replay"), "{answer}");

    let foreign = alice.did.clone(); // B vouching for a user of A
    let (_, f) = bob.forward(&alice.did, "forged sender").await;
    let (signed, url, body) = deliver(f, foreign, None).await;
    let (status, answer) = post(signed, url.clone(), body).await;
    assert_eq!((status, answer["error"].as_str()), (401, Some("bad_signature")), "foreign vouching: {answer}");
    let (_, f) = bob.forward(&alice.did, "for another node").await;
    let (signed, url, body) = deliver(f, bob.did.clone(), Some("http://elsewhere.example/didcomm".into())).await;
    assert_eq!(post(signed, url.clone(), body).await.0, 401, "signed for another node");
    let r = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/didcomm-plain+json")
        .body(fresh)
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status().as_u16(), 401, "unsigned");

    let (_, big) = bob.forward(&alice.did, &"x".repeat(20 * 1024)).await;
    assert_eq!(bob.post(big.clone()).await.0, 202, "B takes it (its limit is larger)");
    let (signed, url, body) = deliver(big, bob.did.clone(), None).await;
    let (status, answer) = post(signed, url.clone(), body).await;
    assert_eq!(status, 413, "A's limit: {answer}");

    // A flood from one sender: A lets 4 through (burst), then says 429.
    let mut codes = Vec::new();
    for i in 0..8 {
        let (_, f) = bob.forward(&alice.did, &format!("flood {i}")).await;
        let (signed, url, body) = deliver(f, bob.did.clone(), None).await;
        codes.push(post(signed, url, body).await.0);
    }
    assert!(codes.contains(&429), "flood: {codes:?}");

    // Alice's mailbox: what was legitimately delivered, nothing else.
    let mut ws = alice.connect().await;
    say(&mut ws, "delivery-request", json!({"limit": 100})).await;
    let d = next(&mut ws, "delivery").await;
    let texts: Vec<String> = {
        let mut out = Vec::new();
        for a in d["attachments"].as_array().expect("list") {
            out.push(alice.open(&a["data"]["json"]).await.body["text"].as_str().expect("text").to_owned());
        }
        out
    };
    let accepted_floods = codes.iter().filter(|c| **c == 202).count();
    assert_eq!(texts.len(), 2 + accepted_floods, "{texts:?}");
    assert!(texts.contains(&"kept".to_owned()) && texts.contains(&"signed by B".to_owned()));
    assert!(!texts.iter().any(|t| t.contains("forged") || t.contains("another node")));

    // Garbage on the pickup socket gets a problem report, and the session goes on.
    ws.send(Frame::Text("{not json".into())).await.expect("send");
    let problem = loop {
        if let Some(Ok(Frame::Text(t))) = ws.next().await {
            break serde_json::from_str::<Value>(t.as_str()).expect("json");
        }
    };
    assert_eq!(problem["type"], "https://didcomm.org/report-problem/2.0/problem-report");
    say(&mut ws, "status-request", json!({})).await;
    assert_eq!(next(&mut ws, "status").await["body"]["message_count"].as_u64(), Some(texts.len() as u64));
    a.stop().await;
    b.stop().await;
}

/// Over its quota a mailbox drops the oldest messages; old ones expire; both are reported
/// to the device once, and the report clears when acknowledged.
async fn quota_and_expiry_drop_and_report(backend: Backend) {
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
    let alice = Device::of(&a, &alice_w).await;
    let carol = Device::of(&a, &carol_w).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let id = carol.send(&alice.did, &format!("number {i}")).await;
        assert_eq!(carol.settled(&id).await["state"], "delivered");
        ids.push(id);
    }
    let mut ws = alice.connect().await;
    say(&mut ws, "status-request", json!({})).await;
    let status = next(&mut ws, "status").await;
    let kept = status["body"]["message_count"].as_i64().expect("count");
    assert!((1..5).contains(&kept), "{status}");
    assert!(status["body"]["total_bytes"].as_i64().expect("bytes") <= 4096);
    let dropped: i64 =
        status["body"]["dropped"].as_array().expect("drops").iter().map(|d| d["count"].as_i64().unwrap_or(0)).sum();
    assert_eq!(dropped + kept, 5, "{status}");
    assert_eq!(status["body"]["dropped"][0]["reason"], "quota");
    say(&mut ws, "delivery-request", json!({"limit": 10})).await;
    let d = next(&mut ws, "delivery").await;
    let got: Vec<&str> = d["attachments"].as_array().expect("list").iter().filter_map(|a| a["id"].as_str()).collect();
    let newest: Vec<&str> = ids[5 - kept as usize..].iter().map(String::as_str).collect();
    assert_eq!(got, newest, "the oldest went first");
    let status = ack(&mut ws, &got).await;
    assert_eq!(status["body"]["dropped"], json!([]), "the report is cleared once acknowledged");

    // Expiry: a message older than the age limit goes at the next housekeeping.
    let id = carol.send(&alice.did, "old news").await;
    assert_eq!(carol.settled(&id).await["state"], "delivered");
    sqlx::query("UPDATE msg_mailbox SET received_at = 0").execute(a.node.db.pool()).await.expect("age it");
    a.node.messaging.housekeeping().await.expect("housekeeping");
    say(&mut ws, "status-request", json!({})).await;
    let status = next(&mut ws, "status").await;
    assert_eq!(status["body"]["message_count"], 0);
    assert_eq!(status["body"]["dropped"][0]["reason"], "expired");
    assert_eq!(status["body"]["dropped"][0]["count"], 1);
    a.stop().await;
}

/// A message waits for every device of the user; a device revoked before picking it up no
/// longer holds it on the node: the next housekeeping lets it go and frees its bytes.
async fn revoked_device_owes_nothing(backend: Backend) {
    let Some(a) = TestApp::spawn(backend).await else { return };
    let alice_w = a.join("alice", &a.owner_invite).await;
    let phone_w = a.wallet("alice-phone");
    let out =
        sichat(&alice_w, &["--json", "device", "add", "--name", "phone", "--out", phone_w.to_str().expect("path")])
            .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let phone_id = json_out(&out)["device_id"].as_str().expect("id").to_owned();
    let invite = a.invite(&alice_w, 1).await;
    let carol_w = a.join("carol", &invite).await;
    let (alice, carol) = (Device::of(&a, &alice_w).await, Device::of(&a, &carol_w).await);
    let id = carol.send(&alice.did, "for both of your devices").await;
    assert_eq!(carol.settled(&id).await["state"], "delivered");

    let held = || async {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM msg_mailbox) AS messages, \
             (SELECT CAST(COALESCE(SUM(bytes), 0) AS BIGINT) FROM msg_usage) AS bytes",
        )
        .fetch_one(a.node.db.pool())
        .await
        .expect("count");
        use sqlx::Row;
        (row.get::<i64, _>("messages"), row.get::<i64, _>("bytes"))
    };
    let mut ws = alice.connect().await;
    say(&mut ws, "delivery-request", json!({"limit": 10})).await;
    let d = next(&mut ws, "delivery").await;
    assert_eq!(d["attachments"][0]["id"], id.as_str());
    assert_eq!(ack(&mut ws, &[&id]).await["body"]["message_count"], 0);
    a.node.messaging.housekeeping().await.expect("housekeeping");
    let (messages, bytes) = held().await;
    assert_eq!(messages, 1, "the phone has not picked it up");
    assert!(bytes > 0);

    assert!(sichat(&alice_w, &["device", "revoke", &phone_id]).await.status.success());
    a.node.messaging.housekeeping().await.expect("housekeeping");
    assert_eq!(held().await, (0, 0), "nobody owes it any more");
    a.stop().await;
}

/// Replicas on one PostgreSQL: a message committed by one replica reaches a device
/// connected live to another, woken through `LISTEN`/`NOTIFY`. The replica's own queue
/// re-check is set to an hour, so nothing else could bring it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_delivery_crosses_replicas() {
    sichat_e2e::or_hung(live_delivery_crosses_replicas_run()).await
}

async fn live_delivery_crosses_replicas_run() {
    let Some((a, b)) = two_nodes(Backend::Postgres).await else { return };
    let a2 = a.replica(|c| c.msg_pickup_recheck_secs = 3600).await;
    // Opening the replica minted a fresh owner invite (the node still has no account).
    let alice_w = a.join("alice", &a2.owner_invite).await;
    let bob_w = b.join("bob", &b.owner_invite).await;
    let alice = Device::at(&a2.url, a.node.identity.did().as_str(), &alice_w).await;
    let bob = Device::of(&b, &bob_w).await;

    let mut ws = alice.connect().await;
    say(&mut ws, "live-delivery-change", json!({"live_delivery": true})).await;
    assert_eq!(next(&mut ws, "status").await["body"]["message_count"], 0);
    // Bob's node delivers to the endpoint in Alice's DID document: the first replica.
    let id = bob.send(&alice.did, "through the other replica").await;
    let delivery = next(&mut ws, "delivery").await;
    assert_eq!(delivery["attachments"][0]["id"], id.as_str());
    assert_eq!(alice.open(&delivery["attachments"][0]["data"]["json"]).await.body["text"], "through the other replica");
    a2.stop().await;
    a.stop().await;
    b.stop().await;
}

/// Messages stored together (one statement on PostgreSQL) answer and leave the mailbox as
/// they would one by one: a repeat in the batch is a duplicate, a replay a conflict, and the
/// quota drops the oldest once.
async fn a_batch_is_stored_as_one_by_one(backend: Backend) {
    let dir = TempDir::new("mailbox-batch");
    let Some(test_db) = TestDb::create(backend, dir.path()).await else { return };
    let db = Db::open(&test_db.url).await.expect("database");
    sqlx::query(
        "INSERT INTO acct_users (id, name, root_key, quota, invite_id, created_at) VALUES ('u1', 'alice', 'k', 0, 'i', 0)",
    )
    .execute(db.pool())
    .await
    .expect("user");
    let item = |id: &str, body: &str| Incoming {
        message: NewMessage {
            user_id: "u1".into(),
            id: id.into(),
            sender: "did:web:b".into(),
            folder: "inbox",
            envelope: body.into(),
            body_hash: format!("h-{body}"),
            presentation: false,
            received_at: now_ms(),
        },
        devices: vec!["d1".into(), "d2".into()],
        notify: Some("test".into()),
    };
    let store = |items: Vec<Incoming>, quota: i64| {
        let db = db.clone();
        async move {
            let mut tx = db.pool().begin().await.expect("begin");
            let quota = Quota { total: quota, requests: quota };
            let out = insert_all(&mut tx, items.into_iter().map(Arc::new).collect(), quota).await.expect("insert");
            tx.commit().await.expect("commit");
            out
        }
    };
    let scalar = |sql: &'static str| {
        let db = db.clone();
        async move { sqlx::query_scalar::<_, i64>(sql).fetch_one(db.pool()).await.expect(sql) }
    };
    let (a, b, c) = ("a".repeat(100), "b".repeat(200), "c".repeat(300));
    let out =
        store(vec![item("m1", &a), item("m2", &b), item("m3", &c), item("m1", &a), item("m2", "other")], 1 << 20).await;
    let new = Inserted::New { dropped: (0, 0) };
    assert_eq!(out, vec![new, new, new, Inserted::Duplicate, Inserted::Conflict]);
    assert_eq!(scalar("SELECT COUNT(*) FROM msg_mailbox").await, 3);
    assert_eq!(scalar("SELECT COUNT(*) FROM msg_pending").await, 6);
    assert_eq!(scalar("SELECT bytes FROM msg_usage WHERE user_id = 'u1'").await, 600);
    assert_eq!(scalar("SELECT messages FROM msg_queue_totals WHERE device_id = 'd2'").await, 3);
    let order: Vec<String> =
        sqlx::query_scalar("SELECT id FROM msg_mailbox ORDER BY seq").fetch_all(db.pool()).await.expect("order");
    assert_eq!(order, ["m1", "m2", "m3"], "arrival order is kept");

    // Over the quota after the batch: the oldest goes, once, never the newest.
    let d = "d".repeat(100);
    let out = store(vec![item("m1", &a), item("m4", &d)], 600).await;
    assert_eq!(out, vec![Inserted::Duplicate, Inserted::New { dropped: (1, 100) }]);
    let left: Vec<String> =
        sqlx::query_scalar("SELECT id FROM msg_mailbox ORDER BY seq").fetch_all(db.pool()).await.expect("left");
    assert_eq!(left, ["m2", "m3", "m4"]);
    assert_eq!(scalar("SELECT bytes FROM msg_usage WHERE user_id = 'u1'").await, 600);
    assert_eq!(scalar("SELECT messages FROM msg_queue_totals WHERE device_id = 'd1'").await, 3);
    assert_eq!(scalar("SELECT COUNT(*) FROM msg_drops WHERE reason = 'quota' AND count = 1").await, 1);

    // Large messages go in several statements; a repeat in a later one is still a repeat.
    let big = "e".repeat(3 << 20);
    let out = store(vec![item("m5", &big), item("m6", &big), item("m5", &big)], 1 << 30).await;
    assert_eq!(out, vec![new, new, Inserted::Duplicate]);
    assert_eq!(scalar("SELECT COUNT(*) FROM msg_mailbox").await, 5);
    assert_eq!(scalar("SELECT messages FROM msg_queue_totals WHERE device_id = 'd1'").await, 5);
    db.close().await;
}

/// New forwards queued together (one statement on PostgreSQL) answer as they would one by
/// one: the same request again is no new entry, an id taken with other content is refused.
async fn forwards_queued_together_answer_alone(backend: Backend) {
    let dir = TempDir::new("outbox-batch");
    let Some(test_db) = TestDb::create(backend, dir.path()).await else { return };
    let db = Db::open(&test_db.url).await.expect("database");
    for (id, name) in [("u1", "alice"), ("u2", "bob")] {
        sqlx::query(
            "INSERT INTO acct_users (id, name, root_key, quota, invite_id, created_at) VALUES ($1, $2, 'k', 0, 'i', 0)",
        )
        .bind(id)
        .bind(name)
        .execute(db.pool())
        .await
        .expect("user");
    }
    let entry = |id: &str, user: &str, body: &str| {
        Arc::new(NewEntry {
            id: id.into(),
            user_id: user.into(),
            sender: format!("did:web:a:users:{user}"),
            recipient: "did:web:b:users:carol".into(),
            body: body.into(),
            body_hash: format!("h-{body}"),
            now: now_ms(),
            next_attempt_at: now_ms(),
        })
    };
    let queue = |items: Vec<Arc<NewEntry>>| {
        let db = db.clone();
        async move {
            let mut tx = db.pool().begin().await.expect("begin");
            let out = outbox::insert_all(&mut tx, items).await.expect("insert");
            tx.commit().await.expect("commit");
            out
        }
    };
    let out = queue(vec![
        entry("f1", "u1", "one"),
        entry("f2", "u1", "two"),
        entry("f1", "u1", "one"),
        entry("f2", "u1", "other"),
        entry("f1", "u2", "one"),
    ])
    .await;
    assert_eq!(out, vec![Ok(true), Ok(true), Ok(false), Err(()), Err(())]);
    let out = queue(vec![entry("f1", "u1", "one"), entry("f3", "u2", "three")]).await;
    assert_eq!(out, vec![Ok(false), Ok(true)]);
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT id, body FROM msg_outbox ORDER BY id").fetch_all(db.pool()).await.expect("rows");
    assert_eq!(rows, [("f1".into(), "one".into()), ("f2".into(), "two".into()), ("f3".into(), "three".into())]);
    db.close().await;
}
