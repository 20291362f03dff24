//! The wallet's side of its `did:webvh` log. Only the root key signs entries: the first one
//! (`sichat did upgrade`), and the next one of every root operation that changes the
//! document. The wallet verifies the node's copy of the log before building on it, and
//! makes each new document itself from the last one and the operation, so the node can
//! only store what the user signed.

use crate::client::Client;
use crate::wallet::{self, Wallet};
use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use sichat_accounts::protocol::{DeviceCertificate, MoveDraft, RootOperation, SignedRequest};
use sichat_core::did::{DidDocument, Relationships};
use sichat_core::jws;
use sichat_core::keys::Ed25519KeyPair;
use sichat_core::webvh::{self, Genesis, WebvhDid};
use std::path::Path;

/// The account's log as the node serves it, or `None` when it has only a `did:web` DID.
async fn fetch_log(client: &Client, wallet: &Wallet) -> Result<Option<String>> {
    let name = wallet.profile.name.as_deref().ok_or_else(|| anyhow!("this wallet has no account name"))?;
    client.get_text_if_found(&format!("/users/{name}/did.jsonl")).await
}

/// Give the account a portable `did:webvh` DID: the node drafts the document, the root key
/// signs the log's first entry. `None` when the account has one already.
pub async fn upgrade(c: &mut Client, w: &Wallet, root: &Ed25519KeyPair) -> Result<Option<WebvhDid>> {
    c.login(w).await?;
    let draft = c.post::<Value>("/api/v1/did/draft", &json!({})).await;
    c.logout().await;
    let draft = match draft {
        Err(e) if e.downcast_ref::<crate::client::ServerError>().is_some_and(|s| s.code == "conflict") => {
            return Ok(None)
        }
        other => other?,
    };
    let recovery =
        w.profile.recovery_key.as_deref().map(sichat_core::keys::Ed25519Public::from_multibase).transpose()?;
    let (did, entry) = first_entry(draft, root, recovery)?;
    c.root_operation(w, root, RootOperation::UpgradeDid { entry }).await?;
    Ok(Some(did))
}

/// The first entry of a new log, over the node's draft. The draft must name this wallet's
/// root key as the only controller: the node cannot slip in a key of its own there. The
/// update keys are the root key and the recovery key, if one is named.
pub fn first_entry(
    draft: Value,
    root: &Ed25519KeyPair,
    recovery: Option<sichat_core::keys::Ed25519Public>,
) -> Result<(WebvhDid, String)> {
    let id = draft.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
    let root_id = format!("{id}#root");
    let root_key = draft
        .get("verificationMethod")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|vm| vm.get("id").and_then(Value::as_str) == Some(root_id.as_str()))
        .and_then(|vm| vm.get("publicKeyMultibase"))
        .and_then(Value::as_str);
    if root_key != Some(root.public().to_multibase().as_str())
        || draft.get("capabilityInvocation") != Some(&json!([root_id]))
    {
        bail!("the node's draft of your DID document does not name your root key as its only controller: refusing to sign it");
    }
    let genesis = Genesis { portable: true, ..Default::default() };
    let keys: Vec<_> = std::iter::once(root.public()).chain(recovery).collect();
    let (did, entry) = webvh::create(draft, &keys, &genesis, root)?;
    Ok((did, entry.line))
}

