//! `sichat recovery`: get back in when the root key is lost.
//!
//! `setup` makes a recovery key and writes it, with what a new wallet needs to find the
//! account (its DID, name, node and the node's pinned key), to a recovery kit file; the
//! root key names the key to the node (`set_recovery_key`), and in a did:webvh log it
//! becomes an update key beside the root key. The kit is kept away from every device.
//!
//! `restore` makes a new wallet from the kit: a new root key and a new device, and the
//! recovery key signs `recover`, which puts them in place of the lost ones and revokes every
//! other device. The DID, its log, what the account issued and its mailbox stay.
//!
//! With `--friend`, `setup` also splits the recovery key among friends ([`social`]): k of
//! them approving a request rebuilds it, with no kit at all.

use crate::client::Client;
use crate::wallet::{self, Profile, Wallet};
use crate::{need_root, no_server, Ctx, CERT_LIFETIME_SECS};
use anyhow::{bail, Context, Result};
use clap::Subcommand;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sichat_accounts::protocol::*;
use sichat_core::did::Did;
use sichat_core::ids::{b64url, b64url_decode, new_id, now_ms};
use sichat_core::keys::{Ed25519KeyPair, X25519KeyPair};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

mod social;

#[derive(Subcommand)]
pub(crate) enum RecoveryCmd {
    /// Make a recovery key (from the wallet that holds the root key) and keep it where you
    /// choose: in a recovery kit file (--out), split among friends (--friend, k of them
    /// needed: --threshold), or both. Running it again replaces the key: old kits and
    /// shares stop working.
    Setup {
        /// Write the recovery kit to FILE. Keep it offline, away from your devices: whoever
        /// holds it can take over the account.
        #[arg(long)]
        out: Option<PathBuf>,
        /// A friend to hold a share (a DID, name@host or contact name); name 2 to 16.
        #[arg(long = "friend")]
        friends: Vec<String>,
        /// How many friends must approve a recovery (at least 2; default: a majority).
        #[arg(long)]
        threshold: Option<u8>,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Make a new wallet (at --wallet) from a recovery kit, with a new root key and a new
    /// device. Every other device of the account is revoked.
    Restore {
        #[arg(long)]
        kit: PathBuf,
        /// A name for this device.
        #[arg(long, default_value = "recovered")]
        device_name: String,
    },
    /// Lost your root key and named recovery friends? In a new wallet directory (--wallet),
    /// open a recovery of your account and get a code to give your friends (by phone or in
    /// person). Then `sichat recovery finish`.
    Ask {
        /// Your DID (or name@host).
        did: String,
        /// Your node's URL.
        #[arg(long)]
        server: String,
    },
    /// A friend asked you to approve their recovery: check it is them (call them), then
    /// give the code or URL they gave you. Your share of their recovery key goes, sealed,
    /// to the wallet that asked.
    Approve {
        code: String,
        /// Do not ask for confirmation. Only for a recovery you checked with your friend.
        #[arg(long)]
        yes: bool,
    },
    /// In the wallet that ran `recovery ask`: once enough friends approved, rebuild the
    /// recovery key and take the account back with a new root key and device (every other
    /// device is revoked). Says how many approvals are still missing otherwise.
    Finish {
        /// A name for this device.
        #[arg(long, default_value = "recovered")]
        device_name: String,
    },
    /// The recoveries opened for your account and who approved them.
    Log,
    /// Cancel the open recoveries of your account (all, or --id): for one you did not ask.
    Cancel {
        #[arg(long)]
        id: Option<String>,
    },
}

/// The recovery kit file.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Kit {
    sichat_recovery_kit: u32,
    did: String,
    name: String,
    server: String,
    node_did: String,
    node_key: String,
    #[serde(default)]
    also_known_as: Vec<String>,
    /// The recovery key's secret, base64url.
    recovery_secret: String,
}

pub(crate) async fn run(ctx: &Ctx, cmd: RecoveryCmd) -> Result<()> {
    match cmd {
        RecoveryCmd::Setup { out, friends, threshold, yes } => {
            setup(ctx, out.as_deref(), &friends, threshold, yes).await
        }
        RecoveryCmd::Restore { kit, device_name } => restore(ctx, &kit, device_name).await,
        RecoveryCmd::Ask { did, server } => social::ask(ctx, &did, &server).await,
        RecoveryCmd::Approve { code, yes } => social::approve(ctx, &code, yes).await,
        RecoveryCmd::Finish { device_name } => social::finish(ctx, device_name).await,
        RecoveryCmd::Log => social::log(ctx).await,
        RecoveryCmd::Cancel { id } => social::cancel(ctx, id).await,
    }
}

