//! `sichat message …`: end-to-end encrypted messages through your node.
//!
//! - **Sending.** The text becomes a DIDComm message from your DID to the recipient's,
//!   signed by this device's key and authcrypted from its X25519 key to every
//!   `keyAgreement` key of the recipient (so each of their devices can read it), wrapped in a
//!   Routing 2.0 forward and handed to your own node (`POST /api/v1/messages`), which
//!   delivers it to theirs and retries until it can.
//! - **Receiving.** Your node keeps messages until each of your devices has taken them.
//!   This wallet fetches them over Message Pickup ([`crate::pickup`]), opens each,
//!   checks that the sender the envelope proves is the one the node vouched for, keeps it
//!   sealed in the wallet, and only then acknowledges it, so nothing is lost in between.

use crate::client::{Client, ServerError};
use crate::contacts::{self, progress, resolve_failed};
use crate::pickup::{Delivered, Dropped, Event, Pickup};
use crate::wallet::{self, KnownKeys, Profile, StoredMessage, Wallet};
use crate::{date, Ctx};
use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use sichat_core::did::Did;
use sichat_core::ids::{b64url, now_ms};
use sichat_core::keys::{X25519KeyPair, X25519Public};
use sichat_core::net::FetchError;
use sichat_core::resolver::{ResolveError, Resolver};
use sichat_messaging::forward::FORWARD_TYPE;
use sichat_messaging::{
    pack_authcrypt, unpack, AgreementKey, EnvelopeError, KeyResolver, Message, MessageId, RecipientKey, SigningKey,
    UnpackOptions,
};
use std::collections::HashSet;
use std::io::Read;
use std::path::PathBuf;

mod inbox;
pub(crate) use inbox::fetch_waiting;
mod sent;
mod watch;

use inbox::{inbox, read};
use sent::status;
use watch::watch;

/// The DIDComm message type of a Sichat text message; its body is `{"text": …}`.
pub const TEXT_TYPE: &str = "https://sichat.dev/message/1.0/text";
/// Messages asked for per delivery request.
const BATCH: usize = 50;

#[derive(Subcommand)]
pub enum MessageCmd {
    /// Send an end-to-end encrypted message: only the recipient's devices can read it.
    /// Your node delivers it, and keeps retrying while their node is down.
    Send(SendArgs),
    /// Fetch new messages from your node, keep them in this wallet, and list your inbox.
    /// Messages from people your policy does not accept directly wait in --requests
    /// (see `sichat policy show`).
    Inbox {
        /// List the requests folder instead: messages from people not (yet) accepted.
        #[arg(long)]
        requests: bool,
        /// Show at most this many of the newest messages.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// List what this wallet holds without asking the node (also what happens, with a
        /// warning, when the node does not answer).
        #[arg(long)]
        offline: bool,
    },
    /// Show one message in full (by the id `inbox` lists; a unique prefix is enough).
    Read {
        /// The message's id.
        id: String,
    },
    /// Receive messages live: each is printed as it arrives (and kept in this wallet),
    /// until Ctrl-C. Reconnects by itself when the connection drops.
    Watch,
    /// Where a message you sent is: queued (your node is still trying), delivered (their
    /// node has it), not_accepted (their policy refused it) or failed.
    Status {
        /// The id `sichat message send` printed.
        id: String,
    },
}

#[derive(Args)]
pub struct SendArgs {
    /// Who to send to: a DID, name@host (an account on a Sichat node), or a contact name
    /// (see `sichat contacts`).
    to: String,
    /// The text to send.
    #[arg(required_unless_present = "file", conflicts_with = "file")]
    text: Option<String>,
    /// Send the text in this file instead ("-" reads standard input).
    #[arg(long, value_name = "FILE")]
    file: Option<PathBuf>,
    /// Attach a presentation of this credential you hold (see `sichat credential list`),
    /// e.g. a FriendCredential the recipient issued you, so their node can accept you.
    #[arg(long, value_name = "CREDENTIAL_ID")]
    present: Option<String>,
}

