//! `sichat device`: list, add, revoke and renew the devices of your account, and the
//! renewal of certificates before they end.
//!
//! A device certificate (signed by the root key) lasts [`CERT_LIFETIME_SECS`]. The wallet
//! that holds the root key renews its own when it has less than [`RENEW_WITHIN_SECS`] left,
//! before it signs in (a root operation needs no session, so an ended one comes back too),
//! and every other device's when the node says one is due at sign-in. The node hands each
//! device its renewed certificate at that device's next sign-in.

use crate::client::{Client, ServerError};
use crate::wallet::{self, Profile, Wallet};
use crate::{date, need_root, no_server, Ctx, CERT_LIFETIME_SECS};
use anyhow::{bail, Result};
use clap::Subcommand;
use serde_json::json;
use sichat_accounts::protocol::*;
use sichat_core::did::Did;
use sichat_core::ids::{new_id, now_ms};
use sichat_core::jws;
use sichat_core::keys::{Ed25519KeyPair, Ed25519Public, X25519KeyPair, X25519Public};
use std::path::PathBuf;

#[derive(Subcommand)]
pub(crate) enum DeviceCmd {
    /// List the devices listed in your DID document.
    List,
    /// After your node was restored from an older backup: bless again the devices this
    /// root-key wallet added since, which the restored node does not know.
    Reconcile,

    /// Bless a new device with your root key and write its wallet to --out.
    Add {
        #[arg(long)]
        name: String,
        /// Directory for the new device's wallet; copy it to the new device.
        #[arg(long)]
        out: PathBuf,
    },
    /// Revoke a device: its keys leave your DID document and its sessions end. From the
    /// wallet that holds the root key; or from any other device of yours, when the root key
    /// allowed it (`sichat device policy --devices-may-revoke on`).
    Revoke {
        id: String,
        /// Revoke it even if it is this device or the account's last active device.
        #[arg(long)]
        yes: bool,
    },
    /// Renew device certificates (they last a year). From the wallet that holds the root
    /// key: renew every active device now. From another device: take the certificate the
    /// root key renewed for it. Certificates due within 30 days renew by themselves at any
    /// command of the root-key wallet.
    Renew,
    /// Whether your devices may revoke each other (from the wallet that holds the root key).
    /// On, a phone can cut off a lost laptop at once; the root key can reinstate it.
    Policy {
        #[arg(long, value_parser = ["on", "off"])]
        devices_may_revoke: String,
    },
    /// Make a device another device revoked active again (from the wallet that holds the
    /// root key). Without an ID, list the devices another device revoked.
    Reinstate { id: Option<String> },
}

