//! The wallet on disk: one `wallet.json` in the wallet directory.
//!
//! Its `profile` (DIDs, server URL) is public and readable without the passphrase. Its
//! secrets (root key, device keys) are sealed with XChaCha20-Poly1305 under a key derived
//! from the passphrase with argon2id; the profile is the AAD, so editing it breaks the seal.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sichat_core::ids::{b64url, b64url_decode, random_bytes};
use sichat_core::keys::{decode_secret, Ed25519KeyPair, X25519KeyPair};
use sichat_core::seal::{KdfParams, MasterKey};
use sichat_issuer::reinstate::KeptCredential;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

const FILE: &str = "wallet.json";
const AAD_PREFIX: &str = "sichat-wallet:v1:";

/// What anyone who can read the wallet directory may see.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Profile {
    pub did: String,
    pub name: Option<String>,
    pub server: Option<String>,
    pub node_did: Option<String>,
    /// The node key, pinned at `init`: login challenges must be signed by it.
    pub node_key: Option<String>,
    pub device_id: String,
    pub device_name: String,
    /// False for a device-only wallet made by `sichat device add`.
    pub has_root_key: bool,
    pub created_at: i64,
    /// The account's other DIDs: its `did:webvh`, and those it had on nodes it moved from.
    /// Messages encrypted to this device under any of them are opened. (Left out when
    /// empty, so wallets written before it keep their sealed profile as it was.)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also_known_as: Vec<String>,
    /// The public recovery key named with `sichat recovery setup` (its secret is in the
    /// recovery kit, never here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_key: Option<String>,
}

impl Profile {
    /// Remember more DIDs of the account (messages sealed to any of them open here).
    pub fn remember_dids(&mut self, dids: impl IntoIterator<Item = String>) {
        for did in dids {
            if did != self.did && !self.also_known_as.contains(&did) {
                self.also_known_as.push(did);
            }
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Secrets {
    root: Option<String>,
    device_sign: String,
    device_agree: String,
    certificate: String,
    #[serde(default)]
    credentials: Vec<HeldCredential>,
    #[serde(default)]
    messages: Vec<StoredMessage>,
    #[serde(default)]
    contacts: Vec<Contact>,
    #[serde(default)]
    known_keys: Vec<KnownKeys>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    rotations: Vec<String>,
    #[serde(default)]
    history: crate::history::HistoryState,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    issued: Vec<KeptCredential>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    blessed: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    did_log: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    outbox_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key_did: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exported: Option<crate::export::Exported>,
}

/// The key agreement keys a recipient's DID document listed when last resolved: a
/// message can still be encrypted to them while the recipient's node is down.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KnownKeys {
    pub did: String,
    /// `(kid, X25519 Multikey)` pairs.
    pub keys: Vec<(String, String)>,
    pub seen_at: i64,
}

/// A credential this wallet holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HeldCredential {
    pub id: String,
    pub format: String,
    pub credential: String,
    pub received_at: i64,
}

/// A message this device received, opened and kept (sealed with the rest of the secrets).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredMessage {
    /// The node's id for it: the id of the forward it came in.
    pub id: String,
    /// The sender's own id of the DIDComm message.
    pub message_id: String,
    /// The sender, as the envelope proved it (authcrypt and signature); empty if it proved none.
    pub from: String,
    /// The sender the delivering node vouched for.
    pub vouched_from: String,
    /// The two senders differ: do not trust who this claims to be from.
    #[serde(default)]
    pub sender_mismatch: bool,
    /// `inbox` or `requests`, as the node's policy sorted it.
    pub folder: String,
    /// The DIDComm message type.
    pub kind: String,
    pub body: serde_json::Value,
    #[serde(default)]
    pub thid: Option<String>,
    /// When the sender says it wrote it (seconds).
    #[serde(default)]
    pub created_time: Option<u64>,
    /// When the node received it (milliseconds).
    pub received_time: i64,
    /// The sender attached a credential presentation.
    #[serde(default)]
    pub presentation: bool,
    /// Why it could not be opened on this device, if it could not.
    #[serde(default)]
    pub unreadable: Option<String>,
    /// The envelope as delivered, kept when it could not be opened: the node deletes its copy
    /// once acknowledged, and a later wallet (or another tool) may still read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<serde_json::Value>,
    #[serde(default)]
    pub read: bool,
}

