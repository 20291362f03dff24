//! `sichat init` (a new wallet, alone or on a node) and `sichat join` (a wallet that worked
//! alone gets an account on a node, keeping its root key and everything it holds).

use crate::client::Client;
use crate::wallet::{self, Profile, Wallet};
use crate::{credential, need_root, Ctx, CERT_LIFETIME_SECS};
use anyhow::{anyhow, bail, Result};
use serde_json::json;
use sichat_accounts::protocol::*;
use sichat_core::did::Did;
use sichat_core::ids::{new_id, now_ms};
use sichat_core::jws;
use sichat_core::keys::{Ed25519KeyPair, X25519KeyPair};

/// A node being joined by `init` or `join`.
struct Joining {
    client: Client,
    server: String,
    invite: String,
    node_did: Did,
    node_key: sichat_core::keys::Ed25519Public,
}

impl Joining {
    /// Reach the node and learn its DID and key (pinned in the profile).
    async fn reach(server: &str, invite: &str, name: &str) -> Result<Self> {
        UserName::parse(name).map_err(|e| anyhow!("{e}"))?;
        let client = Client::new(server)?;
        let (node_doc, node_key) = client.node().await?;
        let server = server.trim_end_matches('/').to_owned();
        Ok(Joining { client, server, invite: invite.to_owned(), node_did: node_doc.id, node_key })
    }
}

pub async fn init(
    ctx: &Ctx,
    server: Option<String>,
    invite: Option<String>,
    name: Option<String>,
    device_name: String,
) -> Result<()> {
    if wallet::exists(&ctx.dir) {
        bail!("a wallet already exists in {}: use it, or pass --wallet DIR for another", ctx.dir.display());
    }
    let joining = match server {
        None => None,
        Some(server) => {
            let invite = invite.ok_or_else(|| anyhow!("--server needs --invite CODE"))?;
            let name = name.as_deref().ok_or_else(|| anyhow!("choose a user name with --name NAME (a-z, 0-9, '-')"))?;
            Some(Joining::reach(&server, &invite, name).await?)
        }
    };
    let root = Ed25519KeyPair::generate();
    let sign = Ed25519KeyPair::generate();
    let agree = X25519KeyPair::generate();
    let device_id = new_id();
    // Alone: a did:key. On a node: did:web:<node>:users:<name>.
    let did = match (&joining, &name) {
        (Some(j), Some(name)) => j.node_did.web_child(&["users", name])?,
        _ => Did::key(&root.public()),
    };
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
        did: did.to_string(),
        name,
        server: joining.as_ref().map(|j| j.server.clone()),
        node_did: joining.as_ref().map(|j| j.node_did.to_string()),
        node_key: joining.as_ref().map(|j| j.node_key.to_multibase()),
        device_id,
        device_name,
        has_root_key: true,
        created_at: now_ms(),
        also_known_as: Vec::new(),
        recovery_key: None,
    };
    let w = Wallet::fresh(profile, Some(root), sign, agree, certificate);
    let passphrase = ctx.passphrase(true)?;

    let Some(joining) = joining else {
        w.save(&ctx.dir, &passphrase)?;
        return ctx.print(&w.profile, |p| {
            println!("Made a wallet in {} for {}", ctx.dir.display(), p.did);
            println!("It works alone. To join a node later, keeping all of it: sichat join --server URL --invite CODE --name NAME");
        });
    };
    // Keep the keys on disk before the node learns of them: an account whose root key
    // was never saved could not be recovered.
    let pending = w.write_pending(&ctx.dir, &passphrase)?;
    let account = match register(&joining.client, &w, &joining.invite, None).await {
        Ok(a) => a,
        Err(e) => {
            let _ = std::fs::remove_file(&pending);
            return Err(e);
        }
    };
    wallet::commit_pending(&pending, &ctx.dir)?;
    let mut w = w;
    let member = credential::membership(ctx, &mut w, &passphrase).await;
    if let Err(e) = &member {
        eprintln!("warning: no MembershipCredential yet ({e:#}); get it later with `sichat credential membership`");
    }
    ctx.print(&account, |a| {
        println!("Welcome, {}! Your wallet is in {}", a.name, ctx.dir.display());
        if member.is_ok() {
            println!("  Your node issued you a MembershipCredential (see `sichat credential list`).");
        }
        println!("  DID:          {}", a.did);
        println!("  DID document: {}", a.did_document_url);
        println!("  Invite quota: {} (see `sichat invite create --help`)", a.quota);
    })
}

