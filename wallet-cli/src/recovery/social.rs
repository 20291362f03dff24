//! Social recovery in the wallet (the node's side: `sichat_accounts::protocol::recovery`).
//!
//! - `setup --friend …` splits the recovery key's secret with Shamir's scheme over GF(256)
//!   (the `blahaj` crate), k of n, and sends each friend their share as an end-to-end
//!   encrypted message; their wallet keeps it with their messages.
//! - `ask` (a new wallet, the root key lost) opens a request on the node with a fresh X25519
//!   key, kept sealed by the passphrase beside the wallet, and prints a code: the request's
//!   URL, with a fingerprint of the key after `#` so a node cannot swap it.
//! - `approve` (a friend) checks the code, seals their share to the request's key and signs
//!   the approval with their device key.
//! - `finish` opens the shares, rebuilds the recovery key (checked against the account's
//!   recovery key; with more shares than needed, a wrong one is left out) and recovers.

use super::{recover_account, Recovered};
use crate::client::Client;
use crate::message::{hand_over, login};
use crate::wallet::{self, Wallet};
use crate::{contacts, date, Ctx};
use anyhow::{anyhow, bail, Context, Result};
use blahaj::{Share, Sharks};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sichat_accounts::protocol::*;
use sichat_core::did::Did;
use sichat_core::ids::{b64url, b64url_decode, random_bytes, token_hash};
use sichat_core::jwe;
use sichat_core::jws;
use sichat_core::keys::{Ed25519KeyPair, X25519KeyPair, X25519Public};
use sichat_core::seal::{KdfParams, MasterKey};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::PathBuf;
use zeroize::Zeroizing;

/// The open request, sealed by the passphrase, in the new wallet's directory.
const PENDING_FILE: &str = "recovery-request.json";
const PENDING_CONTEXT: &str = "sichat-recovery-request-v1";
/// Hex characters of the key's SHA-256 in a code (80 bits).
const FINGERPRINT_LEN: usize = 20;
/// Subsets of the shares tried when some are wrong.
const MAX_TRIES: usize = 20_000;
/// Largest share JWE opened.
const MAX_SHARE_BYTES: usize = 1024;

/// The friends named on the command line, as DIDs, and the threshold (default: a majority).
pub(super) async fn choose(ctx: &Ctx, w: &Wallet, friends: &[String], threshold: Option<u8>) -> Result<Guardians> {
    let resolver = ctx.resolver(&[w.profile.server.as_deref()])?;
    let mut dids = Vec::new();
    for who in friends {
        dids.push(contacts::recipient(ctx, w, &resolver, who).await?.did.to_string());
    }
    let n = u8::try_from(dids.len()).map_err(|_| anyhow!("name at most {MAX_GUARDIANS} friends"))?;
    let g = Guardians { threshold: threshold.unwrap_or(n / 2 + 1), dids };
    g.check(&w.profile.did).map_err(|e| anyhow!("{e}"))?;
    Ok(g)
}

/// Split `recovery` among `g`'s friends and send each their share. Fails before the node
/// hears of the key if any cannot be sent.
pub(super) async fn send_shares(
    ctx: &Ctx,
    w: &Wallet,
    pass: &str,
    recovery: &Ed25519KeyPair,
    g: &Guardians,
) -> Result<()> {
    let secret = Zeroizing::new(recovery.secret());
    let shares: Vec<Share> = Sharks(g.threshold).dealer(secret.as_slice()).take(g.dids.len()).collect();
    let resolver = ctx.resolver(&[w.profile.server.as_deref()])?;
    let mut c = login(ctx, w, pass).await?;
    let sent = async {
        for (did, share) in g.dids.iter().zip(&shares) {
            let to = Did::parse(did)?;
            let body = ShareMessage {
                did: w.profile.did.clone(),
                recovery_key: recovery.public().to_multibase(),
                threshold: g.threshold,
                total: g.dids.len() as u8,
                share: b64url(&Zeroizing::new(Vec::from(share))),
            };
            hand_over(ctx, w, pass, &resolver, &c, &to, SHARE_MESSAGE_TYPE, serde_json::to_value(&body)?)
                .await
                .with_context(|| format!("sending {did} their share"))?;
        }
        anyhow::Ok(())
    };
    let result = sent.await;
    c.logout().await;
    result
}

