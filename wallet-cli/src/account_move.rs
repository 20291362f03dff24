//! `sichat move --to URL --invite CODE`: move your account to another node while the old
//! one is up (the protocol: `sichat_accounts::protocol::moves`). The root key signs every
//! step; the wallet checks what each node hands it before signing, and never sees the
//! issuing keys (the bundle is sealed to the new node).

use crate::client::{Client, ServerError};
use crate::wallet::{self, Wallet};
use crate::{did_log, need_root, no_server, Ctx, CERT_LIFETIME_SECS};
use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use serde_json::{json, Value};
use sichat_accounts::protocol::*;
use sichat_core::did::Did;
use sichat_core::jws;
use sichat_core::keys::{Ed25519KeyPair, Ed25519Public, X25519Public};
use sichat_core::progress::Progress;
use sichat_core::webvh;

#[derive(Args)]
pub struct MoveArgs {
    /// The node to move to (its URL, e.g. https://id.example.org).
    #[arg(long)]
    to: String,
    /// An invite code of that node.
    #[arg(long, required_unless_present = "cancel")]
    invite: Option<String>,
    /// Cancel a move to --to that did not finish: the account stays where it is and works
    /// as before at once (otherwise it waits an hour for the move to expire).
    #[arg(long)]
    cancel: bool,
    /// Your user name there [default: the same as here].
    #[arg(long)]
    name: Option<String>,
}

fn step(ctx: &Ctx, what: &str) {
    if !ctx.json {
        eprintln!("… {what}");
    }
}