pub async fn run(ctx: &Ctx, cmd: MessageCmd) -> Result<()> {
    match cmd {
        MessageCmd::Send(a) => send(ctx, a).await,
        MessageCmd::Inbox { requests, limit, offline } => inbox(ctx, requests, limit, offline).await,
        MessageCmd::Read { id } => read(ctx, &id),
        MessageCmd::Watch => watch(ctx).await,
        MessageCmd::Status { id } => status(ctx, &id).await,
    }
}

/// The wallet's node, or what to do without one.
pub(crate) fn need_node(profile: &Profile) -> Result<String> {
    profile.server.clone().ok_or_else(|| {
        anyhow!(
            "messaging needs a node: this wallet is a did:key identity with no server, and a node is what keeps \
             your messages while your devices are off. Ask someone who runs sichatd for an invite (or run your \
             own), then make a wallet there: `sichat --wallet DIR init --server URL --invite CODE --name NAME`"
        )
    })
}

/// Log in to the wallet's node, keeping a fresher device certificate if it hands one back,
/// and following the node to a new public URL (from the next command on).
pub(crate) async fn login(ctx: &Ctx, w: &Wallet, pass: &str) -> Result<Client> {
    let server = need_node(&w.profile)?;
    let mut c = Client::new(&server)?;
    let login = match c.login(w).await {
        Err(e) if crate::follow::moved_away(&e) => return crate::follow::follow_moved(ctx, w, pass).await,
        other => other?,
    };
    let mut profile = w.profile.clone();
    let follows = crate::follow::follow_node(&mut profile, &login);
    if login.certificate.is_some() || follows {
        wallet::update(&ctx.dir, pass, |saved| {
            if let Some(fresh) = login.certificate.clone() {
                saved.certificate = fresh;
            }
            crate::follow::follow_node(&mut saved.profile, &login);
            Ok(())
        })?;
    }
    if follows {
        crate::follow::tell_followed(ctx, &profile);
    }
    Ok(c)
}

/// Add what to do to a refusal from the node, keeping its code.
fn explain(e: anyhow::Error, hints: &[(&str, &str)]) -> anyhow::Error {
    match e.downcast::<ServerError>() {
        Ok(mut s) => {
            if let Some((_, hint)) = hints.iter().find(|(code, _)| *code == s.code) {
                s.message = format!("{}. {hint}", s.message.trim_end_matches('.'));
            }
            anyhow!(s)
        }
        Err(e) => e,
    }
}

const NO_MESSAGING: (&str, &str) =
    ("http_404", "Your node has no messaging endpoint: ask its operator to upgrade sichatd");

fn read_text(a: &SendArgs) -> Result<String> {
    let text = match (&a.text, &a.file) {
        (Some(t), _) => t.clone(),
        (None, Some(path)) if path.as_os_str() == "-" => {
            let mut t = String::new();
            std::io::stdin().read_to_string(&mut t).context("cannot read the message from standard input (UTF-8)")?;
            t
        }
        (None, Some(path)) => {
            let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            String::from_utf8(bytes).map_err(|_| anyhow!("{} is not UTF-8 text", path.display()))?
        }
        (None, None) => bail!("give the text to send, or --file FILE"),
    };
    if text.trim().is_empty() {
        bail!("the message is empty: nothing sent");
    }
    Ok(text)
}

