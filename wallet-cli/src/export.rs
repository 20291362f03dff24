//! 1→0, the account leaves its node: `sichat export` takes into the wallet what it needs to
//! go on without the node (its issuing keys, where each credential it issued keeps its
//! status, its history) and writes a static site of what the node published for it (DID
//! document and log, status lists, schemas, context) for any static web host at the DID's
//! host. `sichat site check` finds what was altered there; `sichat site revoke` re-signs a
//! status list with the exported issuing key, so revoking still works with no node.

use crate::{need_root, Ctx};
use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sichat_accounts::protocol::*;
use sichat_core::ids::{b64url_decode, now_ms};
use sichat_core::jwe;
use sichat_core::jws;
use sichat_core::keys::{Ed25519KeyPair, X25519KeyPair};
use sichat_core::p256key::{KeyPair, PublicKey};
use sichat_issuer::credential::{sign_vc_jwt, VC_JWT_TYP};
use sichat_issuer::published::{Published, PublishedList, StatusPlace};
use sichat_issuer::status::{self, Bitstring, LIST_SIZE};
use std::path::{Path, PathBuf};

/// What `sichat export` kept in the wallet (sealed with its other secrets).
#[derive(Clone, Serialize, Deserialize)]
pub struct Exported {
    pub at: i64,
    /// Where the static site was written: the default of `sichat site`.
    pub site: PathBuf,
    /// The origin the site must be served at (the node's).
    pub origin: String,
    pub keys: Vec<ExportedIssuingKey>,
    pub lists: Vec<PublishedList>,
    pub credentials: Vec<StatusPlace>,
    /// Each file of the site (its path under the origin) and its SHA-256, as last written.
    pub files: Vec<(String, String)>,
    /// Who could message the account (its node's policy), as it was.
    pub policy: sichat_messaging::policy::Policy,
}