/// A name for a DID, kept in this wallet only.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Contact {
    pub name: String,
    pub did: String,
    /// `name@host` when added that way.
    #[serde(default)]
    pub address: Option<String>,
    pub added_at: i64,
}

#[derive(Serialize, Deserialize)]
struct WalletFile {
    version: u32,
    profile: Profile,
    kdf: Kdf,
    sealed: String,
}

#[derive(Serialize, Deserialize)]
struct Kdf {
    alg: String,
    salt: String,
    #[serde(flatten)]
    params: KdfParams,
}

/// An unlocked wallet.
pub struct Wallet {
    pub profile: Profile,
    pub root: Option<Ed25519KeyPair>,
    pub device_sign: Ed25519KeyPair,
    pub device_agree: X25519KeyPair,
    pub certificate: String,
    pub credentials: Vec<HeldCredential>,
    pub messages: Vec<StoredMessage>,
    pub contacts: Vec<Contact>,
    pub known_keys: Vec<KnownKeys>,
    /// Each `rotate_root` this wallet signed ([`RootRotation`](sichat_accounts::protocol::RootRotation)
    /// JWS, oldest first): a node restored from an older backup follows them (`catch_up`).
    pub rotations: Vec<String>,
    /// Where this wallet stands with the account's history on the node.
    pub history: crate::history::HistoryState,
    /// What this wallet issued, with the status it last set: after the node is restored
    /// from an older backup, `sichat credential reinstate` puts them back in its log.
    pub issued: Vec<KeptCredential>,
    /// The certificates of the devices this root-key wallet blessed and has not revoked: a
    /// node restored from an older backup gets them back (`catch_up`).
    pub blessed: Vec<String>,
    /// The account's `did:webvh` log as this root-key wallet last saw it (one entry per
    /// line): a node restored from an older backup gets back the entries it lost (`catch_up`).
    pub did_log: Vec<String>,
    /// The key sealing the messages handed to the node and not yet delivered, kept each in
    /// a file of its own beside the wallet (`message/sent.rs`).
    pub outbox_key: Option<String>,
    /// The key of the did:key this account started as (`sichat join`), once the root key
    /// rotated away from it: credentials issued to the did:key are presented with it.
    pub key_did: Option<Ed25519KeyPair>,
    /// What `sichat export` took from the node for a life without it.
    pub exported: Option<crate::export::Exported>,
}

pub fn default_dir() -> PathBuf {
    dirs::data_dir().unwrap_or_else(|| PathBuf::from(".")).join("sichat")
}

pub fn exists(dir: &Path) -> bool {
    dir.join(FILE).exists()
}

/// Read the public profile, no passphrase needed.
pub fn read_profile(dir: &Path) -> Result<Profile> {
    Ok(read_file(dir)?.profile)
}

fn read_file(dir: &Path) -> Result<WalletFile> {
    let path = dir.join(FILE);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("no wallet at {}: run `sichat init` to make one, or pass --wallet DIR", dir.display())
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let file: WalletFile =
        serde_json::from_str(&text).with_context(|| format!("{} is not a Sichat wallet", path.display()))?;
    if file.version != 1 {
        bail!("{} has wallet format {}, this sichat reads 1: upgrade sichat", path.display(), file.version);
    }
    Ok(file)
}

fn aad(profile: &Profile) -> Result<String> {
    Ok(format!("{AAD_PREFIX}{}", serde_json::to_string(profile)?))
}