pub async fn run(ctx: &Ctx, args: MoveArgs) -> Result<()> {
    let (w, pass) = ctx.open()?;
    let root = need_root(&w)?;
    let from = w.profile.server.clone().ok_or_else(no_server)?;
    let old_name = w.profile.name.clone().ok_or_else(|| anyhow!("this wallet has no account name"))?;
    let mut a = Client::new(&from)?;
    let b = Client::new(&args.to)?;
    if a.base() == b.base() {
        bail!("your account is on {} already", b.base());
    }
    if args.cancel {
        let request = a.signed_root_op(&w, root, RootOperation::MoveCancel { to: b.base().to_owned() }, None).await?;
        let _: Account = a.post("/api/v1/root-operations", &SignedRequest { request }).await?;
        return ctx.print(&json!({"cancelled": true, "server": from}), |_| {
            println!("Cancelled the move to {}: your account works on {from} as before.", b.base())
        });
    }
    let invite = args.invite.clone().unwrap_or_default();
    // Checked before anything changes (the node refuses it too).
    if let Some(standby) = crate::standby::listed(&w, &a).await? {
        bail!("your standby {standby} hands what it keeps to {from}: end it first (sichat standby remove), then move");
    }

    if a.get_text_if_found(&format!("/users/{old_name}/did.jsonl")).await?.is_none() {
        step(ctx, "giving your account a portable DID first (did:webvh)");
        did_log::upgrade(&mut a, &w, root).await?;
    }
    let old_log = a
        .get_text_if_found(&format!("/users/{old_name}/did.jsonl"))
        .await?
        .ok_or_else(|| anyhow!("{from} serves no DID log for you"))?;

    step(ctx, &format!("asking {} for a place", b.base()));
    let (b_doc, b_key) = b.node().await.with_context(|| format!("{} is not a Sichat node", b.base()))?;
    let ticket: MoveTicket = b.post("/api/v1/moves/tickets", &MoveTicketRequest { invite }).await?;
    if ticket.node_did != b_doc.id.as_str() {
        bail!("{} answered for {}, not for its own DID {}", b.base(), ticket.node_did, b_doc.id);
    }

    step(ctx, &format!("{from} seals your account to the new node"));
    let op = RootOperation::MoveOut {
        to: b.base().to_owned(),
        ticket: ticket.ticket.clone(),
        recipient_key: ticket.recipient_key.clone(),
    };
    let request = a.signed_root_op(&w, root, op, None).await?;
    let export: MoveExport = a.post("/api/v1/moves/export", &SignedRequest { request }).await?;

    // From the export to the import: a failure the new node answered (or one before the
    // import was sent) cancels the move on the old node, where the account then works as
    // before; a lost answer to the import cannot tell, and says what to check.
    let sent = std::sync::atomic::AtomicBool::new(false);
    let imported = async {
        step(ctx, &format!("{} opens it ({} bytes)", b.base(), export.bundle.len()));
        let req = MoveDraftRequest { ticket: ticket.ticket.clone(), bundle: export.bundle, name: args.name.clone() };
        let draft: MoveDraft = b.post("/api/v1/moves/draft", &req).await?;
        check_draft(&draft, &old_log, root)?;
        carry_pages(ctx, &a, &b, &ticket.ticket, &export.more).await?;

        step(ctx, "signing the move with your root key");
        let entry = webvh::append(&draft.last_entry, draft.state.clone(), json!({}), root)?;
        let web = Did::parse(&draft.web_did)?;
        let mut certificates = Vec::new();
        let mut mine = None;
        for d in &draft.devices {
            let cert = DeviceCertificate::issue(
                root,
                &web,
                &d.id,
                &d.name,
                &Ed25519Public::from_multibase(&d.sign_key)?,
                &X25519Public::from_multibase(&d.agree_key)?,
                CERT_LIFETIME_SECS,
            )?;
            if d.id == w.profile.device_id {
                mine = Some(cert.clone());
            }
            certificates.push(cert);
        }
        let mine = mine.ok_or_else(|| anyhow!("the new node's draft leaves out this device: refusing to sign it"))?;
        let ch: Challenge = b.post("/api/v1/challenges", &json!({})).await?;
        let claims = MoveInClaims {
            iss: draft.did.clone(),
            aud: ticket.node_did.clone(),
            challenge: ch.challenge,
            iat: now_secs(),
            ticket: ticket.ticket.clone(),
            entry: entry.line.clone(),
            certificates,
        };
        let request = jws::sign(root, TYP_MOVE_IN, Some(&format!("{}#root", draft.did)), &claims)?;
        sent.store(true, std::sync::atomic::Ordering::Relaxed);
        let account: Account = b.post("/api/v1/moves/import", &SignedRequest { request }).await?;
        Ok::<_, anyhow::Error>((draft, entry, mine, account))
    }
    .await;
    let (draft, entry, mine, account) = match imported {
        Ok(done) => done,
        // A refusal (4xx) changed nothing on the new node; a 5xx or no answer may have.
        Err(e)
            if !sent.load(std::sync::atomic::Ordering::Relaxed)
                || e.downcast_ref::<ServerError>().is_some_and(|s| s.status < 500) =>
        {
            let op = RootOperation::MoveCancel { to: b.base().to_owned() };
            let cancelled = async {
                let request = a.signed_root_op(&w, root, op, None).await?;
                a.post::<Account>("/api/v1/root-operations", &SignedRequest { request }).await
            }
            .await;
            return Err(match cancelled {
                Ok(_) => e.context(format!("the move was cancelled: your account keeps working on {from}")),
                Err(c) => e.context(format!(
                    "the move failed, and {from} could not be told to cancel it ({c:#}): run \
                     `sichat move --cancel --to {}`, or wait an hour",
                    b.base()
                )),
            });
        }
        Err(e) => {
            return Err(e.context(format!(
                "{} did not answer the import: if `sichat move` again says your account is there, it is; \
                 if not, run `sichat move --cancel --to {}` and try again",
                b.base(),
                b.base()
            )))
        }
    };

    // From here the account lives on the new node: the wallet on disk follows it before
    // anything else can fail (`w`, in memory, still names the old node).
    wallet::update(&ctx.dir, &pass, |w: &mut Wallet| {
        w.profile.did = draft.web_did.clone();
        w.profile.name = Some(account.name.clone());
        w.profile.server = Some(b.base().to_owned());
        w.profile.node_did = Some(b_doc.id.to_string());
        w.profile.node_key = Some(b_key.to_multibase());
        w.certificate = mine.clone();
        // Messages to any of the account's DIDs open on this device.
        let known = draft.state["alsoKnownAs"].as_array().cloned().unwrap_or_default();
        let all = std::iter::once(draft.did.clone())
            .chain(known.iter().filter_map(|d| d.as_str()).map(str::to_owned))
            .chain(std::mem::take(&mut w.profile.also_known_as));
        for did in all {
            if did != draft.web_did && !w.profile.also_known_as.contains(&did) {
                w.profile.also_known_as.push(did);
            }
        }
        Ok(())
    })?;

    step(ctx, &format!("telling {from} the move is done"));
    let op = RootOperation::MoveDone { to: b.base().to_owned(), did: draft.did.clone() };
    let request = a.signed_root_op(&w, root, op, Some(entry.line)).await?;
    let told = a.post::<Account>("/api/v1/root-operations", &SignedRequest { request }).await;
    if let Err(e) = &told {
        eprintln!(
            "warning: {from} was not told that the move is done ({e:#}): your account works on {} already; \
             {from} keeps its old copy until it is told",
            b.base()
        );
    }
    let out = json!({
        "did": draft.did,
        "web_did": draft.web_did,
        "server": b.base(),
        "name": account.name,
        "old_server_told": told.is_ok(),
    });
    ctx.print(&out, |_| {
        println!("Moved to {} as {}.", b.base(), account.name);
        println!("  DID:          {}", draft.did);
        println!("  also:         {}", draft.web_did);
        println!("  {from} keeps answering for your old DIDs and links, and points to the new node.");
    })
}