#[derive(Args)]
pub struct ExportArgs {
    /// Where to write the static site [default: site/ in the wallet directory].
    #[arg(long)]
    site: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum SiteCmd {
    /// Check that the static site is as `sichat export` (or `site revoke`) last wrote it.
    /// Exits 2 when a file is altered or missing.
    Check {
        /// The site directory [default: where `sichat export` wrote it].
        #[arg(long)]
        site: Option<PathBuf>,
    },
    /// Revoke a credential you issued, with no node: its status list in the site is
    /// re-signed with your exported issuing key. Publish the site again afterwards.
    Revoke {
        /// The credential's id (`sichat site issued` lists them).
        id: String,
        /// The site directory [default: where `sichat export` wrote it].
        #[arg(long)]
        site: Option<PathBuf>,
    },
    /// The credentials you had issued when you exported, with the status this wallet set.
    Issued,
}

/// `sichat export`.
pub async fn run(ctx: &Ctx, a: ExportArgs) -> Result<()> {
    let (w, mut c) = ctx.session().await?;
    let pass = ctx.passphrase(false)?;
    let result = export(ctx, &w, &c, &pass, a).await;
    c.logout().await;
    let (exported, holds) = result?;
    let out = json!({
        "site": exported.site, "origin": exported.origin, "files": exported.files.len(),
        "issuing_keys": exported.keys.len(), "issued": exported.credentials.len(), "holds": holds,
    });
    ctx.print(&out, |_| {
        println!("Wrote {} file(s) to {}.", exported.files.len(), exported.site.display());
        println!(
            "This wallet now holds your {} issuing key(s) and the status of the {} credential(s) you issued.",
            exported.keys.len(),
            exported.credentials.len()
        );
        println!("Serve that directory at {}/ with any static web host (it keeps your DID", exported.origin);
        println!("and what you issued verifying with no node); revoke with `sichat site revoke ID`,");
        println!("then publish it again. `sichat site check` tells if a file there was altered.");
    })
}

async fn export(
    ctx: &Ctx,
    w: &crate::wallet::Wallet,
    c: &crate::client::Client,
    pass: &str,
    a: ExportArgs,
) -> Result<(Exported, Value)> {
    let root = need_root(w)?;
    let name = w.profile.name.clone().ok_or_else(crate::no_server)?;
    let step = |s: &str| {
        if !ctx.json {
            eprintln!("… {s}");
        }
    };
    step("taking in the messages waiting for you, and your history (messages and contacts)");
    let fetched = crate::message::fetch_waiting(ctx, w, pass, c).await?;
    let synced = crate::history::sync_saved(ctx, pass, c, None).await?;

    step("your credentials kept on the node (received on other devices), and your message policy");
    let on_node: Vec<crate::wallet::HeldCredential> = c.get("/api/v1/holder/credentials").await?;
    let policy: sichat_messaging::policy::Policy = c.get("/api/v1/messages/policy").await?;

    step("your issuing keys, sealed to a key this wallet just made");
    let ephemeral = X25519KeyPair::generate();
    let op = RootOperation::ExportIssuingKeys { recipient_key: ephemeral.public().to_jwk() };
    let request = c.signed_root_op(w, root, op, None).await?;
    let sealed: SealedIssuingKeys = c.post("/api/v1/account/issuing-keys", &SignedRequest { request }).await?;
    let plain = jwe::open(&ephemeral, TYP_ISSUING_KEYS, &sealed.sealed, 1 << 20)?;
    let keys: Vec<ExportedIssuingKey> = serde_json::from_slice(&plain).context("the node's issuing keys")?;
    if keys.is_empty() {
        bail!("the node handed over no issuing key");
    }

    step("what the node publishes for you");
    let published: Published = c.get("/api/v1/issuer/published").await?;
    let origin = origin_of(c.base())?;
    let mut urls = vec![format!("{origin}/users/{name}/did.json"), format!("{origin}/users/{name}/did.jsonl")];
    urls.extend(published.lists.iter().map(|l| l.url.clone()));
    urls.extend(published.schemas.iter().cloned());
    urls.push(published.context.clone());
    let site = a.site.unwrap_or_else(|| ctx.dir.join("site"));
    let mut files = Vec::new();
    let mut elsewhere = Vec::new();
    for url in urls {
        let Some(path) = url.strip_prefix(&origin).filter(|p| p.starts_with('/')) else {
            // A list that moved in with the account is still named by its first node's URL.
            elsewhere.push(url);
            continue;
        };
        let Some(body) = c.get_text_if_found(path).await? else { continue };
        files.push((path.to_owned(), write(&site, path, &body)?));
    }
    for url in &elsewhere {
        eprintln!("note: {url} is named by credentials issued on an earlier node; that node keeps serving it");
    }
    let exported = Exported {
        at: now_ms(),
        site,
        origin,
        keys,
        lists: published.lists,
        credentials: published.credentials,
        files,
        policy,
    };
    let kept = exported.clone();
    let held = crate::wallet::update(&ctx.dir, pass, |saved| {
        let missing: Vec<_> = on_node.into_iter().filter(|r| !saved.credentials.iter().any(|l| l.id == r.id)).collect();
        saved.credentials.extend(missing);
        saved.exported = Some(kept);
        Ok(saved.credentials.len())
    })?;
    let holds = json!({"credentials": held, "messages_fetched": fetched,
        "messages_from_history": synced.received_messages});
    Ok((exported, holds))
}

/// `scheme://host[:port]` of a URL.
fn origin_of(url: &str) -> Result<String> {
    let u = url::Url::parse(url).map_err(|_| anyhow!("{url} is not a URL"))?;
    Ok(u.origin().ascii_serialization())
}

/// Write `body` at `path` under `site` (through a temporary file); returns its SHA-256.
fn write(site: &Path, path: &str, body: &str) -> Result<String> {
    let file = site_file(site, path)?;
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let tmp = file.with_extension("sichat-tmp");
    std::fs::write(&tmp, body).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &file).with_context(|| format!("cannot write {}", file.display()))?;
    Ok(sha256(body.as_bytes()))
}