/// The request this wallet opened, kept until `finish`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Pending {
    server: String,
    did: String,
    id: String,
    /// The X25519 secret shares are sealed to, base64url.
    key_secret: String,
}

fn pending_path(ctx: &Ctx) -> PathBuf {
    ctx.dir.join(PENDING_FILE)
}

fn write_pending(ctx: &Ctx, pass: &str, p: &Pending) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&ctx.dir)
        .with_context(|| format!("cannot create {}", ctx.dir.display()))?;
    let salt = random_bytes::<16>();
    let params = KdfParams::default();
    let key = MasterKey::from_passphrase(pass, &salt, params)?;
    let plain = Zeroizing::new(serde_json::to_vec(p)?);
    let file = json!({
        "salt": b64url(&salt),
        "kdf": params,
        "sealed": b64url(&key.seal(&plain, PENDING_CONTEXT)),
    });
    let path = pending_path(ctx);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(serde_json::to_string_pretty(&file)?.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

fn read_pending(ctx: &Ctx, pass: &str) -> Result<Pending> {
    let path = pending_path(ctx);
    let text = std::fs::read_to_string(&path).map_err(|_| {
        anyhow!(
            "{} holds no open recovery: start one with `sichat recovery ask YOUR-DID --server URL`",
            ctx.dir.display()
        )
    })?;
    let file: Value = serde_json::from_str(&text).context("the recovery request file is corrupt")?;
    let field =
        |k: &str| file.get(k).and_then(Value::as_str).ok_or_else(|| anyhow!("the recovery request file lacks {k}"));
    let salt = b64url_decode(field("salt")?).context("the recovery request file's salt")?;
    let params: KdfParams = serde_json::from_value(file.get("kdf").cloned().unwrap_or_default())
        .context("the recovery request file's KDF parameters")?;
    let key = MasterKey::from_passphrase(pass, &salt, params)?;
    let plain = key
        .open(&b64url_decode(field("sealed")?).context("the recovery request file is corrupt")?, PENDING_CONTEXT)
        .map_err(|_| anyhow!("wrong passphrase (or the recovery request file was altered)"))?;
    Ok(serde_json::from_slice(&plain)?)
}

fn fingerprint(key: &str) -> String {
    token_hash(key)[..FINGERPRINT_LEN].to_owned()
}

pub(super) async fn ask(ctx: &Ctx, who: &str, server: &str) -> Result<()> {
    if wallet::exists(&ctx.dir) {
        bail!("{} already holds a wallet: choose an empty directory with --wallet", ctx.dir.display());
    }
    let client = Client::new(server)?;
    let did = match contacts::Address::parse(who) {
        Some(address) => address?.did()?.to_string(),
        None => Did::parse(who).map_err(|e| anyhow!("{e}: give your DID or name@host"))?.to_string(),
    };
    let pass = match pending_path(ctx).exists() {
        // A request opened here before: a closed one (cancelled, run out, void) makes way.
        true => {
            let pass = ctx.passphrase(false)?;
            let p = read_pending(ctx, &pass)?;
            let req: RecoveryRequest =
                Client::new(&p.server)?.get(&format!("/api/v1/recovery/requests/{}", p.id)).await?;
            if req.status == "open" {
                bail!(
                    "{} holds an open recovery already: ask your friends, then `sichat recovery finish`",
                    ctx.dir.display()
                );
            }
            std::fs::remove_file(pending_path(ctx))?;
            pass
        }
        false => ctx.passphrase(true)?,
    };
    let agree = X25519KeyPair::generate();
    let key = agree.public().to_multibase();
    let req: RecoveryRequest = client
        .post("/api/v1/recovery/requests", &OpenRecovery { did: did.clone(), key: key.clone() })
        .await
        .context("the node did not open the recovery")?;
    write_pending(
        ctx,
        &pass,
        &Pending {
            server: server.to_owned(),
            did: did.clone(),
            id: req.id.clone(),
            key_secret: b64url(&agree.secret()),
        },
    )?;
    let code =
        format!("{}/api/v1/recovery/requests/{}#{}", client.base().trim_end_matches('/'), req.id, fingerprint(&key));
    let out = json!({"id": req.id, "code": code, "threshold": req.threshold, "guardians": req.guardians, "expires_at": req.expires_at});
    ctx.print(&out, |_| {
        println!(
            "Recovery of {did} opened. Give this code to {} of your friends yourself (call them, or meet):",
            req.threshold
        );
        println!();
        println!("  {code}");
        println!();
        println!("Each runs: sichat recovery approve CODE");
        println!("Your friends: {}", req.guardians.join(", "));
        println!(
            "Then, here: sichat --wallet {} recovery finish   (open until {})",
            ctx.dir.display(),
            date(req.expires_at)
        );
    })
}

/// A code: the request's URL, `#` and the key's fingerprint.
fn parse_code(code: &str) -> Result<(String, String, String)> {
    let bad =
        || anyhow!("this is not a recovery code: it looks like https://node/api/v1/recovery/requests/ID#FINGERPRINT");
    let url = url::Url::parse(code.trim()).map_err(|_| bad())?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad());
    }
    let fp = url.fragment().filter(|f| f.len() == FINGERPRINT_LEN).ok_or_else(bad)?.to_ascii_lowercase();
    let id = url.path().strip_prefix("/api/v1/recovery/requests/").filter(|i| !i.is_empty() && !i.contains('/'));
    let id = id.ok_or_else(bad)?.to_owned();
    Ok((url.origin().ascii_serialization(), id, fp))
}

