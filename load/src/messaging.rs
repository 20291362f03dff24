//! Messaging end to end, between two running nodes on this machine.
//!
//! Set-up, through the nodes' public APIs as the wallet uses them: a sender account on
//! `--server` (node B) and a recipient account on `--recipient-server` (node A), one device
//! each with real keys. The recipient issues the sender a `FriendCredential` (so the
//! recipient's policy takes the sender into the inbox, as it does for friends), and the
//! recipient's DID document is resolved for its keyAgreement keys.
//!
//! Every message is what a device sends: a DIDComm message signed by the sender's device
//! key and authcrypted to every keyAgreement key of the recipient, in a Routing 2.0
//! `forward`, `POST`ed to `/api/v1/messages` on B. **Envelopes are packed before the clock
//! starts**, on every core: packing costs the device about 0.1–0.2 ms of CPU, which on a
//! machine shared with both nodes would be measured as node time. B queues each forward in
//! its outbox, delivers it to A with a signed request, and A stores it and pushes it over
//! the recipient's Message Pickup WebSocket (live mode), where the tool acknowledges each
//! `delivery` at once, as a device does.
//!
//! - `messaging`: for `--seconds`, either `--concurrency` loops posting back to back
//!   (`--rate 0`), or one message every 1/`--rate` s whatever the answers take (an open loop,
//!   so a slow answer cannot hide latency). Reported: messages delivered per second end to
//!   end, and the latency from the start of each `POST` to the arrival of its `delivery`
//!   frame on the WebSocket (p50, p90, p99, max), beside the `POST`'s own latency.
//! - `messaging-fill`: `--messages` messages to a recipient with no device connected; once
//!   the recipient's node holds them all, the nodes' RSS (`--recipient-pid`, `--sender-pid`),
//!   then a live pickup of the whole queue, checked message by message.
//!
//! Every delivered id must be one that was sent and acknowledged, each arriving once; a
//! sample of the delivered envelopes is unpacked with the recipient's key and checked.

use crate::{on_loopback, register, session, Args, Device, Target};
use anyhow::{bail, ensure, Context, Result};
use futures_util::{SinkExt, StreamExt};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use sichat_core::did::Did;
use sichat_core::ids::new_id;
use sichat_core::keys::X25519KeyPair;
use sichat_core::net::{Fetcher, NetPolicy};
use sichat_core::resolver::Resolver;
use sichat_messaging::{pack_authcrypt, unpack, AgreementKey, Message, RecipientKey, SigningKey, UnpackOptions};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as Frame;

const PICKUP: &str = "https://didcomm.org/messagepickup/3.0/";
const PROBLEM: &str = "https://didcomm.org/report-problem/2.0/problem-report";

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One account with its one device and a session.
struct Party {
    target: Arc<Target>,
    did: Did,
    device: Device,
    token: String,
}

impl Party {
    async fn join(http: &reqwest::Client, base: &str, invite: &str, prefix: &str) -> Result<Self> {
        let (target, _, mut devices) = register(http.clone(), base, invite, prefix, 1).await?;
        let device = devices.pop().context("a device")?;
        let token = session(&target, &device).await?;
        let did = Did::parse(&target.user_did)?;
        Ok(Self { target, did, device, token })
    }

    fn agreement(&self) -> Result<AgreementKey> {
        let key = X25519KeyPair::from_secret(&self.device.agree.secret())?;
        Ok(AgreementKey::new(self.did.url(&format!("device-{}-x25519", self.device.id)), key))
    }
}

/// A forward ready to post.
struct Packed {
    id: String,
    body: String,
}