/// The file for a URL path: only plain path segments, nothing that climbs out of the site.
fn site_file(site: &Path, path: &str) -> Result<PathBuf> {
    let mut file = site.to_path_buf();
    for segment in path.trim_start_matches('/').split('/') {
        if segment.is_empty() || segment == "." || segment == ".." || segment.contains('\\') {
            bail!("{path} is not a path a site can hold");
        }
        file.push(segment);
    }
    Ok(file)
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

pub async fn site(ctx: &Ctx, cmd: SiteCmd) -> Result<()> {
    match cmd {
        SiteCmd::Check { site } => check(ctx, site),
        SiteCmd::Revoke { id, site } => revoke(ctx, &id, site),
        SiteCmd::Issued => issued(ctx),
    }
}

fn issued(ctx: &Ctx) -> Result<()> {
    let (w, _) = ctx.open()?;
    let e = exported(&w)?;
    ctx.print(&e.credentials, |all| {
        for c in all {
            println!("{}  {:<20} {:<9} to {}", c.id, c.type_name, c.status, c.subject);
        }
    })
}

fn exported(w: &crate::wallet::Wallet) -> Result<&Exported> {
    w.exported
        .as_ref()
        .ok_or_else(|| anyhow!("this wallet exported nothing yet: run `sichat export` while your node runs"))
}

/// The site's files that differ from what the wallet last wrote: `(path, "altered" | "missing")`.
fn differences(e: &Exported, site: &Path) -> Result<Vec<(String, &'static str)>> {
    let mut bad = Vec::new();
    for (path, hash) in &e.files {
        match std::fs::read(site_file(site, path)?) {
            Ok(bytes) if sha256(&bytes) == *hash => {}
            Ok(_) => bad.push((path.clone(), "altered")),
            Err(_) => bad.push((path.clone(), "missing")),
        }
    }
    Ok(bad)
}

fn check(ctx: &Ctx, site: Option<PathBuf>) -> Result<()> {
    let (w, _) = ctx.open()?;
    let e = exported(&w)?;
    let site = site.unwrap_or_else(|| e.site.clone());
    let bad = differences(e, &site)?;
    let out = json!({"site": site, "files": e.files.len(),
        "bad": bad.iter().map(|(p, why)| json!({"path": p, "state": why})).collect::<Vec<_>>()});
    ctx.print(&out, |_| {
        for (path, why) in &bad {
            println!("{why}: {path}");
        }
        if bad.is_empty() {
            println!("All {} file(s) in {} are as this wallet wrote them.", e.files.len(), site.display());
        }
    })?;
    if !bad.is_empty() {
        eprintln!("Put back the files as this wallet wrote them (`sichat export` again while the node runs).");
        std::process::exit(2);
    }
    Ok(())
}

fn revoke(ctx: &Ctx, id: &str, site: Option<PathBuf>) -> Result<()> {
    let (w, pass) = ctx.open()?;
    let e = exported(&w)?;
    let site = site.unwrap_or_else(|| e.site.clone());
    let place = e
        .credentials
        .iter()
        .find(|c| c.id == id)
        .ok_or_else(|| anyhow!("no credential {id} among those you had issued when you exported"))?;
    if place.status == "revoked" {
        bail!("credential {id} is revoked already");
    }
    let (list_id, index) = &place.revocation;
    let list = e
        .lists
        .iter()
        .find(|l| l.id == *list_id)
        .ok_or_else(|| anyhow!("its status list {list_id} was not exported"))?;
    let path = list
        .url
        .strip_prefix(&e.origin)
        .ok_or_else(|| anyhow!("its status list is served by an earlier node ({}), not by your site", list.url))?;
    let hash = e.files.iter().find(|(p, _)| p == path).map(|(_, h)| h.clone());
    let file = site_file(&site, path)?;
    let jwt = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
    if hash.as_deref() != Some(sha256(jwt.as_bytes()).as_str()) {
        bail!(
            "{} was altered since this wallet wrote it: nothing changed; put back the file as it was",
            file.display()
        );
    }
    let (key, kid) = list_key(e, &jwt)?;
    let payload: Value = jws::verify_with(&jwt, &PublicKey::Ed25519(key.public()), VC_JWT_TYP)
        .map_err(|err| anyhow!("{} does not verify under your issuing key ({err}): nothing changed", file.display()))?;
    let encoded = payload.pointer("/credentialSubject/encodedList").and_then(Value::as_str).unwrap_or_default();
    let mut bits = Bitstring::decode(encoded, LIST_SIZE / 8).map_err(|err| anyhow!("its status list: {err}"))?;
    let index = usize::try_from(*index).map_err(|_| anyhow!("its status index is out of range"))?;
    bits.set(index, true).map_err(|err| anyhow!("its status list: {err}"))?;
    let issuer = payload["issuer"].as_str().unwrap_or_default();
    let vc = status::list_credential(&list.url, issuer, &list.purpose, &bits, now_ms());
    let signed = sign_vc_jwt(&KeyPair::Ed25519(key), &kid, &vc).map_err(|err| anyhow!("{err}"))?;
    let new_hash = write(&site, path, &signed)?;
    let file = site_file(&site, path)?;
    let path = path.to_owned();
    crate::wallet::update(&ctx.dir, &pass, |saved| {
        let e = saved.exported.as_mut().ok_or_else(|| anyhow!("the export is gone from the wallet"))?;
        for (_, h) in e.files.iter_mut().filter(|(p, _)| *p == path) {
            h.clone_from(&new_hash);
        }
        for c in e.credentials.iter_mut().filter(|c| c.id == id) {
            c.status = "revoked".into();
        }
        Ok(())
    })
    .context("the status list is re-signed, but this wallet could not record it")?;
    ctx.print(&json!({"revoked": id, "file": file}), |_| {
        println!("Revoked {id}: {path} is re-signed. Publish {} again.", site.display());
    })
}

/// The exported issuing key that signed a status list (by its `kid`), and that `kid`.
fn list_key(e: &Exported, jwt: &str) -> Result<(Ed25519KeyPair, String)> {
    let header = jws::header_of(jwt).map_err(|err| anyhow!("the status list is not a JWS: {err}"))?;
    let kid = header["kid"].as_str().ok_or_else(|| anyhow!("the status list names no kid"))?.to_owned();
    let fragment = kid.rsplit_once('#').map(|(_, f)| f).unwrap_or_default();
    let k =
        e.keys.iter().find(|k| format!("issuing-{}", k.id) == fragment).ok_or_else(|| {
            anyhow!("the status list is signed by {kid}, which is not one of your exported issuing keys")
        })?;
    let secret = b64url_decode(&k.secret).ok_or_else(|| anyhow!("the exported issuing key {} is corrupt", k.id))?;
    Ok((Ed25519KeyPair::from_secret(&secret)?, kid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_paths_stay_inside_the_site() {
        let site = Path::new("/srv/site");
        assert_eq!(site_file(site, "/users/alice/did.json").unwrap(), site.join("users/alice/did.json"));
        for bad in ["/users/../../etc/passwd", "/users//x", "/./x", "/a\\b", "/"] {
            assert!(site_file(site, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn origins_keep_scheme_host_and_port() {
        assert_eq!(origin_of("http://127.0.0.1:8080/").unwrap(), "http://127.0.0.1:8080");
        assert_eq!(origin_of("https://id.example.org").unwrap(), "https://id.example.org");
        assert!(origin_of("not a url").is_err());
    }
}