pub(super) async fn approve(ctx: &Ctx, code: &str, yes: bool) -> Result<()> {
    let (server, id, fp) = parse_code(code)?;
    let (w, _) = ctx.open()?;
    let client = Client::new(&server)?;
    let req: RecoveryRequest = client.get(&format!("/api/v1/recovery/requests/{id}")).await?;
    if fingerprint(&req.key) != fp {
        bail!("the node shows another key than the code names: do not approve; tell your friend (nothing was sent)");
    }
    if req.status != "open" {
        bail!("this recovery is {}: nothing to approve", req.status);
    }
    if !req.guardians.contains(&w.profile.did) {
        bail!("{} did not name you ({}) as a recovery friend", req.did, w.profile.did);
    }
    let held = w
        .messages
        .iter()
        .rev()
        .filter(|m| m.kind == SHARE_MESSAGE_TYPE && !m.sender_mismatch)
        .filter_map(|m| Some((m, serde_json::from_value::<ShareMessage>(m.body.clone()).ok()?)))
        .filter(|(m, s)| m.from == s.did && s.recovery_key == req.recovery_key)
        .map(|(_, s)| s)
        .next()
        .ok_or_else(|| {
            anyhow!(
                "this wallet holds no share of {}'s current recovery key: run `sichat message inbox` to fetch new \
                 messages, then approve again",
                req.did
            )
        })?;
    if !yes {
        eprintln!(
            "{} ({}) asks to take their account back with a new key. {} of {} friends must approve; {} did.",
            req.name,
            req.did,
            req.threshold,
            req.guardians.len(),
            req.approvals.len()
        );
        eprintln!("Whoever finishes this recovery takes over the account: approve only if your friend asked you");
        if !crate::login::confirm("themselves, by voice or in person. Approve? [y/N] ")? {
            bail!("not approved: nothing sent");
        }
    }
    let recipient = X25519Public::from_multibase(&req.key)?;
    let sealed_share = jwe::seal(
        &recipient,
        TYP_RECOVERY_SHARE,
        &Zeroizing::new(serde_json::to_vec(&json!({"did": held.did, "share": held.share}))?),
    )?;
    let (node_doc, _) = client.node().await?;
    let now = now_secs();
    let claims = RecoveryApprovalClaims {
        iss: w.profile.did.clone(),
        sub: req.did.clone(),
        aud: node_doc.id.to_string(),
        request: req.id.clone(),
        key: req.key.clone(),
        share: sealed_share,
        iat: now,
        exp: now + 300,
    };
    let kid = format!("{}#device-{}", w.profile.did, w.profile.device_id);
    let approval = jws::sign(&w.device_sign, TYP_RECOVERY_APPROVAL, Some(&kid), &claims)?;
    let after: RecoveryRequest =
        client.post(&format!("/api/v1/recovery/requests/{id}/approvals"), &PostApproval { approval }).await?;
    let out = json!({"id": id, "approvals": after.approvals.len(), "threshold": after.threshold});
    ctx.print(&out, |_| {
        println!("Approved: {} of {} approvals for {}.", after.approvals.len(), after.threshold, after.did);
    })
}

