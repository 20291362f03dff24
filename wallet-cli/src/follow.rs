//! Following the account when it changes place without this wallet: its node moved to a
//! new URL (`sichatd admin change-url`), or another wallet moved the account to another
//! node (`sichat move`).

use crate::client::{Client, LoggedIn, ServerError};
use crate::wallet::{self, Profile, Wallet};
use crate::{no_server, Ctx};
use anyhow::{anyhow, bail, Context, Result};

/// The node answered that the account moved to another node (`410 account_moved`).
pub(crate) fn moved_away(e: &anyhow::Error) -> bool {
    e.downcast_ref::<ServerError>().is_some_and(|s| s.code == "account_moved")
}

/// Say that the wallet followed its node to a new URL.
pub(crate) fn tell_followed(ctx: &Ctx, profile: &Profile) {
    if !ctx.json {
        let server = profile.server.as_deref().unwrap_or_default();
        eprintln!("Your node moved to {server}: this wallet follows it (your DID is now {}).", profile.did);
    }
}

/// The node changed its public URL (`sichatd admin change-url`): the wallet follows it,
/// keeping the old DID among those its messages may be sealed to. True if it did.
pub(crate) fn follow_node(profile: &mut Profile, login: &LoggedIn) -> bool {
    let new_did = (login.session.did != profile.did).then(|| login.session.did.clone());
    let new_node = (Some(&login.node_did) != profile.node_did.as_ref()).then(|| login.node_did.clone());
    if new_did.is_none() && new_node.is_none() {
        return false;
    }
    // Only a node whose DID changed moved: the wallet may reach an unchanged node at
    // another address than its public URL.
    let new_server = login.session.public_url.as_deref().map(|u| u.trim_end_matches('/').to_owned());
    if let Some(did) = new_did {
        let old = std::mem::replace(&mut profile.did, did);
        profile.remember_dids([old]);
    }
    if let Some(node) = new_node {
        profile.node_did = Some(node);
    }
    if let Some(server) = new_server {
        profile.server = Some(server);
    }
    true
}

/// The account moved to another node from another wallet (`sichat move`), and the old node
/// now answers `account_moved`: follow it. The old node's document of the account's old DID
/// names the new node's messaging endpoint; the new node, which re-certified this device in
/// the move, signs its challenge with its own key (pinned from now on) and hands this device
/// its certificate for the DID there. Returns a client logged in to the new node; the wallet
/// on disk names it.
pub(crate) async fn follow_moved(ctx: &Ctx, w: &Wallet, pass: &str) -> Result<Client> {
    let from = w.profile.server.clone().ok_or_else(no_server)?;
    let name = w.profile.name.clone().ok_or_else(|| anyhow!("this wallet has no account name"))?;
    let a = Client::new(&from)?;
    let doc: sichat_core::did::DidDocument = a
        .get(&format!("/users/{name}/did.json"))
        .await
        .with_context(|| format!("{from} says your account moved, but serves no document saying where"))?;
    let endpoint = doc
        .service
        .iter()
        .filter(|s| s.kind == "DIDCommMessaging")
        .find_map(|s| s.service_endpoint.as_str().or_else(|| s.service_endpoint["uri"].as_str()).map(str::to_owned))
        .ok_or_else(|| anyhow!("{from} says your account moved, but names no new node"))?;
    let to = url::Url::parse(&endpoint).context("the new node's address")?.origin().ascii_serialization();
    let mut b = Client::new(&to)?;
    if a.base() == b.base() {
        bail!("{from} says your account moved, but names itself as the new node");
    }
    let (b_doc, b_key) = b.node().await.with_context(|| format!("{to} is not a Sichat node"))?;
    let mut profile = w.profile.clone();
    profile.server = Some(b.base().to_owned());
    profile.node_did = Some(b_doc.id.to_string());
    profile.node_key = Some(b_key.to_multibase());
    let login = b.login_as(&profile, &w.certificate, &w.device_sign).await.with_context(|| {
        format!("your account moved to {to}, which does not take this device: add it again from your root wallet")
    })?;
    let certificate = login
        .certificate
        .clone()
        .ok_or_else(|| anyhow!("{to} handed this device no certificate for your account there: refusing to follow"))?;
    let new_did = login.session.did.clone();
    let new_name = new_did.rsplit(':').next().unwrap_or(&name).to_owned();
    wallet::update(&ctx.dir, pass, |saved: &mut Wallet| {
        let old = std::mem::replace(&mut saved.profile.did, new_did.clone());
        saved.profile.remember_dids([old]);
        saved.profile.remember_dids(doc.also_known_as.iter().cloned());
        saved.profile.name = Some(new_name.clone());
        saved.profile.server = profile.server.clone();
        saved.profile.node_did = profile.node_did.clone();
        saved.profile.node_key = profile.node_key.clone();
        saved.certificate = certificate.clone();
        Ok(())
    })?;
    if !ctx.json {
        eprintln!(
            "Your account moved to {to} (from another wallet): this wallet follows it (your DID is now {new_did})."
        );
    }
    Ok(b)
}