async fn send(ctx: &Ctx, a: SendArgs) -> Result<()> {
    let text = read_text(&a)?;
    need_node(&wallet::read_profile(&ctx.dir)?)?;
    let (w, pass) = ctx.open()?;
    let resolver = ctx.resolver(&[w.profile.server.as_deref()])?;
    let to = contacts::recipient(ctx, &w, &resolver, &a.to).await?;
    progress(ctx, &format!("Resolving {} …", to.did));
    let (msg, envelope) = seal_to(ctx, &w, &pass, &resolver, &to.did, TEXT_TYPE, json!({ "text": text })).await?;
    let forward_id = MessageId::new();
    let presentation = match &a.present {
        None => None,
        Some(id) => {
            let held = w
                .credentials
                .iter()
                .find(|c| &c.id == id)
                .ok_or_else(|| anyhow!("this wallet holds no credential {id}: see `sichat credential list`"))?;
            Some(crate::present::vp_jwt(&w, held, to.did.as_str(), forward_id.as_str())?)
        }
    };
    let forward = forward(&forward_id, &to.did, envelope, presentation.as_deref());
    progress(ctx, "Handing it to your node …");
    let mut c = login(ctx, &w, &pass).await?;
    // Kept until the node has delivered it: a node restored from an older backup gets it again.
    sent::keep(ctx, &pass, &w, &forward_id, &forward)?;
    let posted: Result<Value> = c.post("/api/v1/messages", &forward).await;
    c.logout().await;
    if posted.is_err() {
        sent::forget(ctx, forward_id.as_str())?;
    }
    let posted = posted.map_err(|e| {
        explain(
            e,
            &[
                ("unknown_recipient", "Check the DID or name@host: the recipient's node must offer DIDComm messaging"),
                ("message_too_large", "Send a shorter text or a smaller file"),
                ("too_many_recipients", "The recipient lists more device keys than your node accepts"),
                ("rate_limited", "Wait a little, then send again"),
                ("malformed_message", "This sichat and your node disagree on the format: update both"),
                NO_MESSAGING,
            ],
        )
    })?;
    let id = posted["id"].as_str().unwrap_or(forward_id.as_str()).to_owned();
    let state = posted["state"].as_str().unwrap_or("queued").to_owned();
    let out = json!({
        "id": id,
        "state": state,
        "to": to.did,
        "message_id": msg.id,
        "presentation": a.present.is_some(),
    });
    ctx.print(&out, |_| {
        println!("Sent {id} to {} ({state}).", to.label);
        println!("Your node delivers it, retrying while their node is down: `sichat message status {id}`.");
    })
}

/// A DIDComm message of `kind` with `body`, from this wallet's device to every device of
/// `to`: the message and its JWE.
pub(crate) async fn seal_to(
    ctx: &Ctx,
    w: &Wallet,
    pass: &str,
    resolver: &Resolver,
    to: &Did,
    kind: &str,
    body: Value,
) -> Result<(Message, Value)> {
    let recipients = recipient_keys(ctx, w, pass, resolver, to).await?;
    if recipients.is_empty() {
        bail!("{to} lists no keyAgreement key in its DID document: it cannot receive encrypted messages");
    }
    let me = Did::parse(&w.profile.did).context("this wallet's DID is corrupt")?;
    let device = Device { did: &me, id: &w.profile.device_id, sign: &w.device_sign, agree: &w.device_agree };
    progress(ctx, &format!("Encrypting to {} key(s) of {to} …", recipients.len()));
    device.pack(to, &recipients, kind, body)
}

/// Seal a message of `kind` to `to` and hand it to the node behind the signed-in `c`, which
/// delivers it. The node's answer (`id`, `state`).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn hand_over(
    ctx: &Ctx,
    w: &Wallet,
    pass: &str,
    resolver: &Resolver,
    c: &Client,
    to: &Did,
    kind: &str,
    body: Value,
) -> Result<Value> {
    let (_, envelope) = seal_to(ctx, w, pass, resolver, to, kind, body).await?;
    c.post("/api/v1/messages", &forward(&MessageId::new(), to, envelope, None)).await
}

