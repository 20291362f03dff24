//! Credentials with no node: a did:key wallet signs them with its own key, and the holder
//! takes the file in with `sichat credential import`.
//!
//! With no node there is no status list to publish, so such a credential cannot be revoked
//! or suspended: its validity is bounded instead (30 days unless asked, at most a year).

use super::{keep, parse_claims, summarize, WhatToIssue};
use crate::{date, Ctx};
use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use serde_json::{json, Map, Value};
use sichat_core::did::Did;
use sichat_core::ids::{new_id, now_ms};
use sichat_core::keys::Ed25519KeyPair;
use sichat_core::p256key::KeyPair;
use sichat_holder::check;
use sichat_issuer::credential::{self, Draft};
use sichat_issuer::reinstate::KeptCredential;
use sichat_issuer::service::Format;
use sichat_issuer::types;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Days a credential issued with no node lasts unless `--valid-days` says otherwise.
pub const DEFAULT_DAYS: i64 = 30;
/// The longest a credential that cannot be revoked may last.
pub const MAX_DAYS: i64 = 365;
/// Where the terms of credentials issued with no node expand to (no node vocabulary to name).
const VOCAB_BASE: &str = "https://sichat.dev";
/// The largest credential file `import` reads.
const MAX_FILE: u64 = 1 << 20;

/// What `issue` made, for `--json`.
#[derive(Serialize)]
struct IssuedAlone {
    id: String,
    format: &'static str,
    subject: String,
    valid_until: i64,
    /// Always false: nothing can revoke a credential with no status list.
    revocable: bool,
    credential: String,
}

/// `sichat credential issue` in a wallet with no node: signed by the did:key itself.
pub async fn issue(ctx: &Ctx, what: WhatToIssue, out: Option<PathBuf>) -> Result<()> {
    let (mut w, pass) = ctx.open()?;
    let root = crate::need_root(&w)?;
    let did = Did::parse(&w.profile.did)?;
    if !did.as_str().starts_with("did:key:") {
        bail!("this wallet's DID is {did}, not a did:key: issue through your node");
    }
    if what.suspendable {
        bail!(
            "a credential issued with no node has no status list, so it cannot be suspended or revoked; \
             leave out --suspendable (it ends when it expires: --valid-days, at most {MAX_DAYS})"
        );
    }
    let days = what.valid_days.unwrap_or(DEFAULT_DAYS);
    if !(1..=MAX_DAYS).contains(&days) {
        bail!("--valid-days must be from 1 to {MAX_DAYS}: a credential issued with no node cannot be revoked");
    }
    let holder = Did::parse(&what.to).map_err(|e| anyhow!("--to must be the holder's DID: {e}"))?;
    let subject = subject(&what.type_name, &holder, parse_claims(&what.claims)?)?;
    let format = Format::parse(&what.format).map_err(|e| anyhow!("{e}"))?;

    let id = new_id();
    let now = now_ms();
    let valid_until = now + days * 24 * 3600 * 1000;
    let vc = credential::build(&Draft {
        id: &id,
        node_url: VOCAB_BASE,
        issuer: did.as_str(),
        type_name: &what.type_name,
        subject: &subject,
        schema_url: None,
        statuses: &[],
        valid_from_ms: now,
        valid_until_ms: Some(valid_until),
    });
    let kid = format!("{did}#{}", root.public().to_multibase());
    let key = KeyPair::Ed25519(Ed25519KeyPair::from_secret(&root.secret())?);
    let secured = match format {
        Format::VcJwt => credential::sign_vc_jwt(&key, &kid, &vc).map_err(|e| anyhow!("{e}"))?,
        Format::LdpVc => sichat_issuer::data_integrity::sign(&key, &kid, &vc, &Default::default())
            .await
            .map_err(|e| anyhow!("cannot sign: {e}"))?
            .to_string(),
    };
    w.issued.push(KeptCredential {
        format: format.as_str().into(),
        credential: secured.clone(),
        status: "active".into(),
    });
    w.save(&ctx.dir, &pass)?;
    if let Some(path) = &out {
        std::fs::write(path, format!("{secured}\n")).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let issued = IssuedAlone {
        id,
        format: format.as_str(),
        subject: holder.to_string(),
        valid_until,
        revocable: false,
        credential: secured,
    };
    ctx.print(&issued, |i| {
        match &out {
            Some(p) => println!("Issued {} ({}) to {}, written to {}", i.id, i.format, i.subject, p.display()),
            None => println!("{}", i.credential),
        }
        eprintln!(
            "It is valid until {}. Issued with no node, it has no status list: it cannot be revoked.",
            date(i.valid_until)
        );
        eprintln!("The holder takes it with `sichat credential import FILE`.");
    })
}

/// The credential subject: the holder's DID and the claims, checked against the type's
/// schema when it is a built-in type.
fn subject(type_name: &str, holder: &Did, claims: Map<String, Value>) -> Result<Value> {
    types::check_name(type_name).map_err(|e| anyhow!("{e}"))?;
    if type_name == sichat_issuer::membership::MEMBERSHIP {
        bail!("only a node issues MembershipCredential");
    }
    if claims.contains_key("id") {
        bail!("claims may not contain \"id\": the subject's id is the holder's DID (--to)");
    }
    let mut subject = Map::new();
    subject.insert("id".into(), json!(holder.as_str()));
    subject.extend(claims);
    let subject = Value::Object(subject);
    if let Some(t) = types::builtin().into_iter().find(|t| t.name == type_name) {
        types::check_subject(&t, &subject).map_err(|e| anyhow!("{e}"))?;
    }
    Ok(subject)
}

/// `sichat credential issued` in a wallet with no node: what it signed, from its own copies.
pub fn issued(ctx: &Ctx) -> Result<()> {
    let (w, _) = ctx.open()?;
    let rows: Vec<Value> = w
        .issued
        .iter()
        .filter_map(|k| {
            let vc = check::unverified(&k.format, &k.credential).ok()?;
            Some(json!({
                "id": vc["id"].as_str()?.trim_start_matches("urn:uuid:"),
                "type": vc["type"].as_array()?.iter().filter_map(Value::as_str).find(|t| *t != "VerifiableCredential"),
                "subject": vc.pointer("/credentialSubject/id"),
                "format": k.format,
                "valid_until": vc["validUntil"],
                "revocable": false,
            }))
        })
        .collect();
    ctx.print(&rows, |rows| {
        for r in rows {
            println!(
                "{}  {:<20} to {}  until {}  (no status list: not revocable)",
                r["id"].as_str().unwrap_or("?"),
                r["type"].as_str().unwrap_or("?"),
                r["subject"].as_str().unwrap_or("?"),
                r["valid_until"].as_str().unwrap_or("?"),
            );
        }
    })
}

/// `sichat credential import FILE`: check a credential someone gave this wallet as a file
/// and keep it, if it is about this wallet and in force.
pub async fn import(ctx: &Ctx, file: &Path) -> Result<()> {
    let text = read_bounded(file)?;
    let text = text.trim();
    let format = if text.starts_with('{') { "ldp_vc" } else { "vc+jwt" };
    let (mut w, pass) = ctx.open()?;
    let resolver = ctx.resolver(&[w.profile.server.as_deref()])?;
    let vc = check::verify_credential(&resolver, format, text)
        .await
        .context("the credential does not verify: not stored")?;
    let about = vc.pointer("/credentialSubject/id").and_then(Value::as_str).unwrap_or_default();
    if about != w.profile.did && !w.profile.also_known_as.iter().any(|d| d == about) {
        bail!("the credential is about {about:?}, not this wallet ({}): not stored", w.profile.did);
    }
    in_force(&vc, now_ms())?;
    let summary = summarize(&resolver, &vc).await;
    if matches!(summary["status"]["state"].as_str(), Some("revoked" | "suspended")) {
        bail!("its issuer has {} it: not stored", summary["status"]["state"].as_str().unwrap_or("ended"));
    }
    let id = keep(ctx, &mut w, &pass, format.into(), text.into(), &vc).await?;
    ctx.print(&summary, |s| {
        println!("Stored {} from {}", s["type"].as_str().unwrap_or("?"), s["issuer"].as_str().unwrap_or("?"));
        println!("  id: {id}\n  status: {}", s["status"]["state"].as_str().unwrap_or("?"));
    })
}

/// Refuse a credential not valid now (a minute of clock difference allowed).
fn in_force(vc: &Value, now: i64) -> Result<()> {
    const SKEW_MS: i64 = 60_000;
    let at = |field: &str| -> Result<Option<i64>> {
        match vc.get(field) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .and_then(check::parse_rfc3339_ms)
                .map(Some)
                .ok_or_else(|| anyhow!("its {field} is not a date: not stored")),
        }
    };
    if let Some(from) = at("validFrom")? {
        if from > now + SKEW_MS {
            bail!("it is not valid before {}: not stored", date(from));
        }
    }
    if let Some(until) = at("validUntil")? {
        if until < now - SKEW_MS {
            bail!("it expired on {}: not stored", date(until));
        }
    }
    Ok(())
}

