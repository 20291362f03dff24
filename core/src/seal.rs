//! Secrets sealed at rest: XChaCha20-Poly1305 under a 256-bit key.
//!
//! The key is the node's master key (a `0600` file or `SICHAT_MASTER_KEY`) on a server,
//! or derived from a passphrase with argon2id in a wallet. Every sealed value is bound to
//! a context string (its AAD), so a sealed secret cannot be moved to another row or use.

use crate::ids::{b64url, b64url_decode, random_bytes};
use crate::CoreError;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use zeroize::Zeroizing;

const VERSION: u8 = 1;

/// A 256-bit sealing key. Never printed.
pub struct MasterKey(Zeroizing<[u8; 32]>);

/// Where the master key came from, for messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MasterKeySource {
    Environment,
    File(std::path::PathBuf),
    CreatedFile(std::path::PathBuf),
}

impl fmt::Display for MasterKeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Environment => f.write_str("SICHAT_MASTER_KEY"),
            Self::File(p) | Self::CreatedFile(p) => write!(f, "{}", p.display()),
        }
    }
}

/// argon2id parameters, stored beside what they sealed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    pub m_kib: u32,
    pub t: u32,
    pub p: u32,
}

impl Default for KdfParams {
    /// 64 MiB, 3 passes: above OWASP's argon2id floor, about a quarter second here.
    fn default() -> Self {
        Self { m_kib: 64 * 1024, t: 3, p: 1 }
    }
}

impl MasterKey {
    pub fn generate() -> Self {
        Self(Zeroizing::new(random_bytes::<32>()))
    }

