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
}

#[derive(Serialize, Deserialize)]
struct Secrets {
    root: Option<String>,
    device_sign: String,
    device_agree: String,
    certificate: String,
    #[serde(default)]
    credentials: Vec<HeldCredential>,
}

/// A credential this wallet holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HeldCredential {
    pub id: String,
    pub format: String,
    pub credential: String,
    pub received_at: i64,
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
            profile: file.profile,
        })
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

pub fn commit_pending(tmp: &Path, dir: &Path) -> Result<()> {
    fs::rename(tmp, dir.join(FILE)).with_context(|| format!("cannot write the wallet in {}", dir.display()))
}