pub(crate) async fn run(ctx: &Ctx, cmd: DeviceCmd) -> Result<()> {
    match cmd {
        DeviceCmd::Renew => renew(ctx).await,
        DeviceCmd::Reconcile => reconcile(ctx).await,
        DeviceCmd::List => {
            let (w, mut c) = ctx.session().await?;
            let devices: Vec<Device> = c.get("/api/v1/devices").await?;
            c.logout().await;
            ctx.print(&devices, |ds| {
                for d in ds {
                    let this = if d.id == w.profile.device_id { " (this device)" } else { "" };
                    println!("{}  {}{}  expires {}", d.id, d.name, this, date(d.cert_expires_at));
                }
            })
        }
        DeviceCmd::Add { name, out } => {
            if wallet::exists(&out) {
                bail!("{} already holds a wallet: choose another --out", out.display());
            }
            let (w, pass) = ctx.open()?;
            let root = need_root(&w)?;
            let server = w.profile.server.clone().ok_or_else(no_server)?;
            let did = Did::parse(&w.profile.did)?;
            let sign = Ed25519KeyPair::generate();
            let agree = X25519KeyPair::generate();
            let id = new_id();
            let certificate =
                DeviceCertificate::issue(root, &did, &id, &name, &sign.public(), &agree.public(), CERT_LIFETIME_SECS)?;
            let profile =
                Profile { device_id: id.clone(), device_name: name.clone(), has_root_key: false, ..w.profile.clone() };
            // The new device starts with this wallet's history: what it holds, its messages
            // and contacts (the node never saw them in clear).
            let new = Wallet {
                credentials: w.credentials.clone(),
                messages: w.messages.clone(),
                contacts: w.contacts.clone(),
                known_keys: w.known_keys.clone(),
                ..Wallet::fresh(profile, None, sign, agree, certificate.clone())
            };
            let pending = new.write_pending(&out, &pass)?;
            let client = Client::new(&server)?;
            let op = RootOperation::AddDevice { certificate: certificate.clone() };
            if let Err(e) = client.root_operation(&w, root, op).await {
                let _ = std::fs::remove_file(&pending);
                return Err(e);
            }
            wallet::commit_pending(&pending, &out)?;
            wallet::update(&ctx.dir, &pass, |saved: &mut Wallet| {
                saved.blessed.push(certificate.clone());
                Ok(())
            })?;
            ctx.print(&json!({"device_id": id, "name": name, "wallet": out}), |_| {
                println!("Blessed device {name} ({id}). Its wallet is in {}", out.display());
                println!("It holds this wallet's credentials, messages and contacts.");
                println!("Copy that directory to the new device; it opens with the same passphrase.");
            })
        }
        DeviceCmd::Policy { devices_may_revoke } => {
            let (w, _) = ctx.open()?;
            let root = need_root(&w)?;
            let on = devices_may_revoke == "on";
            let client = Client::new(w.profile.server.as_deref().ok_or_else(no_server)?)?;
            client.root_operation(&w, root, RootOperation::SetDevicePolicy { devices_may_revoke: on }).await?;
            ctx.print(&json!({"devices_may_revoke": on}), |_| match on {
                true => println!(
                    "Your devices may now revoke each other: `sichat device revoke ID` from any of them. The root \
                     key can undo it (`sichat device reinstate`)."
                ),
                false => println!("Only the root key revokes devices now."),
            })
        }
        DeviceCmd::Reinstate { id } => reinstate(ctx, id).await,
        DeviceCmd::Revoke { id, yes } if !wallet::read_profile(&ctx.dir)?.has_root_key => {
            revoke_from_device(ctx, &id, yes).await
        }
        DeviceCmd::Revoke { id, yes } => {
            let (w, _) = ctx.open()?;
            let root = need_root(&w)?;
            if id == w.profile.device_id && !yes {
                bail!(
                    "{id} is this device. Revoking it means this wallet can no longer sign in to {node}, pick up \
                     messages or approve sign-ins; its root key can still bless a new device. To move to another \
                     device, add it first with `sichat device add`, then revoke this one from there. To revoke \
                     this device anyway, run again with --yes.",
                    node = w.profile.server.as_deref().unwrap_or("your node")
                );
            }
            // The node refuses to revoke the account's last active device unless told it is
            // meant (--yes); it knows the devices even when this one can no longer sign in.
            let client = Client::new(w.profile.server.as_deref().ok_or_else(no_server)?)?;
            let op = RootOperation::RevokeDevice { device_id: id.clone(), last_device: yes };
            if let Err(e) = client.root_operation(&w, root, op).await {
                if e.downcast_ref::<ServerError>().is_some_and(|s| s.code == "last_device") {
                    bail!(
                        "{id} is your account's last active device. Revoking it leaves no device that can sign \
                         in, receive messages or approve sign-ins until your root key blesses a new one with \
                         `sichat device add`. Add the new device first, or run again with --yes to revoke it anyway."
                    );
                }
                return Err(e);
            }
            let pass = ctx.passphrase(false)?;
            wallet::update(&ctx.dir, &pass, |saved: &mut Wallet| {
                saved.blessed.retain(|c| blessed_device(c).is_none_or(|d| d.id != id));
                Ok(())
            })?;
            ctx.print(&json!({"revoked": id}), |_| {
                println!("Revoked {id}: its keys are gone from your DID document and its sessions ended.");
            })
        }
    }
}

/// `sichat device revoke` from a device without the root key: the node allows it when the
/// root key said devices may revoke each other.
async fn revoke_from_device(ctx: &Ctx, id: &str, yes: bool) -> Result<()> {
    let (w, mut c) = ctx.session().await?;
    if id == w.profile.device_id {
        c.logout().await;
        bail!("{id} is this device: a device revokes only others (the root key may revoke any)");
    }
    let devices: Vec<Device> = c.get("/api/v1/devices").await?;
    let Some(target) = devices.iter().find(|d| d.id == id) else {
        c.logout().await;
        bail!("{id} is not an active device of your account (see `sichat device list`)");
    };
    if !yes {
        c.logout().await;
        bail!(
            "revoking {} ({id}) signs it out everywhere and removes its keys from your DID document; only the \
             root key can reinstate it. Run again with --yes to revoke it.",
            target.name
        );
    }
    let done: Result<serde_json::Value> = c.post(&format!("/api/v1/devices/{id}/revoke"), &json!({})).await;
    c.logout().await;
    if let Err(e) = done {
        if e.downcast_ref::<ServerError>().is_some_and(|s| s.code == "forbidden") {
            bail!("{e}");
        }
        return Err(e);
    }
    ctx.print(&json!({"revoked": id, "by": w.profile.device_id}), |_| {
        println!("Revoked {} ({id}): its sessions ended and its keys left your DID document.", target.name);
    })
}