async fn setup(ctx: &Ctx, out: Option<&Path>, friends: &[String], threshold: Option<u8>, yes: bool) -> Result<()> {
    if out.is_none() && friends.is_empty() {
        bail!(
            "say where the recovery key goes: a kit file (--out FILE), friends (--friend WHO, twice or more), or both"
        );
    }
    if let Some(out) = out.filter(|o| o.exists()) {
        bail!("{} exists: choose another --out (a kit is never overwritten)", out.display());
    }
    if threshold.is_some() && friends.is_empty() {
        bail!("--threshold is for friends: name them with --friend");
    }
    let (w, pass) = ctx.open()?;
    let root = need_root(&w)?;
    let server = w.profile.server.clone().ok_or_else(no_server)?;
    let (Some(name), Some(node_did), Some(node_key)) =
        (w.profile.name.clone(), w.profile.node_did.clone(), w.profile.node_key.clone())
    else {
        bail!("this wallet's profile lacks its account name or node: it cannot make a recovery kit");
    };
    let guardians = match friends.is_empty() {
        true => None,
        false => Some(social::choose(ctx, &w, friends, threshold).await?),
    };
    if w.profile.recovery_key.is_some() && !yes {
        let ok = crate::login::confirm(
            "This replaces your recovery key: the kit and friends' shares you made before stop working. Go on? [y/N] ",
        )?;
        if !ok {
            bail!("nothing changed");
        }
    }
    let recovery = Ed25519KeyPair::generate();
    // The kit first (owner-only, never over a file), then the shares, then the node: a kit
    // or share whose key the node never took is harmless; a key without them would be.
    if let Some(out) = out {
        let kit = Kit {
            sichat_recovery_kit: 1,
            did: w.profile.did.clone(),
            name,
            server: server.clone(),
            node_did,
            node_key,
            also_known_as: w.profile.also_known_as.clone(),
            recovery_secret: b64url(&recovery.secret()),
        };
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(out)
            .with_context(|| format!("cannot write {}", out.display()))?;
        file.write_all(serde_json::to_string_pretty(&kit)?.as_bytes())?;
        file.sync_all()?;
    }
    let key = recovery.public().to_multibase();
    let done = async {
        if let Some(g) = &guardians {
            social::send_shares(ctx, &w, &pass, &recovery, g).await?;
        }
        let history_key = Some(crate::history::history_key(&recovery)?.public().to_multibase());
        let op = RootOperation::SetRecoveryKey { recovery_key: key.clone(), guardians: guardians.clone(), history_key };
        Client::new(&server)?.root_operation(&w, root, op).await
    };
    if let Err(e) = done.await {
        if let Some(out) = out {
            let _ = std::fs::remove_file(out);
        }
        return Err(e.context("the recovery key was not set: the account keeps the one it had"));
    }
    wallet::update(&ctx.dir, &pass, |saved: &mut Wallet| {
        saved.profile.recovery_key = Some(key.clone());
        Ok(())
    })?;
    let out_json = json!({"did": w.profile.did, "recovery_key": key, "kit": out, "guardians": guardians});
    ctx.print(&out_json, |_| {
        if let Some(out) = out {
            println!("Recovery kit for {} written to {}", w.profile.did, out.display());
            println!("Keep it offline (a USB stick, a printout), away from your devices: whoever holds it can");
            println!(
                "take over your account. If you lose your root key: sichat --wallet NEW-DIR recovery restore --kit FILE"
            );
        }
        if let Some(g) = &guardians {
            println!(
                "Your recovery key is split among {} friends; {} of them together can rebuild it.",
                g.dids.len(),
                g.threshold
            );
            println!("Each gets their share as an encrypted message. If you lose your root key:");
            println!("  sichat --wallet NEW-DIR recovery ask {} --server {server}", w.profile.did);
        }
    })
}

async fn restore(ctx: &Ctx, kit_path: &Path, device_name: String) -> Result<()> {
    if wallet::exists(&ctx.dir) {
        bail!("{} already holds a wallet: choose an empty directory with --wallet", ctx.dir.display());
    }
    let text = std::fs::read_to_string(kit_path).with_context(|| format!("cannot read {}", kit_path.display()))?;
    let kit: Kit = serde_json::from_str(&text).context("this is not a Sichat recovery kit")?;
    if kit.sichat_recovery_kit != 1 {
        bail!("this recovery kit is of version {}; update sichat", kit.sichat_recovery_kit);
    }
    let secret = b64url_decode(&kit.recovery_secret).context("the kit's recovery secret")?;
    let recovery = Ed25519KeyPair::from_secret(&secret).context("the kit's recovery secret")?;
    let pass = ctx.passphrase(true)?;
    let account = Recovered {
        did: kit.did,
        name: kit.name,
        server: kit.server,
        node_did: kit.node_did,
        node_key: kit.node_key,
        also_known_as: kit.also_known_as,
    };
    recover_account(ctx, &pass, account, &recovery, device_name).await?;
    if !ctx.json {
        println!("The kit still works: make a new one with `sichat recovery setup` and destroy the old one.");
    }
    Ok(())
}