impl Wallet {
    /// Unlock the wallet in `dir` with `passphrase`.
    pub fn open(dir: &Path, passphrase: &str) -> Result<Self> {
        let file = read_file(dir)?;
        let salt = b64url_decode(&file.kdf.salt).context("wallet salt is corrupt")?;
        let key = MasterKey::from_passphrase(passphrase, &salt, file.kdf.params)?;
        let sealed = b64url_decode(&file.sealed).context("wallet ciphertext is corrupt")?;
        let plain = key
            .open(&sealed, &aad(&file.profile)?)
            .map_err(|_| anyhow::anyhow!("wrong passphrase (or the wallet file was altered)"))?;
        let s: Secrets = serde_json::from_slice(&plain).context("wallet secrets are corrupt")?;
        Ok(Self {
            root: s
                .root
                .as_deref()
                .map(|r| decode_secret(r).and_then(|b| Ed25519KeyPair::from_secret(&b)))
                .transpose()?,
            device_sign: Ed25519KeyPair::from_secret(&decode_secret(&s.device_sign)?)?,
            device_agree: X25519KeyPair::from_secret(&decode_secret(&s.device_agree)?)?,
            certificate: s.certificate,
            credentials: s.credentials,
            messages: s.messages,
            contacts: s.contacts,
            known_keys: s.known_keys,
            rotations: s.rotations,
            history: s.history,
            issued: s.issued,
            blessed: s.blessed,
            did_log: s.did_log,
            outbox_key: s.outbox_key,
            exported: s.exported,
            key_did: s
                .key_did
                .as_deref()
                .map(|k| decode_secret(k).and_then(|b| Ed25519KeyPair::from_secret(&b)))
                .transpose()?,
            profile: file.profile,
        })
    }

    /// A wallet holding only its keys and certificate: nothing received, sent or issued yet.
    pub fn fresh(
        profile: Profile,
        root: Option<Ed25519KeyPair>,
        device_sign: Ed25519KeyPair,
        device_agree: X25519KeyPair,
        certificate: String,
    ) -> Self {
        Self {
            profile,
            root,
            device_sign,
            device_agree,
            certificate,
            credentials: Vec::new(),
            messages: Vec::new(),
            contacts: Vec::new(),
            known_keys: Vec::new(),
            rotations: Vec::new(),
            history: Default::default(),
            issued: Vec::new(),
            blessed: Vec::new(),
            did_log: Vec::new(),
            outbox_key: None,
            key_did: None,
            exported: None,
        }
    }

    /// Seal and write atomically to `dir/wallet.json` (`0600`, directory `0700`).
    pub fn save(&self, dir: &Path, passphrase: &str) -> Result<()> {
        let tmp = self.write_pending(dir, passphrase)?;
        commit_pending(&tmp, dir)
    }

    /// Seal and write to a temporary file beside the wallet; [`commit_pending`] puts it in
    /// place. Lets `init` keep the new keys on disk before the server knows them.
    pub fn write_pending(&self, dir: &Path, passphrase: &str) -> Result<PathBuf> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create wallet directory {}", dir.display()))?;
        let params = KdfParams::default();
        let salt = random_bytes::<16>();
        let key = MasterKey::from_passphrase(passphrase, &salt, params)?;
        let secrets = Secrets {
            root: self.root.as_ref().map(|k| b64url(&k.secret())),
            device_sign: b64url(&self.device_sign.secret()),
            device_agree: b64url(&self.device_agree.secret()),
            certificate: self.certificate.clone(),
            credentials: self.credentials.clone(),
            messages: self.messages.clone(),
            contacts: self.contacts.clone(),
            known_keys: self.known_keys.clone(),
            rotations: self.rotations.clone(),
            history: self.history.clone(),
            issued: self.issued.clone(),
            blessed: self.blessed.clone(),
            did_log: self.did_log.clone(),
            outbox_key: self.outbox_key.clone(),
            key_did: self.key_did.as_ref().map(|k| b64url(&k.secret())),
            exported: self.exported.clone(),
        };
        let plain = zeroize::Zeroizing::new(serde_json::to_vec(&secrets)?);
        let file = WalletFile {
            version: 1,
            kdf: Kdf { alg: "argon2id".into(), salt: b64url(&salt), params },
            sealed: b64url(&key.seal(&plain, &aad(&self.profile)?)),
            profile: self.profile.clone(),
        };
        let tmp = dir.join(format!("{FILE}.tmp-{}", std::process::id()));
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(serde_json::to_string_pretty(&file)?.as_bytes())?;
        f.sync_all()?;
        Ok(tmp)
    }
}