async fn register(client: &Client, w: &Wallet, invite: &str, key_did: Option<&Did>) -> Result<Account> {
    let root = need_root(w)?;
    let ch: Challenge = client.post("/api/v1/challenges", &json!({})).await?;
    let claims = RegistrationClaims {
        aud: ch.audience,
        challenge: ch.challenge,
        invite: invite.trim().to_owned(),
        name: w.profile.name.clone().unwrap_or_default(),
        root_key: root.public().to_multibase(),
        device_certificate: w.certificate.clone(),
        iat: now_secs(),
        key_did: key_did.map(Did::to_string),
    };
    let request = jws::sign(root, TYP_REGISTER, None, &claims)?;
    client.post("/api/v1/accounts", &SignedRequest { request }).await
}

/// `sichat join`: the did:key wallet in `ctx.dir` registers on a node with the root key it
/// has, as `did:web:<node>:users:<name>`, which names the did:key in `alsoKnownAs` (the
/// node checks the did:key is the root key that signs the registration). Its devices keys,
/// credentials, contacts and messages stay; the node gets copies of the credentials and,
/// sealed, of the history.
pub async fn join(ctx: &Ctx, server: &str, invite: &str, name: &str) -> Result<()> {
    let (mut w, pass) = ctx.open()?;
    if let Some(on) = &w.profile.server {
        bail!("this wallet already has an account on {on}; to take it to another node: sichat move --to URL --invite CODE");
    }
    let root = need_root(&w)?;
    let key_did = Did::key(&root.public());
    if w.profile.did != key_did.as_str() {
        bail!("this wallet's DID {} is not the did:key of its root key: it cannot join as it", w.profile.did);
    }
    let joining = Joining::reach(server, invite, name).await?;
    let did = joining.node_did.web_child(&["users", name])?;
    w.certificate = DeviceCertificate::issue(
        root,
        &did,
        &w.profile.device_id,
        &w.profile.device_name,
        &w.device_sign.public(),
        &w.device_agree.public(),
        CERT_LIFETIME_SECS,
    )?;
    w.profile.did = did.to_string();
    w.profile.name = Some(name.to_owned());
    w.profile.server = Some(joining.server.clone());
    w.profile.node_did = Some(joining.node_did.to_string());
    w.profile.node_key = Some(joining.node_key.to_multibase());
    w.profile.remember_dids([key_did.to_string()]);
    // The joined wallet is written beside the old one and takes its place only once the
    // node has the account: a refused join leaves the wallet as it was.
    let pending = w.write_pending(&ctx.dir, &pass)?;
    let account = match register(&joining.client, &w, &joining.invite, Some(&key_did)).await {
        Ok(a) => a,
        Err(e) => {
            let _ = std::fs::remove_file(&pending);
            return Err(e);
        }
    };
    wallet::commit_pending(&pending, &ctx.dir)?;
    let carried = carry_over(ctx, &w, &pass).await;
    if let Err(e) = &carried {
        eprintln!("warning: {e:#}; run `sichat history sync` and `sichat credential list` to try again");
    }
    // The history sync saved the wallet as it went on: go on from that.
    let mut w = Wallet::open(&ctx.dir, &pass)?;
    let member = credential::membership(ctx, &mut w, &pass).await;
    if let Err(e) = &member {
        eprintln!("warning: no MembershipCredential yet ({e:#}); get it later with `sichat credential membership`");
    }
    let out = json!({"did": account.did, "also_known_as": key_did.as_str(), "name": account.name,
        "did_document_url": account.did_document_url, "credentials": w.credentials.len()});
    ctx.print(&out, |_| {
        println!("Joined as {} on {}", account.name, joining.server);
        println!("  DID:            {}  (also known as {key_did})", account.did);
        println!("  DID document:   {}", account.did_document_url);
        println!(
            "  Kept: {} credential(s), {} message(s), {} contact(s).",
            w.credentials.len(),
            w.messages.len(),
            w.contacts.len()
        );
    })
}

/// Give the node copies of what the wallet held alone: its credentials, and its messages
/// and contacts as sealed history.
async fn carry_over(ctx: &Ctx, w: &Wallet, pass: &str) -> Result<()> {
    let mut client = Client::new(w.profile.server.as_deref().ok_or_else(crate::no_server)?)?;
    client.login(w).await?;
    let mut result = Ok(());
    for held in &w.credentials {
        let kept: Result<serde_json::Value> = client.post("/api/v1/holder/credentials", held).await;
        if let Err(e) = kept {
            result = Err(e.context(format!("your node did not keep a copy of credential {}", held.id)));
            break;
        }
    }
    if result.is_ok() {
        result = crate::history::sync_saved(ctx, pass, &client, None).await.map(|_| ());
    }
    client.logout().await;
    result
}