/// The account a recovery takes back, and how to reach its node.
struct Recovered {
    did: String,
    name: String,
    server: String,
    node_did: String,
    node_key: String,
    also_known_as: Vec<String>,
}

/// A new wallet in `ctx.dir` for `account`: a new root key and device, put in place of the
/// lost ones by `recover`, signed with the recovery key. Nothing is written if the node
/// refuses.
async fn recover_account(
    ctx: &Ctx,
    pass: &str,
    account: Recovered,
    recovery: &Ed25519KeyPair,
    device_name: String,
) -> Result<()> {
    let did = Did::parse(&account.did)?;
    let root = Ed25519KeyPair::generate();
    let (sign, agree) = (Ed25519KeyPair::generate(), X25519KeyPair::generate());
    let device_id = new_id();
    let certificate = DeviceCertificate::issue(
        &root,
        &did,
        &device_id,
        &device_name,
        &sign.public(),
        &agree.public(),
        CERT_LIFETIME_SECS,
    )?;
    let profile = Profile {
        did: account.did.clone(),
        name: Some(account.name),
        server: Some(account.server.clone()),
        node_did: Some(account.node_did),
        node_key: Some(account.node_key),
        device_id: device_id.clone(),
        device_name,
        has_root_key: true,
        created_at: now_ms(),
        also_known_as: account.also_known_as,
        recovery_key: Some(recovery.public().to_multibase()),
    };
    let w = Wallet::fresh(profile, Some(root), sign, agree, certificate.clone());
    // The new keys are on disk before the node hears of them: a crash cannot lose them.
    let pending = w.write_pending(&ctx.dir, pass)?;
    let new_root_key = w.root.as_ref().map(|r| r.public().to_multibase()).unwrap_or_default();
    let op = RootOperation::Recover { new_root_key: new_root_key.clone(), certificates: vec![certificate] };
    let client = Client::new(&account.server)?;
    let sent = async {
        let entry = crate::did_log::next_entry(&client, &w, recovery, &op).await?;
        let request = client.signed_root_op(&w, recovery, op, entry).await?;
        client.post::<Account>("/api/v1/root-operations", &SignedRequest { request }).await
    };
    if let Err(e) = sent.await {
        let _ = std::fs::remove_file(&pending);
        return Err(e.context("the node refused the recovery; nothing changed"));
    }
    wallet::commit_pending(&pending, &ctx.dir)?;
    // The history kept on the node, sealed to the history key this recovery key yields;
    // then every contact is told, so a recovery nobody expected is noticed.
    let mut c = Client::new(&account.server)?;
    let history = async {
        let w = Wallet::open(&ctx.dir, pass)?;
        c.login(&w).await?;
        crate::history::sync_saved(ctx, pass, &c, Some(&crate::history::history_key(recovery)?)).await
    };
    let history = match history.await {
        Ok(done) => json!(done),
        Err(e) => {
            eprintln!("warning: your history on the node could not be read ({e:#}): `sichat history sync` retries");
            Value::Null
        }
    };
    let told = match c.token().is_some() {
        true => tell_contacts(ctx, pass, &c).await,
        false => 0,
    };
    c.logout().await;
    let out = json!({
        "did": account.did,
        "root_key": new_root_key,
        "device_id": device_id,
        "history": history,
        "contacts_told": told,
    });
    ctx.print(&out, |_| {
        println!("Recovered {}: this wallet holds its new root key.", account.did);
        println!("Every other device was revoked; bless new ones with `sichat device add`.");
    })
}

/// Tell each contact that this account was recovered (a text message from the new device):
/// how many were told. Best effort: a contact out of reach is skipped with a warning.
async fn tell_contacts(ctx: &Ctx, pass: &str, c: &Client) -> usize {
    let Ok(w) = Wallet::open(&ctx.dir, pass) else { return 0 };
    let Ok(resolver) = ctx.resolver(&[w.profile.server.as_deref()]) else { return 0 };
    let text = format!(
        "{} was recovered on {}: its root key was lost and replaced, and its other devices were revoked. If you \
         did not expect this, check with them by phone or in person.",
        w.profile.did,
        crate::date(now_ms())
    );
    let mut told = 0;
    for contact in &w.contacts {
        let sent = async {
            let to = Did::parse(&contact.did)?;
            let body = json!({ "text": text });
            crate::message::hand_over(ctx, &w, pass, &resolver, c, &to, crate::message::TEXT_TYPE, body).await
        };
        match sent.await {
            Ok(_) => told += 1,
            Err(e) => eprintln!("warning: could not tell {} about the recovery: {e:#}", contact.name),
        }
    }
    told
}