pub(super) async fn finish(ctx: &Ctx, device_name: String) -> Result<()> {
    if wallet::exists(&ctx.dir) {
        bail!("{} already holds a wallet: the recovery is finished", ctx.dir.display());
    }
    let pass = ctx.passphrase(false)?;
    let p = read_pending(ctx, &pass)?;
    let client = Client::new(&p.server)?;
    let req: RecoveryRequest = client.get(&format!("/api/v1/recovery/requests/{}", p.id)).await?;
    if req.status != "open" {
        bail!(
            "this recovery is {} (a device of the account cancelled it, it ran out, or the recovery key changed): \
             delete {} and ask again",
            req.status,
            pending_path(ctx).display()
        );
    }
    let agree = X25519KeyPair::from_secret(&b64url_decode(&p.key_secret).context("the request file's key")?)?;
    let shares = open_shares(&agree, &req, &p.did);
    if shares.len() < usize::from(req.threshold) {
        let out = json!({"status": "waiting", "approvals": shares.len(), "threshold": req.threshold});
        return ctx.print(&out, |_| {
            println!(
                "{} of {} friends approved; {} more needed. Run `sichat recovery finish` again once they have.",
                shares.len(),
                req.threshold,
                usize::from(req.threshold) - shares.len()
            );
        });
    }
    let recovery = rebuild(req.threshold, &shares, &req.recovery_key)?;
    let (node_doc, node_key) = client.node().await?;
    let account = Recovered {
        did: p.did.clone(),
        name: req.name.clone(),
        server: p.server.clone(),
        node_did: node_doc.id.to_string(),
        node_key: node_key.to_multibase(),
        also_known_as: Vec::new(),
    };
    recover_account(ctx, &pass, account, &recovery, device_name).await?;
    let _ = std::fs::remove_file(pending_path(ctx));
    if !ctx.json {
        println!("Your friends' shares rebuild the old recovery key: run `sichat recovery setup` to make a new one.");
    }
    Ok(())
}

/// The shares in the request's approvals this wallet can open, one per friend.
fn open_shares(agree: &X25519KeyPair, req: &RecoveryRequest, did: &str) -> Vec<Share> {
    let mut out: Vec<Share> = Vec::new();
    for a in &req.approvals {
        let Ok(claims) = jws::unverified_payload::<RecoveryApprovalClaims>(&a.approval) else { continue };
        let Ok(plain) = jwe::open(agree, TYP_RECOVERY_SHARE, &claims.share, MAX_SHARE_BYTES) else { continue };
        let Ok(body) = serde_json::from_slice::<Value>(&plain) else { continue };
        if body.get("did").and_then(Value::as_str) != Some(did) {
            continue;
        }
        let Some(bytes) = body.get("share").and_then(Value::as_str).and_then(b64url_decode) else {
            continue;
        };
        let Some(share) = parse_share(&bytes) else { continue };
        if !out.iter().any(|s| s.x == share.x) {
            out.push(share);
        }
    }
    out
}

/// A share as sent: an x coordinate other than 0 (x = 0 is the secret itself) and 32 bytes.
fn parse_share(bytes: &[u8]) -> Option<Share> {
    if bytes.len() != 33 || bytes[0] == 0 {
        return None;
    }
    Share::try_from(bytes).ok()
}

/// The recovery key `threshold` of `shares` rebuild, matching `expected`. A wrong share
/// (a friend's mistake, or worse) is left out when there are enough others.
fn rebuild(threshold: u8, shares: &[Share], expected: &str) -> Result<Ed25519KeyPair> {
    let k = usize::from(threshold);
    let sharks = Sharks(threshold);
    let mut tried = 0;
    for subset in combinations(shares.len(), k) {
        tried += 1;
        if tried > MAX_TRIES {
            break;
        }
        let chosen: Vec<&Share> = subset.iter().map(|&i| &shares[i]).collect();
        let Ok(secret) = sharks.recover(chosen) else { continue };
        let secret = Zeroizing::new(secret);
        let Ok(key) = Ed25519KeyPair::from_secret(&secret) else { continue };
        if key.public().to_multibase() == expected {
            return Ok(key);
        }
    }
    bail!(
        "the {} shares your friends sent do not rebuild your account's recovery key (one is wrong or from an older \
         setup): nothing changed. Ask another friend to approve, then finish again",
        shares.len()
    )
}

