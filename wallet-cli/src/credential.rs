//! `sichat credential …`: issuing from your node with your issuing key, or alone with a
//! did:key (see [`alone`]); holding, importing and exporting.

mod alone;

use crate::wallet::HeldCredential;
use crate::{date, Ctx};
use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};
use sichat_core::resolver::Resolver;
use sichat_holder::{check, oid4vci};
use sichat_issuer::oid4vci::NewOffer;
use sichat_issuer::reinstate::{KeptCredential, Reinstate, Reinstated};
use sichat_issuer::service::{Format, IssueRequest, Issued, IssuedRecord};
use sichat_issuer::types::CredentialType;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum CredentialCmd {
    /// Credential types you can issue.
    #[command(subcommand)]
    Type(TypeCmd),
    /// Sign a credential for a holder with your issuing key (held by your node). A did:key
    /// wallet signs it itself: it has no status list, so it cannot be revoked and lasts at
    /// most a year (30 days unless --valid-days).
    Issue {
        #[command(flatten)]
        what: WhatToIssue,
        /// Write the credential to this file instead of printing it.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The credentials you have issued, with their status.
    Issued,
    /// After your node was restored from an older backup: put what this wallet issued back
    /// in its issuance log (so you can revoke it again), and apply again the revocations
    /// made since.
    Reinstate,
    /// Offer a credential over OpenID4VCI: prints an openid-credential-offer:// URI and a
    /// QR code. Your node signs it when the holder redeems it, even if you are offline.
    Offer {
        #[command(flatten)]
        what: WhatToIssue,
        /// Require a 6-digit PIN; give it to the holder over another channel.
        #[arg(long)]
        pin: bool,
        /// Put the whole offer in the URI instead of a reference to it.
        #[arg(long)]
        by_value: bool,
    },
    /// Redeem a credential offer (any OpenID4VCI issuer) into this wallet.
    Receive {
        /// The openid-credential-offer:// URI.
        offer: String,
        /// The PIN, if the offer asks for one.
        #[arg(long)]
        pin: Option<String>,
    },
    /// Take in a credential someone gave you as a file (say, from a wallet with no node):
    /// it is kept if it verifies, is about you and is in force.
    Import {
        /// The vc+jwt or Data Integrity credential file, or - for standard input.
        file: PathBuf,
    },
    /// The credentials this wallet holds, with their status checked live.
    List,
    /// One held credential in full.
    Show { id: String },
    /// Write a held credential as it was issued, for offline `sichat verify`.
    Export {
        id: String,
        /// The file to write [default: standard output].
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Get the MembershipCredential your node issues you (done at `init` too).
    Membership,
    /// Revoke a credential you issued. Final.
    Revoke { id: String },
    /// Suspend a credential you issued (it must have been issued --suspendable).
    Suspend { id: String },
    /// Lift a suspension.
    Resume { id: String },
}

/// What a credential says and about whom: shared by `issue` and `offer`.
#[derive(Args)]
pub struct WhatToIssue {
    /// The credential type, e.g. FriendCredential.
    #[arg(long = "type")]
    type_name: String,
    /// The holder's DID (an offer also takes "anyone": whoever redeems it first).
    #[arg(long)]
    to: String,
    /// A claim: key=text, or key:=JSON (e.g. age:=42). Repeat for more.
    #[arg(long = "claim", value_name = "KEY=VALUE")]
    claims: Vec<String>,
    /// Days until it expires (default: no expiry from a node; 30 days from a did:key wallet).
    #[arg(long)]
    valid_days: Option<i64>,
    /// Also give it a suspension entry, so it can be suspended and resumed.
    #[arg(long)]
    suspendable: bool,
    /// How it is secured: vc+jwt (VC-JOSE-COSE), or ldp_vc (a Data Integrity proof:
    /// eddsa-rdfc-2022, or ecdsa-rdfc-2019 for ES256 types).
    #[arg(long, default_value = "vc+jwt", value_parser = ["vc+jwt", "ldp_vc", "di"])]
    format: String,
}

impl WhatToIssue {
    fn request(self) -> Result<IssueRequest> {
        Ok(IssueRequest {
            type_name: self.type_name,
            subject: self.to,
            claims: parse_claims(&self.claims)?,
            valid_until: valid_until(self.valid_days)?,
            suspendable: self.suspendable,
            format: Format::parse(&self.format).map_err(|e| anyhow!("{e}"))?,
        })
    }
}

#[derive(Subcommand)]
pub enum TypeCmd {
    /// List the built-in types and yours.
    List,
    /// Add a type from a JSON Schema file describing the subject's claims.
    Add {
        /// e.g. BookClubCredential
        #[arg(long)]
        name: String,
        #[arg(long)]
        schema: PathBuf,
        #[arg(long)]
        display_name: Option<String>,
        /// Signing algorithm of its credentials: EdDSA, or ES256 for wallets that
        /// follow the DIIP/HAIP profiles.
        #[arg(long, value_parser = ["EdDSA", "ES256"], default_value = "EdDSA")]
        alg: String,
    },
}

/// Parse `key=text` and `key:=json` claims.
pub fn parse_claims(items: &[String]) -> Result<Map<String, Value>> {
    let mut claims = Map::new();
    for item in items {
        let (key, value) = if let Some((k, v)) = item.split_once(":=") {
            (k, serde_json::from_str(v).with_context(|| format!("claim {k}: {v:?} is not JSON"))?)
        } else if let Some((k, v)) = item.split_once('=') {
            (k, Value::String(v.to_owned()))
        } else {
            bail!("claim {item:?} must look like key=value or key:=json");
        };
        if key.is_empty() {
            bail!("claim {item:?} has an empty key");
        }
        claims.insert(key.to_owned(), value);
    }
    Ok(claims)
}

pub async fn run(ctx: &Ctx, cmd: CredentialCmd) -> Result<()> {
    let cmd = match cmd {
        CredentialCmd::Receive { offer, pin } => return receive(ctx, &offer, pin.as_deref()).await,
        CredentialCmd::Import { file } => return alone::import(ctx, &file).await,
        CredentialCmd::List => return list(ctx, None).await,
        CredentialCmd::Show { id } => return list(ctx, Some(&id)).await,
        CredentialCmd::Export { id, out } => return export(ctx, &id, out).await,
        CredentialCmd::Membership => {
            let (mut w, pass) = ctx.open()?;
            let summary = membership(ctx, &mut w, &pass).await?;
            return ctx.print(&summary, |s| {
                println!("Stored your MembershipCredential ({})", s["status"]["state"].as_str().unwrap_or("?"))
            });
        }
        other => other,
    };
    if crate::wallet::read_profile(&ctx.dir)?.server.is_none() {
        return match cmd {
            CredentialCmd::Issue { what, out } => alone::issue(ctx, what, out).await,
            CredentialCmd::Issued => alone::issued(ctx),
            CredentialCmd::Revoke { .. } | CredentialCmd::Suspend { .. } | CredentialCmd::Resume { .. } => bail!(
                "what a wallet with no node issues has no status list: it cannot be revoked or suspended, it ends \
                 when it expires"
            ),
            _ => Err(crate::no_server()),
        };
    }
    let (_, mut c) = ctx.session().await?;
    let result = match cmd {
        CredentialCmd::Type(TypeCmd::List) => {
            let types: Vec<CredentialType> = c.get("/api/v1/issuer/types").await?;
            ctx.print(&types, |ts| {
                for t in ts {
                    let props =
                        t.schema["properties"].as_object().map(|p| p.keys().cloned().collect::<Vec<_>>().join(", "));
                    let origin = if t.builtin { "built-in" } else { "yours" };
                    println!("{:<24} {:<10} {:<6} claims: {}", t.name, origin, t.alg, props.unwrap_or_default());
                }
            })
        }
        CredentialCmd::Type(TypeCmd::Add { name, schema, display_name, alg }) => {
            let text = std::fs::read_to_string(&schema).with_context(|| format!("cannot read {}", schema.display()))?;
            let schema: Value =
                serde_json::from_str(&text).with_context(|| format!("{} is not JSON", schema.display()))?;
            let body = json!({"name": name, "display_name": display_name, "schema": schema, "alg": alg});
            let t: CredentialType = c.post("/api/v1/issuer/types", &body).await?;
            ctx.print(&t, |t| println!("Added {}; issue it with `sichat credential issue --type {}`", t.name, t.name))
        }
        CredentialCmd::Issue { what, out } => {
            let req = what.request()?;
            let issued: Issued = c.post("/api/v1/issuer/credentials", &req).await?;
            keep_issued(ctx, &issued.id, issued.format.as_str(), &issued.credential)?;
            if let Some(path) = &out {
                std::fs::write(path, &issued.credential).with_context(|| format!("cannot write {}", path.display()))?;
            }
            ctx.print(&issued, |i| match &out {
                Some(p) => println!("Issued {} ({}), written to {}", i.id, i.format.as_str(), p.display()),
                None => println!("{}", i.credential),
            })
        }
        CredentialCmd::Reinstate => {
            let (w, _) = ctx.open()?;
            reinstate(ctx, &c, &w).await
        }
        CredentialCmd::Issued => {
            let records: Vec<IssuedRecord> = c.get("/api/v1/issuer/credentials").await?;
            ctx.print(&records, |rs| {
                for r in rs {
                    println!("{}  {:<20} {:<9} to {}  {}", r.id, r.type_name, r.status, r.subject, date(r.issued_at));
                }
            })
        }
        CredentialCmd::Offer { what, pin, by_value } => {
            let r = what.request()?;
            let body = NewOffer {
                type_name: r.type_name,
                subject: Some(r.subject),
                claims: r.claims,
                pin,
                valid_until: r.valid_until,
                suspendable: r.suspendable,
                format: r.format,
            };
            let offer: Value = c.post("/api/v1/issuer/offers", &body).await?;
            let uri =
                offer[if by_value { "offer_by_value" } else { "offer_uri" }].as_str().unwrap_or_default().to_owned();
            ctx.print(&offer, |o| {
                println!("{uri}");
                if let Some(qr) = qr(&uri) {
                    println!("{qr}");
                }
                if let Some(pin) = o["tx_code"].as_str() {
                    println!("PIN: {pin}  (send it to the holder another way than the offer)");
                }
                println!(
                    "Expires {}. The holder runs: sichat credential receive '<the URI above>'",
                    date(o["expires_at"].as_i64().unwrap_or(0))
                );
            })
        }
        CredentialCmd::Revoke { id } => status(ctx, &c, &id, "revoke").await,
        CredentialCmd::Suspend { id } => status(ctx, &c, &id, "suspend").await,
        CredentialCmd::Resume { id } => status(ctx, &c, &id, "resume").await,
        CredentialCmd::Receive { .. }
        | CredentialCmd::Import { .. }
        | CredentialCmd::List
        | CredentialCmd::Show { .. }
        | CredentialCmd::Export { .. }
        | CredentialCmd::Membership => {
            unreachable!("handled above")
        }
    };
    c.logout().await;
    result
}

fn valid_until(days: Option<i64>) -> Result<Option<i64>> {
    match days {
        Some(d) if d < 1 => Err(anyhow!("--valid-days must be at least 1")),
        Some(d) => Ok(Some(sichat_core::ids::now_ms() + d * 24 * 3600 * 1000)),
        None => Ok(None),
    }
}

pub(crate) fn qr(text: &str) -> Option<String> {
    let code = qrcode::QrCode::new(text.as_bytes()).ok()?;
    Some(code.render::<qrcode::render::unicode::Dense1x2>().quiet_zone(true).build())
}

/// Redeem an offer: the proof of possession is signed by this device's key (a did:web
/// wallet) or by the did:key itself, so the credential is bound to this wallet's DID.
async fn receive(ctx: &Ctx, uri: &str, pin: Option<&str>) -> Result<()> {
    let (mut w, pass) = ctx.open()?;
    // One resolver, and its fetcher, for every request: the offer names URLs, and a
    // stranger's offer must not make this wallet reach its own network.
    let resolver = ctx.resolver(&[w.profile.server.as_deref()])?;
    let offer = oid4vci::resolve_offer(resolver.fetcher(), uri).await?;
    let pin = match (&offer.tx_code, pin) {
        (Some(_), None) if std::io::IsTerminal::is_terminal(&std::io::stdin()) => {
            Some(rpassword::prompt_password("PIN from the issuer: ")?)
        }
        (_, p) => p.map(str::to_owned),
    };
    let (kid, key) = match &w.profile.server {
        Some(_) => (format!("{}#device-{}", w.profile.did, w.profile.device_id), &w.device_sign),
        None => {
            let root = w.root.as_ref().ok_or_else(|| anyhow!("this wallet has no key for its DID"))?;
            (format!("{}#{}", w.profile.did, root.public().to_multibase()), root)
        }
    };
    if !ctx.json {
        eprintln!("Redeeming {} from {} …", offer.configuration_ids[0], offer.credential_issuer);
    }
    let got = oid4vci::receive(resolver.fetcher(), &offer, oid4vci::ProofKey { kid, key }, pin.as_deref()).await?;
    let vc = check::verify_credential(&resolver, &got.format, &got.credential)
        .await
        .context("the issued credential does not verify")?;
    if vc.pointer("/credentialSubject/id").and_then(Value::as_str) != Some(w.profile.did.as_str()) {
        bail!("the issued credential is about someone else, not {}: not stored", w.profile.did);
    }
    let id = keep(ctx, &mut w, &pass, got.format, got.credential, &vc).await?;
    let summary = summarize(&resolver, &vc).await;
    ctx.print(&summary, |s| {
        println!("Stored {} from {}", s["type"].as_str().unwrap_or("?"), s["issuer"].as_str().unwrap_or("?"));
        println!("  id: {id}\n  status: {}", s["status"]["state"].as_str().unwrap_or("?"));
    })
}

/// Keep a verified credential: sealed in this wallet and, for a full client, on its node
/// too, so a lost device loses nothing. Returns its id.
async fn keep(
    ctx: &Ctx,
    w: &mut crate::wallet::Wallet,
    pass: &str,
    format: String,
    credential: String,
    vc: &Value,
) -> Result<String> {
    let id = vc["id"].as_str().unwrap_or_default().trim_start_matches("urn:uuid:").to_owned();
    let held = HeldCredential { id: id.clone(), format, credential, received_at: sichat_core::ids::now_ms() };
    w.credentials.retain(|c| c.id != id);
    w.credentials.push(held.clone());
    w.save(&ctx.dir, pass)?;
    if let Some(server) = w.profile.server.clone() {
        let mut c = crate::client::Client::new(&server)?;
        c.login(w).await?;
        let kept: Result<Value> = c.post("/api/v1/holder/credentials", &held).await;
        c.logout().await;
        kept.context("stored in this wallet, but your node did not keep a copy")?;
    }
    Ok(id)
}

/// Fetch, check and keep the MembershipCredential the wallet's node issues it.
pub async fn membership(ctx: &Ctx, w: &mut crate::wallet::Wallet, pass: &str) -> Result<Value> {
    let server = w.profile.server.clone().ok_or_else(|| anyhow!("a did:key wallet belongs to no node"))?;
    let mut c = crate::client::Client::new(&server)?;
    c.login(w).await?;
    let issued: Result<Value> = c.get("/api/v1/membership").await;
    c.logout().await;
    let jwt = issued?["credential"].as_str().unwrap_or_default().to_owned();
    let resolver = ctx.resolver(&[Some(&server)])?;
    let vc = check::verify_vc_jwt(&resolver, &jwt).await.context("the node's MembershipCredential does not verify")?;
    if vc.pointer("/credentialSubject/id").and_then(Value::as_str) != Some(w.profile.did.as_str()) {
        bail!("the node issued a membership for someone else");
    }
    keep(ctx, w, pass, "vc+jwt".into(), jwt, &vc).await?;
    Ok(summarize(&resolver, &vc).await)
}

async fn summarize(resolver: &Resolver, vc: &Value) -> Value {
    let status = check::status(resolver, vc, sichat_core::ids::now_ms()).await;
    let types: Vec<&str> =
        vc["type"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    let mut claims = vc["credentialSubject"].clone();
    if let Some(o) = claims.as_object_mut() {
        o.remove("id");
    }
    json!({
        "id": vc["id"].as_str().unwrap_or_default().trim_start_matches("urn:uuid:"),
        "type": types.iter().find(|t| **t != "VerifiableCredential").copied().unwrap_or("VerifiableCredential"),
        "issuer": vc["issuer"],
        "subject": vc["credentialSubject"]["id"],
        "claims": claims,
        "valid_from": vc["validFrom"],
        "valid_until": vc["validUntil"],
        "status": status,
    })
}

async fn node_copies(server: &str, w: &crate::wallet::Wallet) -> Result<Vec<HeldCredential>> {
    let mut c = crate::client::Client::new(server)?;
    c.login(w).await?;
    let remote = c.get("/api/v1/holder/credentials").await;
    c.logout().await;
    remote
}

async fn list(ctx: &Ctx, only: Option<&str>) -> Result<()> {
    let (mut w, pass) = ctx.open()?;
    // A full client first takes in what its node holds (received on another device). If
    // the node cannot be reached, or refuses, list what this wallet holds.
    if let Some(server) = w.profile.server.clone() {
        match node_copies(&server, &w).await {
            Ok(remote) => {
                let missing: Vec<HeldCredential> =
                    remote.into_iter().filter(|r| !w.credentials.iter().any(|l| l.id == r.id)).collect();
                if !missing.is_empty() {
                    w.credentials.extend(missing);
                    w.save(&ctx.dir, &pass)?;
                }
            }
            Err(e) => eprintln!("warning: not synced with your node ({e:#}); showing this wallet's copies"),
        }
    }
    let resolver = ctx.resolver(&[w.profile.server.as_deref()])?;
    let mut out = Vec::new();
    for held in &w.credentials {
        if only.is_some_and(|id| id != held.id) {
            continue;
        }
        let vc = check::unverified(&held.format, &held.credential)?;
        let mut summary = summarize(&resolver, &vc).await;
        summary["format"] = json!(held.format);
        if only.is_some() {
            summary["credential"] = json!(held.credential);
            summary["document"] = vc;
        }
        out.push(summary);
    }
    if let Some(id) = only {
        let one =
            out.pop().ok_or_else(|| anyhow!("this wallet holds no credential {id}: see `sichat credential list`"))?;
        return ctx.print(&one, |s| println!("{}", serde_json::to_string_pretty(&s["document"]).unwrap_or_default()));
    }
    ctx.print(&out, |items| {
        if items.is_empty() {
            println!("No credentials yet. Redeem an offer with `sichat credential receive '<offer URI>'`.");
        }
        for s in items {
            let until = s["valid_until"].as_str().map(|u| format!(", until {u}")).unwrap_or_default();
            println!(
                "{}  {}  from {}  [{}]{until}",
                s["id"].as_str().unwrap_or(""),
                s["type"].as_str().unwrap_or(""),
                s["issuer"].as_str().unwrap_or(""),
                s["status"]["state"].as_str().unwrap_or("")
            );
            println!("    {}", s["claims"]);
        }
    })
}

async fn export(ctx: &Ctx, id: &str, out: Option<PathBuf>) -> Result<()> {
    let (w, _) = ctx.open()?;
    let held = w
        .credentials
        .iter()
        .find(|c| c.id == id)
        .ok_or_else(|| anyhow!("this wallet holds no credential {id}: see `sichat credential list`"))?;
    match out {
        Some(path) => {
            std::fs::write(&path, format!("{}\n", held.credential))
                .with_context(|| format!("cannot write {}", path.display()))?;
            ctx.print(&json!({"id": id, "format": held.format, "file": path}), |_| {
                eprintln!(
                    "Wrote {id} ({}) to {}; check it with `sichat verify {}`",
                    held.format,
                    path.display(),
                    path.display()
                )
            })
        }
        None => {
            println!("{}", held.credential);
            Ok(())
        }
    }
}

/// Keep a copy of what this wallet issued: a node restored from an older backup takes it
/// back (`sichat credential reinstate`).
fn keep_issued(ctx: &Ctx, id: &str, format: &str, credential: &str) -> Result<()> {
    let pass = ctx.passphrase(false)?;
    crate::wallet::update(&ctx.dir, &pass, |w| {
        w.issued.retain(|k| kept_id(k).as_deref() != Some(id));
        w.issued.push(KeptCredential { format: format.into(), credential: credential.into(), status: "active".into() });
        Ok(())
    })
    .context("issued, but this wallet could not keep its copy")
}

/// The id of a kept credential.
fn kept_id(k: &KeptCredential) -> Option<String> {
    let vc = check::unverified(&k.format, &k.credential).ok()?;
    Some(vc["id"].as_str()?.trim_start_matches("urn:uuid:").to_owned())
}

/// `sichat credential reinstate`: after the node was restored from an older backup, put
/// what this wallet issued back in its issuance log, with the status this wallet set.
async fn reinstate(ctx: &Ctx, c: &crate::client::Client, w: &crate::wallet::Wallet) -> Result<()> {
    let mut out: Vec<Reinstated> = Vec::new();
    for batch in w.issued.chunks(20) {
        let req = Reinstate { credentials: batch.to_vec() };
        let done: Vec<Reinstated> = c.post("/api/v1/issuer/credentials/reinstate", &req).await?;
        out.extend(done);
    }
    ctx.print(&out, |out| {
        let count = |o: &str| out.iter().filter(|r| r.outcome == o).count();
        println!(
            "{} credential(s) put back in your node's issuance log, {} revoked again, {} it knew.",
            count("reinstated"),
            count("revoked"),
            count("known")
        );
        for r in out.iter().filter(|r| r.outcome == "refused") {
            println!("refused {}: {}", r.id, r.why.as_deref().unwrap_or("?"));
        }
    })
}

async fn status(ctx: &Ctx, c: &crate::client::Client, id: &str, action: &str) -> Result<()> {
    let r: IssuedRecord = c.post(&format!("/api/v1/issuer/credentials/{id}/{action}"), &json!({})).await?;
    let pass = ctx.passphrase(false)?;
    crate::wallet::update(&ctx.dir, &pass, |w| {
        for k in w.issued.iter_mut().filter(|k| kept_id(k).as_deref() == Some(r.id.as_str())) {
            k.status = r.status.clone();
        }
        Ok(())
    })?;
    ctx.print(&r, |r| println!("{} is now {}; the status list shows it at once.", r.id, r.status))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_parse_as_text_or_json() {
        let c = parse_claims(&["name=Bob".into(), "age:=42".into(), "note=a=b".into()]).unwrap();
        assert_eq!(c["name"], "Bob");
        assert_eq!(c["age"], 42);
        assert_eq!(c["note"], "a=b");
        assert!(parse_claims(&["novalue".into()]).is_err());
        assert!(parse_claims(&["=x".into()]).is_err());
        assert!(parse_claims(&["n:={bad".into()]).is_err());
    }
}