fn read_bounded(file: &Path) -> Result<String> {
    let mut text = String::new();
    let read = if file.as_os_str() == "-" {
        std::io::stdin().take(MAX_FILE + 1).read_to_string(&mut text)
    } else {
        std::fs::File::open(file)
            .with_context(|| format!("cannot read {}", file.display()))?
            .take(MAX_FILE + 1)
            .read_to_string(&mut text)
    };
    read.with_context(|| format!("cannot read {} as text", file.display()))?;
    if text.len() as u64 > MAX_FILE {
        bail!("{} is larger than a credential can be ({MAX_FILE} bytes)", file.display());
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_credentials_in_force_are_taken() {
        let now = 1_800_000_000_000;
        assert!(in_force(&json!({}), now).is_ok());
        assert!(
            in_force(&json!({"validFrom": "2027-01-15T08:00:00Z", "validUntil": "2027-02-15T08:00:00Z"}), now).is_ok()
        );
        assert!(in_force(&json!({"validUntil": "2020-01-01T00:00:00Z"}), now).is_err());
        assert!(in_force(&json!({"validFrom": "2099-01-01T00:00:00Z"}), now).is_err());
        assert!(in_force(&json!({"validUntil": 5}), now).is_err());
    }

    #[test]
    fn a_subject_names_its_holder_and_fits_a_builtin_schema() {
        let holder = Did::parse("did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK").unwrap();
        let mut named = Map::new();
        named.insert("name".into(), json!("Bob"));
        let s = subject("FriendCredential", &holder, named).unwrap();
        assert_eq!(s["id"], holder.as_str());
        assert!(subject("FriendCredential", &holder, Map::new()).is_err(), "its schema requires a name");
        let mut with_id = Map::new();
        with_id.insert("id".into(), json!("did:key:other"));
        assert!(subject("FriendCredential", &holder, with_id).is_err());
        assert!(subject("MembershipCredential", &holder, Map::new()).is_err());
        assert!(subject("not a type", &holder, Map::new()).is_err());
    }
}