/// `sichat device reinstate [ID]`, from the wallet that holds the root key.
async fn reinstate(ctx: &Ctx, id: Option<String>) -> Result<()> {
    let (w, mut c) = ctx.session().await?;
    let root = need_root(&w)?;
    let revoked: Result<Vec<Device>> = c.get("/api/v1/devices?revoked=true").await;
    let revoked = match revoked {
        Ok(r) => r,
        Err(e) => {
            c.logout().await;
            return Err(e);
        }
    };
    let Some(id) = id else {
        c.logout().await;
        return ctx.print(&revoked, |ds| {
            if ds.is_empty() {
                println!("No device was revoked by another device.");
            }
            for d in ds {
                let by = d.revoked_by.as_deref().unwrap_or("?");
                println!("{}  {}  revoked {} by {by}", d.id, d.name, date(d.revoked_at.unwrap_or_default()));
            }
        });
    };
    let Some(device) = revoked.into_iter().find(|d| d.id == id) else {
        c.logout().await;
        bail!("{id} was not revoked by another device (see `sichat device reinstate` for those that were)");
    };
    let certificate = recertify(&w, root, &device)?;
    let done = c.root_operation(&w, root, RootOperation::ReinstateDevice { certificate }).await;
    c.logout().await;
    done?;
    ctx.print(&json!({"reinstated": id}), |_| {
        println!("Reinstated {} ({id}): it signs in again with its own wallet.", device.name);
    })
}

/// When this wallet's own certificate ends (ms), read from the certificate it holds.
fn own_expiry(w: &Wallet) -> Result<i64> {
    let cert: DeviceCertificate = jws::unverified_payload(&w.certificate)?;
    Ok(cert.exp * 1000)
}

/// A certificate for `device`, signed by `root`, for a year from now.
pub(crate) fn recertify(w: &Wallet, root: &Ed25519KeyPair, device: &Device) -> Result<String> {
    let did = Did::parse(&w.profile.did)?;
    let sign = Ed25519Public::from_multibase(&device.sign_key)?;
    let agree = X25519Public::from_multibase(&device.agree_key)?;
    Ok(DeviceCertificate::issue(root, &did, &device.id, &device.name, &sign, &agree, CERT_LIFETIME_SECS)?)
}

/// This wallet as a [`Device`], for [`recertify`].
pub(crate) fn this_device(w: &Wallet) -> Device {
    Device {
        id: w.profile.device_id.clone(),
        name: w.profile.device_name.clone(),
        sign_key: w.device_sign.public().to_multibase(),
        agree_key: w.device_agree.public().to_multibase(),
        created_at: 0,
        cert_expires_at: 0,
        revoked_at: None,
        revoked_by: None,
    }
}

/// In the wallet that holds the root key: renew this device's own certificate when it ends
/// within [`RENEW_WITHIN_SECS`] (or `force`), with a root operation, which needs no
/// session. Saves the wallet. Nothing to do in a wallet without the root key.
pub(crate) async fn renew_own(ctx: &Ctx, w: &mut Wallet, pass: &str, force: bool) -> Result<Option<i64>> {
    let Some(root) = w.root.as_ref() else { return Ok(None) };
    if !force && own_expiry(w)? > now_ms() + RENEW_WITHIN_SECS * 1000 {
        return Ok(None);
    }
    let server = w.profile.server.clone().ok_or_else(no_server)?;
    let certificate = recertify(w, root, &this_device(w))?;
    let op = RootOperation::RenewDevices { certificates: vec![certificate.clone()] };
    Client::new(&server)?.root_operation(w, root, op).await?;
    w.certificate = certificate.clone();
    wallet::update(&ctx.dir, pass, |saved: &mut Wallet| {
        saved.certificate = certificate;
        Ok(())
    })?;
    let until = own_expiry(w)?;
    if !ctx.json && !force {
        eprintln!("Renewed this device's certificate until {}", date(until));
    }
    Ok(Some(until))
}