/// The node changed its public URL: move the account's `did:webvh` to its new host. The
/// node drafts the document there; the wallet checks that it continues the log it serves
/// (verified first) and names this root key as the only controller, then signs the entry.
/// `client` must hold a session. Returns the DID at the new host.
pub async fn follow_host(client: &Client, wallet: &Wallet, root: &Ed25519KeyPair) -> Result<String> {
    let draft: MoveDraft = client.post("/api/v1/did/rehost-draft", &json!({})).await?;
    let raw = fetch_log(client, wallet).await?.ok_or_else(|| anyhow!("your node serves no DID log for you"))?;
    let last = raw.lines().rfind(|l| !l.trim().is_empty()).unwrap_or_default();
    let current = serde_json::from_str::<Value>(last)
        .ok()
        .and_then(|v| v["state"]["id"].as_str().map(str::to_owned))
        .ok_or_else(|| anyhow!("your DID log's last entry has no DID"))?;
    let log = webvh::verify_log(&current, &raw)
        .await
        .with_context(|| format!("your DID log on {} does not verify: do not trust this node", client.base()))?;
    let (old, new) = (WebvhDid::parse(&current)?, WebvhDid::parse(&draft.did)?);
    if old.scid() != new.scid() {
        bail!("the node's draft names another DID ({}) than yours: refusing to sign", draft.did);
    }
    if !log.update_keys.contains(&root.public().to_multibase()) {
        bail!("your DID log is not controlled by this wallet's root key (was it rotated from another wallet?)");
    }
    crate::account_move::check_draft(&draft, &raw, root)?;
    let entry = webvh::append(&draft.last_entry, draft.state.clone(), json!({}), root)?;
    let op = RootOperation::FollowHost { did: draft.did.clone() };
    let request = client.signed_root_op(wallet, root, op, Some(entry.line)).await?;
    let _: Value = client.post("/api/v1/root-operations", &SignedRequest { request }).await?;
    Ok(draft.did)
}

/// The next entry for `op`, signed by `root`, or `None` when the account has no log.
pub async fn next_entry(
    client: &Client,
    wallet: &Wallet,
    root: &Ed25519KeyPair,
    op: &RootOperation,
) -> Result<Option<String>> {
    if matches!(
        op,
        RootOperation::UpgradeDid { .. }
            | RootOperation::MoveOut { .. }
            | RootOperation::ExportIssuingKeys { .. }
            | RootOperation::MoveDone { .. }
            | RootOperation::MoveCancel { .. }
            | RootOperation::FollowHost { .. }
            | RootOperation::RenewDevices { .. }
            | RootOperation::SetDevicePolicy { .. }
    ) {
        return Ok(None);
    }
    let Some(raw) = fetch_log(client, wallet).await? else { return Ok(None) };
    let last = raw.lines().rfind(|l| !l.trim().is_empty()).ok_or_else(|| anyhow!("your DID log is empty"))?;
    let did = serde_json::from_str::<Value>(last)
        .ok()
        .and_then(|v| v["state"]["id"].as_str().map(str::to_owned))
        .ok_or_else(|| anyhow!("your DID log's last entry has no DID"))?;
    let log = webvh::verify_log(&did, &raw)
        .await
        .with_context(|| format!("your DID log on {} does not verify: do not trust this node", client.base()))?;
    if !log.update_keys.contains(&root.public().to_multibase()) {
        bail!("your DID log is not controlled by this wallet's root key (was it rotated from another wallet?)");
    }
    let mut doc: DidDocument = serde_json::from_value(log.document).context("reading your DID document")?;
    drop_revoked_devices(client, wallet, &mut doc).await?;
    let mut parameters = json!({});
    match op {
        RootOperation::AddDevice { certificate } | RootOperation::ReinstateDevice { certificate } => {
            let cert: DeviceCertificate = jws::unverified_payload(certificate)?;
            add_device(&mut doc, &cert);
        }
        RootOperation::SyncDidLog => {}
        RootOperation::SetStandby { standby } => {
            // As the node writes it: the standby's endpoint after the node's own.
            let id = doc.id.url("didcomm-standby");
            doc.service.retain(|s| s.id != id);
            if let Some(s) = standby {
                doc.service.push(sichat_core::did::Service {
                    id,
                    kind: "DIDCommMessaging".into(),
                    service_endpoint: json!({"uri": s.endpoint, "accept": ["didcomm/v2"]}),
                });
            }
            // The standby is the log's watcher: it mirrors it for verifiers.
            match standby.as_ref().and_then(|s| s.watcher.as_ref()) {
                Some(watcher) => parameters = json!({"watchers": [watcher]}),
                None if !log.watchers.is_empty() => parameters = json!({"watchers": []}),
                None => {}
            }
        }
        RootOperation::RevokeDevice { device_id, .. } => remove_device(&mut doc, device_id),
        RootOperation::RotateRoot { new_root_key, certificates }
        | RootOperation::Recover { new_root_key, certificates } => {
            // The update keys other than the old root (the recovery key) stay.
            let old_root = doc_key(&doc, "root");
            let mut update_keys = vec![new_root_key.clone()];
            update_keys.extend(log.update_keys.iter().filter(|k| Some(*k) != old_root.as_ref()).cloned());
            doc.remove_key("root");
            doc.add_key("root", new_root_key.clone(), Relationships { capability: true, ..Default::default() });
            keep_devices(&mut doc, certificates);
            parameters = json!({ "updateKeys": update_keys });
        }
        RootOperation::SetRecoveryKey { recovery_key, .. } => {
            let root_key = doc_key(&doc, "root").ok_or_else(|| anyhow!("your DID document names no root key"))?;
            parameters = json!({"updateKeys": [root_key, recovery_key]});
        }
        RootOperation::UpgradeDid { .. }
        | RootOperation::MoveOut { .. }
        | RootOperation::ExportIssuingKeys { .. }
        | RootOperation::MoveDone { .. }
        | RootOperation::MoveCancel { .. }
        | RootOperation::FollowHost { .. }
        | RootOperation::RenewDevices { .. }
        | RootOperation::SetDevicePolicy { .. }
        | RootOperation::CatchUp { .. } => return Ok(None),
    }
    let state = serde_json::to_value(&doc)?;
    // May wait up to a second: each version must be later than the last, to the second.
    let entry = webvh::append(last, state, parameters, root)?;
    Ok(Some(entry.line))
}