/// Every key agreement key of `did`, as its DID document lists them now. When the document
/// cannot be fetched (the recipient's node is down), the keys seen last time, with a
/// warning: the sender's node keeps retrying until the recipient's node is back.
async fn recipient_keys(
    ctx: &Ctx,
    w: &Wallet,
    pass: &str,
    resolver: &Resolver,
    did: &Did,
) -> Result<Vec<RecipientKey>> {
    let known = w.known_keys.iter().find(|k| k.did == did.as_str());
    match resolver.resolve(did.as_str()).await {
        Ok(keys) => {
            let recipients = RecipientKey::all_of(&keys);
            let listed: Vec<(String, String)> =
                recipients.iter().map(|r| (r.kid.clone(), r.key.to_multibase())).collect();
            if known.is_none_or(|k| k.keys != listed) {
                wallet::update(&ctx.dir, pass, |w| {
                    w.known_keys.retain(|k| k.did != did.as_str());
                    w.known_keys.push(KnownKeys { did: did.to_string(), keys: listed, seen_at: now_ms() });
                    Ok(())
                })?;
            }
            Ok(recipients)
        }
        Err(e) => {
            let Some(known) = known else { return Err(resolve_failed(did, e)) };
            let recipients = known
                .keys
                .iter()
                .map(|(kid, key)| Ok(RecipientKey { kid: kid.clone(), key: X25519Public::from_multibase(key)? }))
                .collect::<Result<Vec<_>>>()?;
            eprintln!(
                "warning: cannot fetch {did}'s DID document now ({e}); encrypting to the {} key(s) it listed at {}. \
                 Your node will deliver when theirs is back.",
                recipients.len(),
                date(known.seen_at)
            );
            Ok(recipients)
        }
    }
}

/// This device, as a sender.
struct Device<'a> {
    did: &'a Did,
    id: &'a str,
    sign: &'a sichat_core::keys::Ed25519KeyPair,
    agree: &'a X25519KeyPair,
}

impl Device<'_> {
    /// A text message to `to`, signed by this device's key and authcrypted from its key
    /// agreement key to every one of `recipients`. Returns the message and the JWE.
    fn pack(&self, to: &Did, recipients: &[RecipientKey], kind: &str, body: Value) -> Result<(Message, Value)> {
        let msg = Message::new(kind, body).with_from(self.did.clone()).with_to(vec![to.clone()]);
        let sign_kid = format!("{}#device-{}", self.did, self.id);
        let sender = AgreementKey::new(format!("{sign_kid}-x25519"), X25519KeyPair::from_secret(&self.agree.secret())?);
        let packed = pack_authcrypt(&msg, &sender, Some(&SigningKey { kid: &sign_kid, key: self.sign }), recipients)
            .map_err(|e| anyhow!("cannot pack the message: {e}"))?;
        Ok((msg, serde_json::from_str(&packed)?))
    }
}

/// The Routing 2.0 forward a device hands its node: a plaintext (the session already
/// authenticates both ends) carrying the encrypted message for `next`, and optionally a
/// `vp+jwt` presentation for the recipient's node.
pub(crate) fn forward(id: &MessageId, next: &Did, envelope: Value, presentation: Option<&str>) -> Value {
    let mut attachments = vec![json!({"id": "envelope", "data": {"json": envelope}})];
    if let Some(vp) = presentation {
        attachments.push(json!({
            "id": "presentation",
            "media_type": "application/vp+jwt",
            "data": {"base64": b64url(vp.as_bytes())},
        }));
    }
    json!({
        "id": id,
        "type": FORWARD_TYPE,
        "to": [],
        "body": {"next": next},
        "attachments": attachments,
    })
}

/// Opens delivered envelopes with this device's key agreement key.
struct Opener {
    ours: Vec<AgreementKey>,
    resolver: Resolver,
}

enum Opened {
    /// Opened (or found unreadable for good): keep it and acknowledge it.
    Keep(Box<StoredMessage>),
    /// Cannot be opened now (the sender's DID document is out of reach): leave it on the node.
    Later(String),
}

impl Opener {
    fn new(ctx: &Ctx, w: &Wallet) -> Result<Self> {
        // This device's key, under each DID of the account a sender may have used.
        let mut ours = Vec::new();
        for did in std::iter::once(&w.profile.did).chain(&w.profile.also_known_as) {
            let kid = format!("{did}#device-{}-x25519", w.profile.device_id);
            ours.push(AgreementKey::new(kid, X25519KeyPair::from_secret(&w.device_agree.secret())?));
        }
        Ok(Self { ours, resolver: ctx.resolver(&[w.profile.server.as_deref()])? })
    }

    async fn open(&self, d: &Delivered) -> Opened {
        open(&self.ours, &self.resolver, d).await
    }
}