/// Pack `n` forwards from `from` to `to` on every core.
fn pack_all(from: &Party, to: &Did, to_keys: &[RecipientKey], n: usize) -> Result<Vec<Packed>> {
    let threads = std::thread::available_parallelism().map_or(1, usize::from).min(n.max(1));
    let next = AtomicUsize::new(0);
    let sign_kid = from.did.url(&format!("device-{}", from.device.id));
    let parts: Vec<Result<Vec<(usize, Packed)>>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| -> Result<Vec<(usize, Packed)>> {
                    // Each thread its own copy of the key, so its remembered agreements
                    // are not shared behind one lock.
                    let agreement = from.agreement()?;
                    let signer = SigningKey { kid: &sign_kid, key: &from.device.sign };
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            return Ok(out);
                        }
                        let text = format!("load message {i}: the quick brown fox jumps over the lazy dog.");
                        let msg = Message::new("https://sichat.dev/message/1.0/text", json!({ "text": text }))
                            .with_from(from.did.clone())
                            .with_to(vec![to.clone()]);
                        let envelope: Value =
                            serde_json::from_str(&pack_authcrypt(&msg, &agreement, Some(&signer), to_keys)?)?;
                        let id = new_id();
                        let body = json!({
                            "id": id, "type": "https://didcomm.org/routing/2.0/forward", "to": [],
                            "body": {"next": to},
                            "attachments": [{"id": "envelope", "data": {"json": envelope}}],
                        })
                        .to_string();
                        out.push((i, Packed { id, body }));
                    }
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap_or_else(|_| bail!("a packing thread panicked"))).collect()
    });
    let mut all = Vec::with_capacity(n);
    for part in parts {
        all.extend(part?);
    }
    all.sort_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, p)| p).collect())
}

/// What was sent and what arrived, by message index; times in nanoseconds after `epoch`
/// (0: not yet).
struct Track {
    epoch: Instant,
    index: HashMap<String, usize>,
    posted: Vec<AtomicU64>,
    answered: Vec<AtomicU64>,
    arrived: Vec<AtomicU64>,
    accepted: AtomicUsize,
    delivered: AtomicUsize,
    duplicates: AtomicUsize,
    unknown: AtomicUsize,
    errors: AtomicUsize,
    first_error: Mutex<Option<String>>,
    /// Envelopes kept to unpack after the run: every `sample_every`th message.
    sample_every: usize,
    samples: Mutex<Vec<(usize, String)>>,
}

impl Track {
    fn new(packed: &[Packed]) -> Self {
        let n = packed.len();
        let slots = || (0..n).map(|_| AtomicU64::new(0)).collect::<Vec<_>>();
        Self {
            epoch: Instant::now(),
            index: packed.iter().enumerate().map(|(i, p)| (p.id.clone(), i)).collect(),
            posted: slots(),
            answered: slots(),
            arrived: slots(),
            accepted: AtomicUsize::new(0),
            delivered: AtomicUsize::new(0),
            duplicates: AtomicUsize::new(0),
            unknown: AtomicUsize::new(0),
            errors: AtomicUsize::new(0),
            first_error: Mutex::new(None),
            sample_every: (n / 20).max(1),
            samples: Mutex::new(Vec::new()),
        }
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64 + 1
    }

    fn error(&self, e: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
        if first.is_none() {
            eprintln!("first error: {e}");
            *first = Some(e);
        }
    }
}

/// Post message `i` from the sender's device to its node.
async fn send(http: &reqwest::Client, url: &str, token: &str, packed: &Packed, i: usize, track: &Track) {
    track.posted[i].store(track.now(), Ordering::Relaxed);
    let answer = http
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(packed.body.clone())
        .send()
        .await;
    track.answered[i].store(track.now(), Ordering::Relaxed);
    match answer {
        Ok(r) if r.status().as_u16() == 202 => {
            track.accepted.fetch_add(1, Ordering::Relaxed);
        }
        Ok(r) => {
            let status = r.status();
            track.error(format!("POST {url}: {status} {}", r.text().await.unwrap_or_default()));
        }
        Err(e) => track.error(format!("POST {url}: {e}")),
    }
}

async fn connect(party: &Party) -> Result<Socket> {
    let url = format!("{}/api/v1/messages/ws", party.target.base.replacen("http", "ws", 1));
    let mut req = url.into_client_request()?;
    req.headers_mut().insert("authorization", format!("Bearer {}", party.token).parse()?);
    // TCP_NODELAY, as a device should: an acknowledgement must not wait for the last one.
    Ok(tokio_tungstenite::connect_async_with_config(req, None, true).await.context("the pickup WebSocket")?.0)
}

async fn say(ws: &mut Socket, kind: &str, body: Value) -> Result<()> {
    let m = json!({"id": new_id(), "type": format!("{PICKUP}{kind}"), "body": body});
    ws.send(Frame::Text(m.to_string().into())).await?;
    Ok(())
}

/// A frame from the node, read only as far as the tool needs: envelopes stay raw text.
#[derive(serde::Deserialize)]
struct Incoming<'a> {
    #[serde(rename = "type")]
    kind: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    body: Option<&'a RawValue>,
    #[serde(default)]
    attachments: Vec<Delivered<'a>>,
}