/// Devices another device revoked leave the node's `did:web` document at once; the log
/// catches up with the next entry. Take from the node's document only removals of devices:
/// a device it lists that the log does not is never added from there.
async fn drop_revoked_devices(client: &Client, wallet: &Wallet, doc: &mut DidDocument) -> Result<()> {
    let name = wallet.profile.name.as_deref().ok_or_else(|| anyhow!("this wallet has no account name"))?;
    let web: DidDocument = client.get(&format!("/users/{name}/did.json")).await?;
    let listed: Vec<&str> =
        web.verification_method.iter().filter_map(|vm| vm.id.split_once('#').map(|(_, f)| f)).collect();
    let prefix = format!("{}#device-", doc.id);
    let gone: Vec<String> = doc
        .verification_method
        .iter()
        .filter_map(|vm| vm.id.strip_prefix(&prefix))
        .filter(|rest| !rest.ends_with("-x25519") && !listed.contains(&format!("device-{rest}").as_str()))
        .map(str::to_owned)
        .collect();
    for id in gone {
        remove_device(doc, &id);
    }
    Ok(())
}

/// The devices of `certificates` stay or come in (a recovery adds the device recovering: the
/// others were lost with the root key); every other device leaves.
fn keep_devices(doc: &mut DidDocument, certificates: &[String]) {
    let kept: Vec<DeviceCertificate> =
        certificates.iter().filter_map(|c| jws::unverified_payload::<DeviceCertificate>(c).ok()).collect();
    let prefix = format!("{}#device-", doc.id);
    let devices: Vec<String> = doc
        .verification_method
        .iter()
        .filter_map(|vm| vm.id.strip_prefix(&prefix))
        .filter(|rest| !rest.ends_with("-x25519"))
        .map(str::to_owned)
        .collect();
    for id in devices.iter().filter(|id| !kept.iter().any(|c| &c.sub == *id)) {
        remove_device(doc, id);
    }
    for cert in kept.iter().filter(|c| !devices.contains(&c.sub)) {
        add_device(doc, cert);
    }
}