/// Open one delivered message with `ours`, resolving its sender with `resolver`.
async fn open<R: KeyResolver>(ours: &[AgreementKey], resolver: &R, d: &Delivered) -> Opened {
    let mut kept = StoredMessage {
        id: d.id.clone(),
        message_id: d.id.clone(),
        from: String::new(),
        vouched_from: d.from.clone(),
        sender_mismatch: false,
        folder: d.folder.clone(),
        kind: String::new(),
        body: Value::Null,
        thid: None,
        created_time: None,
        received_time: d.received_time,
        presentation: d.presentation,
        unreadable: None,
        raw: None,
        read: false,
    };
    // What cannot be opened is kept as it came, with the reason: acknowledging it deletes
    // the node's copy, so the wallet's is the only one left.
    let unreadable = |mut kept: StoredMessage, why: String| {
        kept.unreadable = Some(why);
        kept.raw = Some(d.envelope.clone());
        Opened::Keep(Box::new(kept))
    };
    let bytes = match serde_json::to_vec(&d.envelope) {
        Ok(b) => b,
        Err(e) => return unreadable(kept, e.to_string()),
    };
    match unpack(&bytes, ours, resolver, &UnpackOptions::default()).await {
        Ok(u) => {
            kept.from = u.authenticated_sender().map(Did::to_string).unwrap_or_default();
            kept.sender_mismatch = kept.from != d.from;
            kept.message_id = u.message.id.to_string();
            kept.kind = u.message.kind;
            kept.body = u.message.body;
            kept.thid = u.message.thid;
            kept.created_time = u.message.created_time;
            Opened::Keep(Box::new(kept))
        }
        Err(EnvelopeError::SenderKeys(ResolveError::Fetch(
            e @ (FetchError::Unreachable { .. } | FetchError::Failed { .. } | FetchError::Status { status: 500.., .. }),
        ))) => Opened::Later(format!("cannot fetch the sender's DID document ({:#})", anyhow::Error::new(e))),
        Err(e @ EnvelopeError::NotForUs { .. }) => {
            unreadable(kept, format!("not encrypted to this device (was it sent before this device was added?): {e}"))
        }
        Err(e) => unreadable(kept, e.to_string()),
    }
}

/// What one delivery came to.
struct Taken {
    /// Ids to acknowledge: kept now, or kept before.
    ack: Vec<String>,
    /// Messages this wallet had not kept before.
    fresh: Vec<StoredMessage>,
    /// Every message in the wallet afterwards, when it was written.
    all: Option<Vec<StoredMessage>>,
}

/// Open a delivery and keep what is new sealed in the wallet. Warns about sender
/// mismatches, unreadable messages and messages left for later.
async fn take(ctx: &Ctx, pass: &str, opener: &Opener, items: &[Delivered]) -> Result<Taken> {
    let mut keep = Vec::new();
    for d in items {
        match opener.open(d).await {
            Opened::Keep(m) => keep.push(*m),
            Opened::Later(why) => {
                eprintln!("warning: message {} from {} stays on your node for now: {why}", d.id, d.from)
            }
        }
    }
    if keep.is_empty() {
        return Ok(Taken { ack: Vec::new(), fresh: Vec::new(), all: None });
    }
    let ack = keep.iter().map(|m| m.id.clone()).collect();
    let (fresh, all) = wallet::update(&ctx.dir, pass, |w| {
        let mut fresh = Vec::new();
        for m in keep {
            let known = w.messages.iter().chain(fresh.iter()).any(|k: &StoredMessage| {
                k.id == m.id || (!m.from.is_empty() && k.from == m.from && k.message_id == m.message_id)
            });
            if !known {
                fresh.push(m);
            }
        }
        w.messages.extend(fresh.iter().cloned());
        Ok((fresh, w.messages.clone()))
    })?;
    for m in &fresh {
        if let Some(why) = &m.unreadable {
            eprintln!("warning: message {} from {} cannot be read on this device: {why}", m.id, m.vouched_from);
        } else if m.sender_mismatch {
            let proved = if m.from.is_empty() { "no sender at all" } else { m.from.as_str() };
            eprintln!(
                "warning: sender mismatch in message {}: the node vouched for {}, but the envelope proves {proved}. \
                 Do not trust who it claims to be from.",
                m.id, m.vouched_from
            );
        }
    }
    Ok(Taken { ack, fresh, all: Some(all) })
}