/// What did not fit the bundle (waiting messages), page by page from the old node to the new
/// one, each sealed to the new node: the import then takes them all, or nothing.
async fn carry_pages(ctx: &Ctx, a: &Client, b: &Client, ticket: &str, more: &[MoreToMove]) -> Result<()> {
    for m in more {
        step(ctx, &format!("carrying {} more items of {}", m.items, m.part));
        let mut progress = if ctx.json {
            Progress::quiet("moving")
        } else {
            Progress::new(if m.part == "messaging" { "messages" } else { "items" })
        };
        let (mut cursor, mut done) = (Some(m.cursor.clone()), 0u64);
        while let Some(at) = cursor {
            let req = MovePageRequest { ticket: ticket.to_owned(), part: m.part.clone(), cursor: at };
            let page: MovePage = a.post("/api/v1/moves/export/page", &req).await?;
            let _: MovePagesHeld =
                b.post("/api/v1/moves/pages", &MovePageUpload { ticket: ticket.to_owned(), page: page.page }).await?;
            done += page.items;
            progress.update(done.min(m.items) as usize, m.items as usize);
            cursor = page.next;
        }
        progress.finish();
    }
    Ok(())
}

/// The draft must continue the log the old node serves, and name this wallet's root key as
/// the only controller: neither node can slip anything past the root key's signature.
pub(crate) fn check_draft(draft: &MoveDraft, old_log: &str, root: &Ed25519KeyPair) -> Result<()> {
    let last = old_log.lines().rfind(|l| !l.trim().is_empty()).unwrap_or_default();
    if draft.last_entry != last {
        bail!("the new node's draft does not continue your DID log as your node serves it: refusing to sign");
    }
    let root_id = format!("{}#root", draft.did);
    let root_key = draft.state["verificationMethod"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|vm| vm["id"] == root_id.as_str())
        .and_then(|vm| vm["publicKeyMultibase"].as_str());
    if draft.state["id"] != draft.did.as_str()
        || root_key != Some(root.public().to_multibase().as_str())
        || draft.state["capabilityInvocation"] != json!([root_id])
    {
        bail!("the new node's draft does not name your root key as your DID's only controller: refusing to sign");
    }
    let methods = draft.state["verificationMethod"].as_array().map(Vec::len).unwrap_or_default();
    let expected = draft.devices.len() * 2 + 1;
    if methods < expected || draft.state.get("service").and_then(Value::as_array).is_none() {
        bail!("the new node's draft is not your account's document: refusing to sign");
    }
    Ok(())
}