/// Keep the account's log as the node serves it now, when this wallet holds the root key of
/// a did:webvh account (others ask nothing) and the log verifies and extends the one it kept: a node restored from an older backup
/// gets back the entries it lost ([`catch_up`]). Returns the log kept now, if it changed.
pub async fn keep(dir: &Path, pass: &str, client: &Client, wallet: &Wallet) -> Result<Option<Vec<String>>> {
    let webvh = std::iter::once(&wallet.profile.did).chain(&wallet.profile.also_known_as);
    if wallet.root.is_none() || !webvh.into_iter().any(|d| d.starts_with("did:webvh:")) {
        return Ok(None);
    }
    let Some(raw) = fetch_log(client, wallet).await? else { return Ok(None) };
    let lines = entries(&raw);
    if lines.len() <= wallet.did_log.len() || !lines.starts_with(&wallet.did_log) {
        return Ok(None);
    }
    webvh::verify_log(&last_did(&lines)?, &raw)
        .await
        .with_context(|| format!("your DID log on {} does not verify: do not trust this node", client.base()))?;
    wallet::update(dir, pass, |saved: &mut Wallet| {
        if lines.starts_with(&saved.did_log) {
            saved.did_log = lines.clone();
        }
        Ok(())
    })?;
    Ok(Some(lines))
}

/// For `catch_up`, on a node restored from a backup older than entries of the log this
/// wallet kept: those entries, and the log's next one over them, signed by `root`, whose
/// document keeps the devices of `certificates`. Nothing when the account has no log.
pub async fn catch_up(
    client: &Client,
    wallet: &Wallet,
    root: &Ed25519KeyPair,
    certificates: &[String],
) -> Result<(Vec<String>, Option<String>)> {
    if wallet.did_log.is_empty() {
        return Ok((Vec::new(), None));
    }
    let Some(raw) = fetch_log(client, wallet).await? else { return Ok((Vec::new(), None)) };
    let theirs = entries(&raw);
    if !wallet.did_log.starts_with(&theirs) {
        bail!(
            "your node's DID log is not the start of the one this wallet kept: it cannot be caught up from this \
             wallet; recover with your recovery kit or friends"
        );
    }
    let kept: String = wallet.did_log.iter().map(|l| format!("{l}\n")).collect();
    let log = webvh::verify_log(&last_did(&wallet.did_log)?, &kept).await.context("the DID log this wallet kept")?;
    if !log.update_keys.contains(&root.public().to_multibase()) {
        bail!("the DID log this wallet kept is not controlled by its root key");
    }
    let mut doc: DidDocument = serde_json::from_value(log.document).context("reading your DID document")?;
    keep_devices(&mut doc, certificates);
    let last = wallet.did_log.last().map(String::as_str).unwrap_or_default();
    let entry = webvh::append(last, serde_json::to_value(&doc)?, json!({}), root)?;
    Ok((wallet.did_log[theirs.len()..].to_vec(), Some(entry.line)))
}

/// The entries of a log, one per non-empty line.
fn entries(raw: &str) -> Vec<String> {
    raw.lines().filter(|l| !l.trim().is_empty()).map(str::to_owned).collect()
}

/// The DID the last entry of a log names.
fn last_did(lines: &[String]) -> Result<String> {
    lines
        .last()
        .and_then(|l| serde_json::from_str::<Value>(l).ok())
        .and_then(|v| v["state"]["id"].as_str().map(str::to_owned))
        .ok_or_else(|| anyhow!("your DID log's last entry has no DID"))
}

/// The public key (multibase) of the document's method `#<fragment>`.
fn doc_key(doc: &DidDocument, fragment: &str) -> Option<String> {
    let id = format!("{}#{fragment}", doc.id);
    doc.verification_method.iter().find(|vm| vm.id == id).map(|vm| vm.public_key_multibase.clone())
}

fn add_device(doc: &mut DidDocument, cert: &DeviceCertificate) {
    let id = &cert.sub;
    doc.add_key(
        &format!("device-{id}"),
        cert.sign_key.clone(),
        Relationships { authentication: true, ..Default::default() },
    );
    doc.add_key(
        &format!("device-{id}-x25519"),
        cert.agree_key.clone(),
        Relationships { key_agreement: true, ..Default::default() },
    );
}

fn remove_device(doc: &mut DidDocument, id: &str) {
    doc.remove_key(&format!("device-{id}"));
    doc.remove_key(&format!("device-{id}-x25519"));
}