#[derive(serde::Deserialize)]
struct Delivered<'a> {
    id: Option<String>,
    #[serde(borrow)]
    data: DeliveredData<'a>,
}

#[derive(serde::Deserialize)]
struct DeliveredData<'a> {
    #[serde(borrow)]
    json: Option<&'a RawValue>,
}

/// The recipient's device in live mode: record each delivered message, acknowledge every
/// `delivery` as soon as it arrives. Ends when `stop` fires or the socket closes.
async fn pick_up(mut ws: Socket, track: Arc<Track>, stop: Arc<tokio::sync::Notify>) -> Result<Socket> {
    say(&mut ws, "live-delivery-change", json!({"live_delivery": true})).await?;
    loop {
        let frame = tokio::select! {
            frame = ws.next() => frame,
            _ = stop.notified() => return Ok(ws),
        };
        let text = match frame {
            Some(Ok(Frame::Text(t))) => t,
            Some(Ok(Frame::Close(c))) => bail!("the node closed the pickup WebSocket: {c:?}"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => bail!("pickup WebSocket: {e}"),
            None => bail!("the node closed the pickup WebSocket"),
        };
        let at = track.now();
        let frame: Incoming = serde_json::from_str(text.as_str())?;
        if frame.kind == PROBLEM {
            track.error(format!("problem report on the pickup WebSocket: {}", frame.body.map_or("", RawValue::get)));
            continue;
        }
        if frame.kind.strip_prefix(PICKUP) != Some("delivery") {
            continue;
        }
        let mut ids = Vec::new();
        for a in frame.attachments {
            let Some(id) = a.id else {
                track.error("a delivered attachment without an id".into());
                continue;
            };
            let known = track.index.get(&id).copied();
            ids.push(id);
            let Some(i) = known else {
                track.unknown.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            if track.arrived[i].compare_exchange(0, at, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
                track.delivered.fetch_add(1, Ordering::Relaxed);
                if i % track.sample_every == 0 {
                    let envelope = a.data.json.map(|e| e.get().to_owned()).unwrap_or_default();
                    track.samples.lock().unwrap_or_else(|p| p.into_inner()).push((i, envelope));
                }
            } else {
                track.duplicates.fetch_add(1, Ordering::Relaxed);
            }
        }
        if !ids.is_empty() {
            say(&mut ws, "messages-received", json!({ "message_id_list": ids })).await?;
        }
    }
}

/// The recipient's queue as the node reports it (`status`), on a socket not in live mode.
async fn queued(ws: &mut Socket) -> Result<i64> {
    say(ws, "status-request", json!({})).await?;
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(30), ws.next()).await.context("no status in 30 s")?;
        if let Some(Ok(Frame::Text(t))) = frame {
            let v: Value = serde_json::from_str(t.as_str())?;
            if v["type"] == format!("{PICKUP}status") {
                return v["body"]["message_count"].as_i64().context("message_count");
            }
        } else if !matches!(frame, Some(Ok(_))) {
            bail!("the pickup WebSocket closed");
        }
    }
}

/// Unpack the kept envelopes with the recipient's key; each must be the sender's message
/// `i`. Returns how many were checked.
async fn check_samples(track: &Track, recipient: &Party, sender: &Did) -> Result<usize> {
    let resolver = Resolver::new(Arc::new(Fetcher::new(NetPolicy { allow_local: true })?));
    let keys = [recipient.agreement()?];
    let samples = std::mem::take(&mut *track.samples.lock().unwrap_or_else(|p| p.into_inner()));
    for (i, envelope) in &samples {
        let opened = unpack(envelope.as_bytes(), &keys, &resolver, &UnpackOptions::default())
            .await
            .with_context(|| format!("unpacking delivered message {i}"))?;
        ensure!(opened.authcrypted() && opened.signed(), "message {i} arrived neither authcrypted nor signed");
        ensure!(opened.message.from.as_ref() == Some(sender), "message {i} is not from the sender");
        let text = opened.message.body["text"].as_str().unwrap_or("");
        ensure!(text.starts_with(&format!("load message {i}:")), "message {i} holds another text: {text}");
    }
    Ok(samples.len())
}

