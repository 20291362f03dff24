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

use crate::client::Client;
use crate::wallet::{self, Profile, Wallet};
use crate::{need_root, no_server, Ctx, CERT_LIFETIME_SECS};
use anyhow::{bail, Context, Result};
use clap::Subcommand;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sichat_accounts::protocol::*;
use sichat_core::did::Did;
use sichat_core::ids::{b64url, b64url_decode, new_id, now_ms};
use sichat_core::keys::{Ed25519KeyPair, X25519KeyPair};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub(crate) enum RecoveryCmd {
    /// Make a recovery key and write the recovery kit to FILE (from the wallet that holds
    /// the root key). Keep the kit offline, away from your devices: whoever holds it can
    /// take over the account. Running it again replaces the key (the old kit stops working).
    Setup {
        #[arg(long)]
        out: PathBuf,
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
        RecoveryCmd::Setup { out } => setup(ctx, &out).await,
        RecoveryCmd::Restore { kit, device_name } => restore(ctx, &kit, device_name).await,
    }
}

async fn setup(ctx: &Ctx, out: &Path) -> Result<()> {
    if out.exists() {
        bail!("{} exists: choose another --out (a kit is never overwritten)", out.display());
    }
    let (w, pass) = ctx.open()?;
    let root = need_root(&w)?;
    let server = w.profile.server.clone().ok_or_else(no_server)?;
    let (Some(name), Some(node_did), Some(node_key)) =
        (w.profile.name.clone(), w.profile.node_did.clone(), w.profile.node_key.clone())
    else {
        bail!("this wallet's profile lacks its account name or node: it cannot make a recovery kit");
    };
    let recovery = Ed25519KeyPair::generate();
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
    // The kit first (owner-only, never over a file), then the node: a kit whose key the
    // node never took is harmless; a key without its kit would be.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .with_context(|| format!("cannot write {}", out.display()))?;
    file.write_all(serde_json::to_string_pretty(&kit)?.as_bytes())?;
    file.sync_all()?;
    let key = recovery.public().to_multibase();
    let op = RootOperation::SetRecoveryKey { recovery_key: key.clone() };
    if let Err(e) = Client::new(&server)?.root_operation(&w, root, op).await {
        let _ = std::fs::remove_file(out);
        return Err(e);
    }
    wallet::update(&ctx.dir, &pass, |saved: &mut Wallet| {
        saved.profile.recovery_key = Some(key.clone());
        Ok(())
    })?;
    ctx.print(&json!({"did": w.profile.did, "recovery_key": key, "kit": out}), |_| {
        println!("Recovery kit for {} written to {}", w.profile.did, out.display());
        println!("Keep it offline (a USB stick, a printout), away from your devices: whoever holds it can");
        println!(
            "take over your account. If you lose your root key: sichat --wallet NEW-DIR recovery restore --kit FILE"
        );
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
    let did = Did::parse(&kit.did)?;
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
    let w = Wallet {
        profile: Profile {
            did: kit.did.clone(),
            name: Some(kit.name.clone()),
            server: Some(kit.server.clone()),
            node_did: Some(kit.node_did.clone()),
            node_key: Some(kit.node_key.clone()),
            device_id: device_id.clone(),
            device_name,
            has_root_key: true,
            created_at: now_ms(),
            also_known_as: kit.also_known_as.clone(),
            recovery_key: Some(recovery.public().to_multibase()),
        },
        root: Some(root),
        device_sign: sign,
        device_agree: agree,
        certificate: certificate.clone(),
        credentials: Vec::new(),
        messages: Vec::new(),
        contacts: Vec::new(),
        known_keys: Vec::new(),
    };
    let pass = ctx.passphrase(true)?;
    // The new keys are on disk before the node hears of them: a crash cannot lose them.
    let pending = w.write_pending(&ctx.dir, &pass)?;
    let new_root_key = w.root.as_ref().map(|r| r.public().to_multibase()).unwrap_or_default();
    let op = RootOperation::Recover { new_root_key: new_root_key.clone(), certificates: vec![certificate] };
    let client = Client::new(&kit.server)?;
    let sent = async {
        let entry = crate::did_log::next_entry(&client, &w, &recovery, &op).await?;
        let request = client.signed_root_op(&w, &recovery, op, entry).await?;
        client.post::<Account>("/api/v1/root-operations", &SignedRequest { request }).await
    };
    if let Err(e) = sent.await {
        let _ = std::fs::remove_file(&pending);
        return Err(e.context("the node refused the recovery; nothing changed"));
    }
    wallet::commit_pending(&pending, &ctx.dir)?;
    ctx.print(&json!({"did": kit.did, "root_key": new_root_key, "device_id": device_id}), |_| {
        println!("Recovered {}: this wallet holds its new root key.", kit.did);
        println!("Every other device was revoked; bless new ones with `sichat device add`.");
        println!("The kit still works: make a new one with `sichat recovery setup` and destroy the old one.");
    })
}