/// One warning for every drop report in `drops`, however many there are: how many
/// messages went, between when, and why.
fn warn_dropped(drops: &[Dropped]) {
    let (Some(first), Some(last)) = (drops.iter().map(|d| d.at).min(), drops.iter().map(|d| d.at).max()) else {
        return;
    };
    let count: u64 = drops.iter().map(|d| d.count).sum();
    let bytes: u64 = drops.iter().map(|d| d.bytes).sum();
    let mut reasons: Vec<&str> = Vec::new();
    for d in drops {
        let why = match d.reason.as_str() {
            "quota" => "your mailbox on the node was full, so the oldest went first",
            "requests_quota" => "the requests folder (messages from strangers) was full, so its oldest went first",
            "expired" => "they waited on the node longer than it keeps messages",
            "move_limit" => "your account moved with more waiting than a move carries, so the oldest stayed behind",
            other => other,
        };
        if !reasons.contains(&why) {
            reasons.push(why);
        }
    }
    let when = if first == last {
        format!("on {}", date(first))
    } else {
        format!("between {} and {}", date(first), date(last))
    };
    eprintln!("warning: your node dropped {count} message(s) ({bytes} bytes) unread {when}: {}", reasons.join("; "));
}

/// What `inbox` fetched.
#[derive(Default)]
struct Fetched {
    fresh: Vec<StoredMessage>,
    all: Option<Vec<StoredMessage>>,
    dropped: Vec<Dropped>,
}