/// Read, change and write the wallet under its lock, so that two `sichat` processes (a
/// running `message watch` and a `contacts add`) do not lose each other's changes.
/// Nothing is written when `change` fails.
pub fn update<T>(dir: &Path, passphrase: &str, change: impl FnOnce(&mut Wallet) -> Result<T>) -> Result<T> {
    let _lock = Lock::take(dir)?;
    let mut w = Wallet::open(dir, passphrase)?;
    let out = change(&mut w)?;
    w.save(dir, passphrase)?;
    Ok(out)
}

/// An exclusive `flock` on `wallet.lock` beside the wallet, released when dropped.
struct Lock {
    _file: fs::File,
}

impl Lock {
    fn take(dir: &Path) -> Result<Self> {
        use std::os::fd::AsRawFd;
        let path = dir.join(format!("{FILE}.lock"));
        let f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        // SAFETY: flock on a descriptor this File owns for as long as the lock lives.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            bail!("cannot lock {}: {}", path.display(), std::io::Error::last_os_error());
        }
        Ok(Self { _file: f })
    }
}

/// The next sign-in number of this wallet copy, kept (not secret) beside the wallet file.
/// Each copy of a wallet directory counts on its own from where the copy was made, so the
/// node sees a number twice when two copies sign in as one device.
pub fn next_login_seq(dir: &Path) -> Result<i64> {
    let _lock = Lock::take(dir)?;
    let path = dir.join("login.seq");
    let last: i64 = fs::read_to_string(&path).ok().and_then(|t| t.trim().parse().ok()).unwrap_or(0);
    let next = last.saturating_add(1);
    let tmp = dir.join("login.seq.tmp");
    fs::write(&tmp, format!("{next}\n")).with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(next)
}

pub fn commit_pending(tmp: &Path, dir: &Path) -> Result<()> {
    fs::rename(tmp, dir.join(FILE)).with_context(|| format!("cannot write the wallet in {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> PathBuf {
        let p = std::env::temp_dir().join(format!("sichat-wallet-unit-{}", sichat_core::ids::new_id()));
        fs::create_dir_all(&p).unwrap();
        p
    }

    fn wallet() -> Wallet {
        let profile = Profile {
            did: "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK".into(),
            name: None,
            server: None,
            node_did: None,
            node_key: None,
            device_id: "d1".into(),
            device_name: "test".into(),
            has_root_key: false,
            created_at: 0,
            also_known_as: Vec::new(),
            recovery_key: None,
        };
        Wallet::fresh(profile, None, Ed25519KeyPair::generate(), X25519KeyPair::generate(), "cert".into())
    }

    #[test]
    fn wallets_from_before_messaging_open_with_no_messages_or_contacts() {
        let dir = scratch();
        let w = wallet();
        // Seal secrets the way a wallet written before messaging did: no `messages`, no `contacts`.
        let old = serde_json::json!({
            "root": null,
            "device_sign": b64url(&w.device_sign.secret()),
            "device_agree": b64url(&w.device_agree.secret()),
            "certificate": "cert",
            "credentials": [],
        });
        let params = KdfParams::default();
        let salt = random_bytes::<16>();
        let key = MasterKey::from_passphrase("pass", &salt, params).unwrap();
        let file = WalletFile {
            version: 1,
            kdf: Kdf { alg: "argon2id".into(), salt: b64url(&salt), params },
            sealed: b64url(&key.seal(old.to_string().as_bytes(), &aad(&w.profile).unwrap())),
            profile: w.profile.clone(),
        };
        fs::write(dir.join(FILE), serde_json::to_string(&file).unwrap()).unwrap();
        let opened = Wallet::open(&dir, "pass").unwrap();
        assert!(opened.messages.is_empty() && opened.contacts.is_empty());

        // update() writes them, and a second process' change is not lost.
        update(&dir, "pass", |w| {
            w.contacts.push(Contact { name: "bob".into(), did: "did:key:zB".into(), address: None, added_at: 1 });
            Ok(())
        })
        .unwrap();
        let failed: Result<()> = update(&dir, "pass", |w| {
            w.contacts.clear();
            bail!("changed my mind")
        });
        assert!(failed.is_err());
        let again = Wallet::open(&dir, "pass").unwrap();
        assert_eq!(again.contacts.len(), 1, "a failed update writes nothing");
        fs::remove_dir_all(&dir).unwrap();
    }
}