/// `VmRSS` and `VmHWM` of a process, in KiB.
fn rss(pid: Option<u32>) -> Value {
    let Some(pid) = pid else { return Value::Null };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    };
    json!({"pid": pid, "rss_kib": field("VmRSS:"), "hwm_kib": field("VmHWM:")})
}

fn percentiles(mut ms: Vec<f64>) -> Value {
    ms.sort_by(f64::total_cmp);
    let p = |q: f64| ms.get(((ms.len() as f64 - 1.0) * q).round() as usize).map(|v| (v * 100.0).round() / 100.0);
    json!({"p50": p(0.5), "p90": p(0.9), "p99": p(0.99), "max": ms.last().map(|v| (v * 100.0).round() / 100.0)})
}

/// The set-up both modes share.
struct Setup {
    http: reqwest::Client,
    sender: Party,
    recipient: Party,
    packed: Vec<Packed>,
    pack_seconds: f64,
}

async fn set_up(args: &Args, count: usize) -> Result<Setup> {
    let recipient_server = args.recipient_server.as_deref().context("--recipient-server")?;
    on_loopback(recipient_server, "--recipient-server")?;
    let invite = args.invite.as_deref().context("--invite (of the sender's node)")?;
    let recipient_invite = args.recipient_invite.as_deref().context("--recipient-invite")?;
    let http = reqwest::Client::builder().pool_max_idle_per_host(args.concurrency.max(64)).build()?;
    let sender = Party::join(&http, &args.server, invite, "load-sender").await.context("the sender's account")?;
    let recipient = Party::join(&http, recipient_server, recipient_invite, "load-recipient")
        .await
        .context("the recipient's account")?;

    // The recipient befriends the sender: its node then takes the sender into the inbox.
    let r = http
        .post(format!("{}/api/v1/issuer/credentials", recipient.target.base))
        .bearer_auth(&recipient.token)
        .json(&json!({"type": "FriendCredential", "subject": sender.did, "claims": {"name": "Load sender"}}))
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("issuing the sender a FriendCredential: {} {}", r.status(), r.text().await.unwrap_or_default());
    }

    let resolver = Resolver::new(Arc::new(Fetcher::new(NetPolicy { allow_local: true })?));
    let keys = resolver.resolve(recipient.did.as_str()).await.context("resolving the recipient's DID")?;
    let to_keys = RecipientKey::all_of(&keys);
    ensure!(!to_keys.is_empty(), "the recipient's DID document lists no keyAgreement key");

    if !args.json {
        eprintln!("packing {count} messages (sign + authcrypt to {} key(s)) before the clock starts …", to_keys.len());
    }
    let began = Instant::now();
    let (packed, pack_seconds) = tokio::task::block_in_place(|| {
        pack_all(&sender, &recipient.did, &to_keys, count).map(|p| (p, began.elapsed().as_secs_f64()))
    })?;
    Ok(Setup { http, sender, recipient, packed, pack_seconds })
}

pub(crate) async fn run(args: &Args) -> Result<()> {
    if args.scenario == "messaging-fill" {
        fill(args).await
    } else {
        throughput(args).await
    }
}