/// Fetch everything waiting on the node for this device, keep it, then acknowledge it.
async fn fetch_all(ctx: &Ctx, pass: &str, opener: &Opener, c: &Client) -> Result<Fetched> {
    let token = c.token().ok_or_else(|| anyhow!("not logged in"))?;
    let mut p = Pickup::connect(c.base(), token).await?;
    let mut out = Fetched { fresh: Vec::new(), all: None, dropped: Vec::new() };
    let note = |s: crate::pickup::Status, dropped: &mut Vec<Dropped>| {
        for d in s.dropped {
            if !dropped.contains(&d) {
                dropped.push(d);
            }
        }
        s.message_count
    };
    p.status_request().await?;
    let mut waiting = match p.answer().await? {
        Event::Status(s) => note(s, &mut out.dropped),
        _ => 1,
    };
    let mut acked_any = false;
    while waiting > 0 {
        p.delivery_request(BATCH).await?;
        let items = match p.answer().await? {
            Event::Delivery(items) => items,
            Event::Status(s) => {
                note(s, &mut out.dropped);
                break;
            }
            _ => continue,
        };
        if items.is_empty() {
            break;
        }
        progress(ctx, &format!("Opening {} message(s) …", items.len()));
        let taken = take(ctx, pass, opener, &items).await?;
        out.fresh.extend(taken.fresh);
        if taken.all.is_some() {
            out.all = taken.all;
        }
        if taken.ack.is_empty() {
            break; // only messages that must wait are left
        }
        p.received(&taken.ack).await?;
        acked_any = true;
        waiting = match p.answer().await? {
            Event::Status(s) => note(s, &mut out.dropped),
            _ => 0,
        };
    }
    if !out.dropped.is_empty() && !acked_any {
        // Acknowledging (even nothing) tells the node the drop report was seen.
        p.received(&[]).await?;
        let _ = p.answer().await;
    }
    p.close().await;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::inbox::{find, preview, sender_label, text_of};
    use super::*;
    use crate::wallet::Contact;
    use sichat_core::did::{DidDocument, Relationships};
    use sichat_core::keys::Ed25519KeyPair;
    use sichat_core::resolver::Keys;
    use std::collections::HashMap;
    use std::sync::Arc;

    /// A user with devices, as a node lists them in the user's DID document.
    struct User {
        did: Did,
        devices: Vec<(String, Ed25519KeyPair, X25519KeyPair)>,
    }

    impl User {
        fn new(did: &str, devices: usize) -> Self {
            let devices = (0..devices)
                .map(|i| (format!("d{i}"), Ed25519KeyPair::generate(), X25519KeyPair::generate()))
                .collect();
            Self { did: Did::parse(did).unwrap(), devices }
        }

        fn keys(&self) -> Arc<Keys> {
            let mut doc = DidDocument::new(self.did.clone());
            for (id, sign, agree) in &self.devices {
                let auth = Relationships { authentication: true, ..Default::default() };
                doc.add_key(&format!("device-{id}"), sign.public().to_multibase(), auth);
                let ka = Relationships { key_agreement: true, ..Default::default() };
                doc.add_key(&format!("device-{id}-x25519"), agree.public().to_multibase(), ka);
            }
            Arc::new(Keys::from_document(self.did.as_str(), &serde_json::to_value(&doc).unwrap()).unwrap())
        }

        fn device(&self, i: usize) -> Device<'_> {
            let (id, sign, agree) = &self.devices[i];
            Device { did: &self.did, id, sign, agree }
        }

        /// The key agreement key of device `i`, as the wallet of that device holds it.
        fn ours(&self, i: usize) -> Vec<AgreementKey> {
            let (id, _, agree) = &self.devices[i];
            let key = X25519KeyPair::from_secret(&agree.secret()).unwrap();
            vec![AgreementKey::new(format!("{}#device-{id}-x25519", self.did), key)]
        }
    }

    fn delivered(envelope: Value, from: &Did) -> Delivered {
        Delivered {
            id: MessageId::new().to_string(),
            envelope,
            from: from.to_string(),
            folder: "inbox".into(),
            received_time: 1,
            presentation: false,
        }
    }

    #[tokio::test]
    async fn what_a_device_sends_every_device_of_the_recipient_opens() {
        let bob = User::new("did:web:b.example:users:bob", 1);
        let alice = User::new("did:web:a.example:users:alice", 2);
        let resolver: HashMap<String, Arc<Keys>> = [(bob.did.to_string(), bob.keys())].into();
        let recipients = RecipientKey::all_of(&alice.keys());
        assert_eq!(recipients.len(), 2, "both of Alice's devices");
        let (msg, envelope) = bob.device(0).pack(&alice.did, &recipients, TEXT_TYPE, json!({"text": "hello"})).unwrap();

        // The forward the node gets names Alice and carries the envelope untouched.
        let id = MessageId::new();
        let fwd = forward(&id, &alice.did, envelope.clone(), None);
        assert_eq!(fwd["to"], json!([]));
        let parsed = Message::from_json(fwd.clone()).unwrap();
        let (next, inner) = sichat_messaging::forward::forwarded(&parsed).unwrap();
        assert_eq!((next.as_str(), &inner), (alice.did.as_str(), &envelope));
        assert_eq!(parsed.id, id);

        for device in 0..2 {
            let Opened::Keep(m) = open(&alice.ours(device), &resolver, &delivered(envelope.clone(), &bob.did)).await
            else {
                panic!("kept")
            };
            assert_eq!(m.unreadable, None, "device {device}");
            assert_eq!((m.from.as_str(), m.sender_mismatch), (bob.did.as_str(), false));
            assert_eq!((text_of(&m), m.message_id.as_str()), (Some("hello"), msg.id.as_str()));
        }

        // A node vouching for someone else than the envelope proves: kept, but flagged.
        let eve = Did::parse("did:web:e.example:users:eve").unwrap();
        let Opened::Keep(m) = open(&alice.ours(0), &resolver, &delivered(envelope.clone(), &eve)).await else {
            panic!("kept")
        };
        assert!(m.sender_mismatch);
        assert_eq!(m.from, bob.did.as_str());

        // Not ours, or altered: kept as unreadable (and acknowledged), never shown as text.
        let carol = User::new("did:web:a.example:users:carol", 1);
        let Opened::Keep(m) = open(&carol.ours(0), &resolver, &delivered(envelope.clone(), &bob.did)).await else {
            panic!("kept")
        };
        assert!(m.unreadable.as_deref().is_some_and(|w| w.contains("not encrypted to this device")), "{m:?}");
        let mut tampered = envelope.clone();
        let ct = tampered["ciphertext"].as_str().unwrap().to_owned();
        let (first, rest) = ct.split_at(1);
        let flipped = format!("{}{rest}", if first == "A" { "B" } else { "A" });
        tampered["ciphertext"] = json!(flipped);
        let Opened::Keep(m) = open(&alice.ours(0), &resolver, &delivered(tampered.clone(), &bob.did)).await else {
            panic!("kept")
        };
        assert!(m.unreadable.is_some() && text_of(&m).is_none(), "{m:?}");
        assert_eq!(m.raw.as_ref(), Some(&tampered), "kept as it came: the node's copy goes once acknowledged");

        // A sender whose document cannot be fetched now: left on the node for later.
        let unreachable = sichat_core::resolver::Resolver::new(Arc::new(
            sichat_core::net::Fetcher::new(sichat_core::net::NetPolicy { allow_local: true }).unwrap(),
        ));
        let nowhere = User::new("did:web:127.0.0.1%3A9:users:bob", 1);
        let (_, from_nowhere) =
            nowhere.device(0).pack(&alice.did, &recipients, TEXT_TYPE, json!({"text": "hi"})).unwrap();
        let later = open(&alice.ours(0), &unreachable, &delivered(from_nowhere, &nowhere.did)).await;
        assert!(matches!(later, Opened::Later(_)), "a transient failure is not acknowledged");
    }

    #[test]
    fn a_presentation_rides_in_a_second_attachment() {
        let to = Did::parse("did:web:a.example:users:alice").unwrap();
        let fwd = forward(&MessageId::new(), &to, json!({"ciphertext": "x"}), Some("a.b.c"));
        let attachments = fwd["attachments"].as_array().unwrap();
        assert_eq!(attachments.len(), 2);
        assert_eq!(attachments[1]["media_type"], "application/vp+jwt");
        let vp = sichat_core::ids::b64url_decode(attachments[1]["data"]["base64"].as_str().unwrap()).unwrap();
        assert_eq!(vp, b"a.b.c");
    }

    fn msg(id: &str, text: &str) -> StoredMessage {
        StoredMessage {
            id: id.into(),
            message_id: format!("m-{id}"),
            from: "did:web:b:users:bob".into(),
            vouched_from: "did:web:b:users:bob".into(),
            sender_mismatch: false,
            folder: "inbox".into(),
            kind: TEXT_TYPE.into(),
            body: json!({"text": text}),
            thid: None,
            created_time: None,
            received_time: 0,
            presentation: false,
            unreadable: None,
            raw: None,
            read: false,
        }
    }

    #[test]
    fn messages_are_found_by_id_or_unique_prefix() {
        let mut ms = vec![msg("0190aaaa-1", "a"), msg("0190aaab-2", "b")];
        assert_eq!(find(&mut ms, "0190aaab-2").unwrap().body["text"], "b");
        assert_eq!(find(&mut ms, "m-0190aaaa-1").unwrap().body["text"], "a");
        assert_eq!(find(&mut ms, "0190aaab").unwrap().body["text"], "b");
        assert!(find(&mut ms, "0190aa").is_err(), "ambiguous");
        assert!(find(&mut ms, "019").is_err(), "too short to guess");
        assert!(find(&mut ms, "zzzz").is_err());
    }

    #[test]
    fn previews_and_labels() {
        let mut m = msg("1", &format!("{}\nsecond line", "x".repeat(80)));
        assert_eq!(preview(&m).chars().count(), 61);
        m.sender_mismatch = true;
        m.vouched_from = "did:web:evil:users:eve".into();
        let contacts =
            vec![Contact { name: "bob".into(), did: "did:web:b:users:bob".into(), address: None, added_at: 0 }];
        let label = sender_label(&m, &contacts);
        assert!(label.starts_with("bob (did:web:b:users:bob)"), "{label}");
        assert!(label.contains("SENDER MISMATCH"), "{label}");
        m.kind = "https://example.org/other".into();
        assert_eq!(preview(&m), "(a https://example.org/other message)");
    }
}