/// Every k-subset of 0..n, in order.
fn combinations(n: usize, k: usize) -> impl Iterator<Item = Vec<usize>> {
    let mut next = (k <= n && k > 0).then(|| (0..k).collect::<Vec<usize>>());
    std::iter::from_fn(move || {
        let current = next.take()?;
        let mut c = current.clone();
        let mut i = k;
        while i > 0 {
            i -= 1;
            if c[i] < n - k + i {
                c[i] += 1;
                for j in i + 1..k {
                    c[j] = c[j - 1] + 1;
                }
                next = Some(c);
                break;
            }
        }
        Some(current)
    })
}

pub(super) async fn log(ctx: &Ctx) -> Result<()> {
    let (_, client) = ctx.session().await?;
    let list: Vec<RecoveryRequest> = client.get("/api/v1/recovery/requests").await?;
    ctx.print(&list, |list| {
        if list.is_empty() {
            println!("No recovery was ever opened for your account.");
        }
        for r in list {
            println!(
                "{}  {}  opened {}, {} of {} approvals",
                r.id,
                r.status,
                date(r.created_at),
                r.approvals.len(),
                r.threshold
            );
            for a in &r.approvals {
                println!("    approved by {} at {}", a.guardian, date(a.approved_at));
            }
        }
    })
}

pub(super) async fn cancel(ctx: &Ctx, id: Option<String>) -> Result<()> {
    let (_, client) = ctx.session().await?;
    let done: Value = client.post("/api/v1/recovery/cancel", &json!({ "id": id })).await?;
    let n = done["cancelled"].as_u64().unwrap_or(0);
    ctx.print(&done, |_| match n {
        0 => println!("No open recovery to cancel."),
        n => println!("Cancelled {n} recovery request(s): friends can no longer approve them."),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(k: u8, n: usize) -> (Ed25519KeyPair, Vec<Share>) {
        let key = Ed25519KeyPair::generate();
        let shares = Sharks(k).dealer(&key.secret()).take(n).collect();
        (key, shares)
    }

    #[test]
    fn k_shares_rebuild_the_key_and_fewer_do_not() {
        let (key, shares) = split(3, 5);
        let expected = key.public().to_multibase();
        let rebuilt = rebuild(3, &shares[1..4], &expected).unwrap();
        assert_eq!(rebuilt.public(), key.public());
        assert!(rebuild(3, &shares[..2], &expected).is_err());
    }

    #[test]
    fn a_wrong_share_is_left_out_when_others_suffice() {
        let (key, mut shares) = split(2, 4);
        let expected = key.public().to_multibase();
        let mut bad = Vec::from(&shares[0]);
        bad[5] ^= 0xff;
        shares[0] = parse_share(&bad).unwrap();
        assert_eq!(rebuild(2, &shares, &expected).unwrap().public(), key.public());
        // With only the wrong one and one good one, nothing matches: refused.
        assert!(rebuild(2, &shares[..2], &expected).is_err());
    }

    #[test]
    fn shares_as_sent_parse_and_others_do_not() {
        let (_, shares) = split(2, 3);
        let bytes = Vec::from(&shares[1]);
        assert!(parse_share(&bytes).is_some());
        let mut zero = bytes.clone();
        zero[0] = 0;
        assert!(parse_share(&zero).is_none(), "x = 0 would be the secret itself");
        assert!(parse_share(&bytes[..10]).is_none());
        assert!(parse_share(&[]).is_none());
    }

    #[test]
    fn combinations_are_every_subset_once() {
        let all: Vec<Vec<usize>> = combinations(4, 2).collect();
        assert_eq!(all, vec![vec![0, 1], vec![0, 2], vec![0, 3], vec![1, 2], vec![1, 3], vec![2, 3]]);
        assert_eq!(combinations(3, 4).count(), 0);
        assert_eq!(combinations(16, 8).count(), 12870);
    }

    #[test]
    fn codes_parse_and_bad_ones_are_refused() {
        let (server, id, fp) =
            parse_code("http://127.0.0.1:8080/api/v1/recovery/requests/abc123#0123456789abcdef0123").unwrap();
        assert_eq!(
            (server.as_str(), id.as_str(), fp.as_str()),
            ("http://127.0.0.1:8080", "abc123", "0123456789abcdef0123")
        );
        for bad in [
            "",
            "abc",
            "http://x/api/v1/recovery/requests/abc",
            "http://x/api/v1/other/abc#0123456789abcdef0123",
            "ftp://x/api/v1/recovery/requests/a#0123456789abcdef0123",
        ] {
            assert!(parse_code(bad).is_err(), "{bad}");
        }
    }
}