/// Live end to end: messages per second and latency.
async fn throughput(args: &Args) -> Result<()> {
    // As fast as possible: enough envelopes for 5,000 messages per second (the target is
    // 2,000); at a fixed rate, exactly what the schedule needs.
    let count =
        if args.rate > 0.0 { (args.rate * args.seconds as f64).ceil() as usize } else { 5_000 * args.seconds as usize };
    let setup = set_up(args, count).await?;
    let track = Arc::new(Track::new(&setup.packed));
    let packed = Arc::new(setup.packed);
    let url = Arc::new(format!("{}/api/v1/messages", setup.sender.target.base));
    let token = Arc::new(setup.sender.token.clone());

    let ws = connect(&setup.recipient).await?;
    let stop = Arc::new(tokio::sync::Notify::new());
    let receiver = tokio::spawn(pick_up(ws, track.clone(), stop.clone()));
    // Let the live session settle (its first, empty, redelivery) before the clock starts.
    tokio::time::sleep(Duration::from_millis(300)).await;

    if !args.json {
        let how = if args.rate > 0.0 {
            format!("{} messages/s", args.rate)
        } else {
            format!("{} loops back to back", args.concurrency)
        };
        eprintln!("{how} for {} s, {} → {} …", args.seconds, args.server, setup.recipient.target.base);
    }
    let start = track.now();
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let mut tasks = tokio::task::JoinSet::new();
    if args.rate > 0.0 {
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        for i in 0..packed.len() {
            tick.tick().await;
            if Instant::now() >= deadline {
                break;
            }
            let (http, url, token, packed, track) =
                (setup.http.clone(), url.clone(), token.clone(), packed.clone(), track.clone());
            tasks.spawn(async move { send(&http, &url, &token, &packed[i], i, &track).await });
        }
    } else {
        let next = Arc::new(AtomicUsize::new(0));
        for _ in 0..args.concurrency {
            let (http, url, token, packed, track, next) =
                (setup.http.clone(), url.clone(), token.clone(), packed.clone(), track.clone(), next.clone());
            tasks.spawn(async move {
                while Instant::now() < deadline {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= packed.len() {
                        return;
                    }
                    send(&http, &url, &token, &packed[i], i, &track).await;
                }
            });
        }
    }
    while tasks.join_next().await.is_some() {}
    let send_end = track.now();
    let sent = track.posted.iter().filter(|t| t.load(Ordering::Relaxed) > 0).count();
    let exhausted = args.rate <= 0.0 && sent == packed.len() && Instant::now() < deadline;

    // Wait for the rest to arrive.
    let drain_deadline = Instant::now() + Duration::from_secs(args.drain_seconds);
    while track.delivered.load(Ordering::Relaxed) < track.accepted.load(Ordering::Relaxed)
        && Instant::now() < drain_deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.notify_one();
    let receiver = receiver.await?;
    if let Err(e) = &receiver {
        track.error(format!("{e:#}"));
    }

    let checked = check_samples(&track, &setup.recipient, &setup.sender.did).await?;
    let accepted = track.accepted.load(Ordering::Relaxed);
    let delivered = track.delivered.load(Ordering::Relaxed);
    let (mut e2e, mut post) = (Vec::new(), Vec::new());
    let (mut last_arrival, mut in_window) = (0u64, 0usize);
    for i in 0..packed.len() {
        let (p, a, r) = (
            track.posted[i].load(Ordering::Relaxed),
            track.answered[i].load(Ordering::Relaxed),
            track.arrived[i].load(Ordering::Relaxed),
        );
        if p > 0 && a > 0 {
            post.push((a - p) as f64 / 1e6);
        }
        if p > 0 && r > 0 {
            e2e.push(r.saturating_sub(p) as f64 / 1e6);
            last_arrival = last_arrival.max(r);
            in_window += usize::from(r <= send_end);
        }
    }
    let window = (send_end - start) as f64 / 1e9;
    let span = (last_arrival.max(send_end) - start) as f64 / 1e9;
    let report = json!({
        "scenario": "messaging",
        "mode": if args.rate > 0.0 { "rate" } else { "max" },
        "rate_target": (args.rate > 0.0).then_some(args.rate),
        "concurrency": (args.rate <= 0.0).then_some(args.concurrency),
        "prepacked": packed.len(),
        "pack_seconds": setup.pack_seconds,
        "envelope_pool_exhausted": exhausted,
        "send_seconds": window,
        "sent": sent,
        "accepted": accepted,
        "errors": track.errors.load(Ordering::Relaxed),
        "first_error": *track.first_error.lock().unwrap_or_else(|p| p.into_inner()),
        "delivered": delivered,
        "missing": accepted.saturating_sub(delivered),
        "duplicates": track.duplicates.load(Ordering::Relaxed),
        "unknown_ids": track.unknown.load(Ordering::Relaxed),
        "accepted_per_second": accepted as f64 / window,
        "delivered_per_second": delivered as f64 / span,
        "delivered_in_window_per_second": in_window as f64 / window,
        "drain_seconds": (last_arrival.saturating_sub(send_end)) as f64 / 1e9,
        "latency_ms": percentiles(e2e),
        "post_latency_ms": percentiles(post),
        "unpacked_and_checked": checked,
        "recipient_node": rss(args.recipient_pid),
        "sender_node": rss(args.sender_pid),
    });
    print(args, &report);
    Ok(())
}