    /// Parse a base64url-encoded 32-byte key.
    pub fn from_base64(s: &str) -> Result<Self, CoreError> {
        let bytes = Zeroizing::new(b64url_decode(s.trim()).unwrap_or_default());
        let key: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| CoreError::Sealed("a master key is 32 bytes, base64url encoded (43 characters)".into()))?;
        Ok(Self(Zeroizing::new(key)))
    }

    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(b64url(self.0.as_slice()))
    }

    /// Derive a key from a passphrase with argon2id.
    pub fn from_passphrase(passphrase: &str, salt: &[u8], params: KdfParams) -> Result<Self, CoreError> {
        let params = argon2::Params::new(params.m_kib, params.t, params.p, Some(32))
            .map_err(|e| CoreError::Sealed(format!("bad argon2id parameters: {e}")))?;
        let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut key = Zeroizing::new([0u8; 32]);
        argon
            .hash_password_into(passphrase.as_bytes(), salt, key.as_mut_slice())
            .map_err(|e| CoreError::Sealed(format!("argon2id failed: {e}")))?;
        Ok(Self(key))
    }

    /// The master key of a data directory: `SICHAT_MASTER_KEY` if given, else the
    /// `master.key` file, created `0600` on first use. A file others can read is refused.
    /// The master key from `from_env` or `<data_dir>/master.key`, never a new one: `None`
    /// when there is neither.
    pub fn load(data_dir: &Path, from_env: Option<&str>) -> Result<Option<(Self, MasterKeySource)>, CoreError> {
        if from_env.is_none() && !data_dir.join("master.key").exists() {
            return Ok(None);
        }
        Self::load_or_create(data_dir, from_env).map(Some)
    }

    pub fn load_or_create(data_dir: &Path, from_env: Option<&str>) -> Result<(Self, MasterKeySource), CoreError> {
        if let Some(value) = from_env {
            return Ok((Self::from_base64(value)?, MasterKeySource::Environment));
        }
        let path = data_dir.join("master.key");
        match fs::read_to_string(&path) {
            Ok(text) => {
                let mode = fs::metadata(&path).map(|m| m.permissions().mode() & 0o777).unwrap_or(0);
                if mode & 0o077 != 0 {
                    return Err(CoreError::Sealed(format!(
                        "{} is readable by other users (mode {mode:o}); run `chmod 600 {}`",
                        path.display(),
                        path.display()
                    )));
                }
                let key =
                    Self::from_base64(&text).map_err(|e| CoreError::Sealed(format!("{}: {e}", path.display())))?;
                Ok((key, MasterKeySource::File(path)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate();
                let mut file = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(|e| CoreError::Sealed(format!("cannot create {}: {e}", path.display())))?;
                file.write_all(format!("{}\n", key.to_base64().as_str()).as_bytes())
                    .and_then(|_| file.sync_all())
                    .map_err(|e| CoreError::Sealed(format!("cannot write {}: {e}", path.display())))?;
                Ok((key, MasterKeySource::CreatedFile(path)))
            }
            Err(e) => Err(CoreError::Sealed(format!("cannot read {}: {e}", path.display()))),
        }
    }

    /// Seal `plaintext`, bound to `context`. Output: version ‖ nonce ‖ ciphertext.
    pub fn seal(&self, plaintext: &[u8], context: &str) -> Vec<u8> {
        let cipher = XChaCha20Poly1305::new(self.0.as_slice().into());
        let nonce = random_bytes::<24>();
        let ct = cipher
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: plaintext, aad: context.as_bytes() })
            .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory buffers");
        let mut out = Vec::with_capacity(1 + 24 + ct.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// Open a sealed value. Fails, without detail, on a wrong key, context or tampering.
    pub fn open(&self, sealed: &[u8], context: &str) -> Result<Zeroizing<Vec<u8>>, CoreError> {
        if sealed.len() < 1 + 24 + 16 || sealed[0] != VERSION {
            return Err(CoreError::Sealed("sealed value is truncated or of an unknown version".into()));
        }
        let cipher = XChaCha20Poly1305::new(self.0.as_slice().into());
        cipher
            .decrypt(XNonce::from_slice(&sealed[1..25]), Payload { msg: &sealed[25..], aad: context.as_bytes() })
            .map(Zeroizing::new)
            .map_err(|_| CoreError::Sealed("the key does not open this sealed value".into()))
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_binding() {
        let k = MasterKey::generate();
        let s = k.seal(b"secret", "ctx:1");
        assert_eq!(k.open(&s, "ctx:1").unwrap().as_slice(), b"secret");
        assert!(k.open(&s, "ctx:2").is_err(), "context is bound");
        assert!(MasterKey::generate().open(&s, "ctx:1").is_err(), "wrong key fails");
        let mut t = s.clone();
        *t.last_mut().unwrap() ^= 1;
        assert!(k.open(&t, "ctx:1").is_err(), "tampering fails");
        assert!(k.open(&s[..10], "ctx:1").is_err());
    }

    #[test]
    fn passphrase_derivation_is_deterministic_per_salt() {
        let p = KdfParams { m_kib: 1024, t: 1, p: 1 };
        let a = MasterKey::from_passphrase("pw", b"saltsaltsaltsalt", p).unwrap();
        let b = MasterKey::from_passphrase("pw", b"saltsaltsaltsalt", p).unwrap();
        let c = MasterKey::from_passphrase("pw", b"othersaltothersa", p).unwrap();
        let sealed = a.seal(b"x", "c");
        assert!(b.open(&sealed, "c").is_ok());
        assert!(c.open(&sealed, "c").is_err());
    }

    #[test]
    fn master_key_file_is_0600_and_reloads() {
        let dir = std::env::temp_dir().join(format!("sichat-seal-{}", crate::ids::new_id()));
        fs::create_dir_all(&dir).unwrap();
        let (k1, src) = MasterKey::load_or_create(&dir, None).unwrap();
        assert!(matches!(src, MasterKeySource::CreatedFile(_)));
        let mode = fs::metadata(dir.join("master.key")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (k2, src) = MasterKey::load_or_create(&dir, None).unwrap();
        assert!(matches!(src, MasterKeySource::File(_)));
        assert!(k2.open(&k1.seal(b"x", "c"), "c").is_ok());
        fs::set_permissions(dir.join("master.key"), fs::Permissions::from_mode(0o644)).unwrap();
        let err = MasterKey::load_or_create(&dir, None).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
        assert!(MasterKey::load_or_create(&dir, Some("short")).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