/// With a session of the wallet that holds the root key: renew every active device whose
/// certificate ends within [`RENEW_WITHIN_SECS`] (every one with `all`). The devices that
/// were renewed, with their new end.
pub(crate) async fn renew_others(c: &Client, w: &Wallet, all: bool) -> Result<Vec<Device>> {
    let root = need_root(w)?;
    let devices: Vec<Device> = c.get("/api/v1/devices").await?;
    let due = now_ms() + RENEW_WITHIN_SECS * 1000;
    let mut renewed = Vec::new();
    let mut certificates = Vec::new();
    for d in devices.into_iter().filter(|d| d.id != w.profile.device_id && (all || d.cert_expires_at < due)) {
        let certificate = recertify(w, root, &d)?;
        let cert: DeviceCertificate = jws::unverified_payload(&certificate)?;
        certificates.push(certificate);
        renewed.push(Device { cert_expires_at: cert.exp * 1000, ..d });
    }
    if !certificates.is_empty() {
        c.root_operation(w, root, RootOperation::RenewDevices { certificates }).await?;
    }
    Ok(renewed)
}

/// `sichat device renew`.
async fn renew(ctx: &Ctx) -> Result<()> {
    let (mut w, pass) = ctx.open()?;
    if w.root.is_some() {
        let until = renew_own(ctx, &mut w, &pass, true).await?.unwrap_or_default();
        let (w, mut c) = ctx.session().await?;
        let renewed = renew_others(&c, &w, true).await;
        c.logout().await;
        let mut renewed = renewed?;
        renewed.insert(0, Device { cert_expires_at: until, ..this_device(&w) });
        return ctx.print(&renewed, |ds| {
            for d in ds {
                println!("Renewed {} ({}) until {}", d.name, d.id, date(d.cert_expires_at));
            }
            println!("Each other device takes its new certificate at its next command.");
        });
    }
    let before = own_expiry(&w)?;
    let (w, mut c) = match ctx.session().await {
        Ok(s) => s,
        Err(e) if e.downcast_ref::<ServerError>().is_some_and(|s| s.code == "certificate_expired") => bail!(
            "this device's certificate ended on {} and your node holds no newer one for it: on the wallet that \
             holds your root key run `sichat device renew`, then run it here again",
            date(before)
        ),
        Err(e) => return Err(e),
    };
    c.logout().await;
    let until = own_expiry(&w)?;
    let value = json!({"device_id": w.profile.device_id, "renewed": until > before, "expires_at": until});
    ctx.print(&value, |_| {
        if until > before {
            println!("This device's certificate is renewed until {}", date(until));
        } else {
            println!(
                "This device's certificate lasts until {}; the wallet that holds your root key renews it in its \
                 last 30 days (or now, with `sichat device renew` there).",
                date(until)
            );
        }
    })
}

/// The device a certificate this wallet blessed is for, as the node would list it.
pub(crate) fn blessed_device(certificate: &str) -> Option<Device> {
    let c: DeviceCertificate = jws::unverified_payload(certificate).ok()?;
    Some(Device {
        id: c.sub,
        name: c.name,
        sign_key: c.sign_key,
        agree_key: c.agree_key,
        created_at: 0,
        cert_expires_at: 0,
        revoked_at: None,
        revoked_by: None,
    })
}

/// `sichat device reconcile`: every device this wallet blessed that the node does not list
/// is added again, with a fresh certificate for the same keys. A root key the node is behind
/// on is caught up first (`catch_up`, which adds them itself).
async fn reconcile(ctx: &Ctx) -> Result<()> {
    let (w, mut c) = ctx.session().await?;
    let root = need_root(&w)?;
    let listed: Vec<Device> = c.get("/api/v1/devices").await?;
    c.logout().await;
    let mut added = Vec::new();
    for device in w.blessed.iter().filter_map(|c| blessed_device(c)) {
        if device.id == w.profile.device_id || listed.iter().any(|d| d.id == device.id) {
            continue;
        }
        let certificate = recertify(&w, root, &device)?;
        match c.root_operation(&w, root, RootOperation::AddDevice { certificate }).await {
            Ok(_) => added.push(json!({"id": device.id, "name": device.name})),
            // A catch-up on the way (the node was behind on the root key) added it already.
            Err(e) if e.downcast_ref::<ServerError>().is_some_and(|s| s.status == 409) => {}
            Err(e) => return Err(e.context(format!("could not bless {} ({}) again", device.name, device.id))),
        }
    }
    ctx.print(&json!({ "added": added }), |_| match added.len() {
        0 => println!("Your node knows every device this wallet blessed."),
        n => println!("Blessed {n} device(s) again that your restored node did not know; they sign in as before."),
    })
}