/// Leave `--messages` messages for an offline recipient; report the nodes' RSS; pick them
/// all up live and check them.
async fn fill(args: &Args) -> Result<()> {
    let setup = set_up(args, args.messages).await?;
    let track = Arc::new(Track::new(&setup.packed));
    let packed = Arc::new(setup.packed);
    let url = Arc::new(format!("{}/api/v1/messages", setup.sender.target.base));
    let token = Arc::new(setup.sender.token.clone());
    if !args.json {
        eprintln!("sending {} messages to an offline recipient with {} loops …", packed.len(), args.concurrency);
    }
    let began = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency {
        let (http, url, token, packed, track, next) =
            (setup.http.clone(), url.clone(), token.clone(), packed.clone(), track.clone(), next.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= packed.len() {
                    return;
                }
                send(&http, &url, &token, &packed[i], i, &track).await;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let send_seconds = began.elapsed().as_secs_f64();
    let accepted = track.accepted.load(Ordering::Relaxed);

    // Wait until the recipient's node holds them all (a status request reads the queue; the
    // device is not in live mode, so nothing is delivered).
    let mut ws = connect(&setup.recipient).await?;
    let (mut held, mut last, mut still) = (0, -1, Instant::now());
    while held < accepted as i64 {
        held = queued(&mut ws).await?;
        if held != last {
            (last, still) = (held, Instant::now());
        } else if still.elapsed() > Duration::from_secs(args.drain_seconds) {
            bail!("the recipient's node holds {held} of {accepted} messages and no more arrive");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let fill_seconds = began.elapsed().as_secs_f64();
    // Let the nodes settle (outbox records, WAL checkpoints) before reading their memory.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (recipient_full, sender_full) = (rss(args.recipient_pid), rss(args.sender_pid));
    if !args.json {
        eprintln!("{held} messages waiting after {fill_seconds:.1} s; RSS {recipient_full}; picking them up …");
    }

    let stop = Arc::new(tokio::sync::Notify::new());
    let picked = Instant::now();
    let receiver = tokio::spawn(pick_up(ws, track.clone(), stop.clone()));
    let drain_deadline = Instant::now() + Duration::from_secs(args.drain_seconds.max(600));
    let mut progress = (0, Instant::now());
    while track.delivered.load(Ordering::Relaxed) < accepted && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = track.delivered.load(Ordering::Relaxed);
        if now != progress.0 {
            progress = (now, Instant::now());
        } else if progress.1.elapsed() > Duration::from_secs(args.drain_seconds) {
            break;
        }
    }
    let pickup_seconds = picked.elapsed().as_secs_f64();
    stop.notify_one();
    let mut ws = match receiver.await? {
        Ok(ws) => ws,
        Err(e) => bail!("pickup failed: {e:#}"),
    };
    // Acknowledgements are in flight: wait for the node to count the queue down.
    let mut left = queued(&mut ws).await?;
    for _ in 0..100 {
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        left = queued(&mut ws).await?;
    }
    let checked = check_samples(&track, &setup.recipient, &setup.sender.did).await?;
    let delivered = track.delivered.load(Ordering::Relaxed);
    let report = json!({
        "scenario": "messaging-fill",
        "messages": packed.len(),
        "pack_seconds": setup.pack_seconds,
        "accepted": accepted,
        "errors": track.errors.load(Ordering::Relaxed),
        "first_error": *track.first_error.lock().unwrap_or_else(|p| p.into_inner()),
        "send_seconds": send_seconds,
        "accepted_per_second": accepted as f64 / send_seconds,
        "held_by_recipient_node": held,
        "fill_seconds": fill_seconds,
        "recipient_node_full": recipient_full,
        "sender_node_full": sender_full,
        "picked_up": delivered,
        "duplicates": track.duplicates.load(Ordering::Relaxed),
        "unknown_ids": track.unknown.load(Ordering::Relaxed),
        "pickup_seconds": pickup_seconds,
        "picked_up_per_second": delivered as f64 / pickup_seconds,
        "left_after_acknowledging": left,
        "unpacked_and_checked": checked,
        "recipient_node_after_pickup": rss(args.recipient_pid),
        "pickup_ok": delivered == accepted && left == 0 && track.duplicates.load(Ordering::Relaxed) == 0,
    });
    print(args, &report);
    ensure!(delivered == accepted, "picked up {delivered} of {accepted} messages");
    ensure!(left == 0, "{left} messages still queued after acknowledging everything");
    Ok(())
}

fn print(args: &Args, report: &Value) {
    if args.json {
        println!("{report}");
    } else {
        println!("{}", serde_json::to_string_pretty(report).unwrap_or_default());
    }
}
