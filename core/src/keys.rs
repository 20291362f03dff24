//! Key pairs and their public encodings.
//!
//! Public keys travel as Multikey `publicKeyMultibase` values: base58btc (`z…`) over a
//! multicodec prefix (`0xed01` Ed25519, `0xec01` X25519), as `did:key` uses them.

use crate::ids::{b64url, b64url_decode, random_bytes};
use crate::CoreError;
use ed25519_dalek::Signer;
use std::fmt;
use zeroize::Zeroizing;

const ED25519_CODEC: [u8; 2] = [0xed, 0x01];
const X25519_CODEC: [u8; 2] = [0xec, 0x01];

fn multibase(codec: [u8; 2], key: &[u8; 32]) -> String {
    let mut buf = Vec::with_capacity(34);
    buf.extend_from_slice(&codec);
    buf.extend_from_slice(key);
    format!("z{}", bs58::encode(buf).into_string())
}

fn from_multibase(codec: [u8; 2], s: &str, what: &str) -> Result<[u8; 32], CoreError> {
    let body = s
        .strip_prefix('z')
        .ok_or_else(|| CoreError::InvalidKey(format!("{what} must be base58btc multibase (start with 'z')")))?;
    let raw =
        bs58::decode(body).into_vec().map_err(|_| CoreError::InvalidKey(format!("{what} is not valid base58btc")))?;
    if raw.len() != 34 || raw[..2] != codec {
        return Err(CoreError::InvalidKey(format!("{what} is not a multicodec {what} public key")));
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(&raw[2..]);
    Ok(key)
}

/// An Ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Ed25519Public(ed25519_dalek::VerifyingKey);

impl Ed25519Public {
    pub fn from_multibase(s: &str) -> Result<Self, CoreError> {
        let bytes = from_multibase(ED25519_CODEC, s, "Ed25519")?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes)
            .map_err(|_| CoreError::InvalidKey("not a valid Ed25519 point".into()))?;
        if key.is_weak() {
            return Err(CoreError::InvalidKey("a small-order (weak) Ed25519 key".into()));
        }
        Ok(Self(key))
    }

    pub fn to_multibase(&self) -> String {
        multibase(ED25519_CODEC, self.0.as_bytes())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }

    pub(crate) fn montgomery_bytes(&self) -> [u8; 32] {
        self.0.to_montgomery().to_bytes()
    }

    /// The public JWK (`kty: OKP`, `crv: Ed25519`), members in RFC 7638 order.
    pub fn to_jwk(&self) -> serde_json::Value {
        serde_json::json!({"crv": "Ed25519", "kty": "OKP", "x": b64url(self.0.as_bytes())})
    }

    /// RFC 8032 verification with a canonical `s`. Weak (small-order) keys never get here:
    /// they are refused when parsed.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let Ok(sig) = ed25519_dalek::Signature::from_slice(signature) else {
            return false;
        };
        ed25519_dalek::Verifier::verify(&self.0, message, &sig).is_ok()
    }
}

impl fmt::Debug for Ed25519Public {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ed25519Public({})", self.to_multibase())
    }
}

/// An Ed25519 signing key. Its secret half never appears in `Debug` output.
pub struct Ed25519KeyPair(ed25519_dalek::SigningKey);

impl Ed25519KeyPair {
    pub fn generate() -> Self {
        Self(ed25519_dalek::SigningKey::from_bytes(&random_bytes::<32>()))
    }

    pub fn from_secret(secret: &[u8]) -> Result<Self, CoreError> {
        let seed: [u8; 32] =
            secret.try_into().map_err(|_| CoreError::InvalidKey("an Ed25519 secret is 32 bytes".into()))?;
        Ok(Self(ed25519_dalek::SigningKey::from_bytes(&seed)))
    }

    /// The 32-byte seed, for sealing. Wrapped so it is wiped when dropped.
    pub fn secret(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.0.to_bytes().to_vec())
    }

    pub fn public(&self) -> Ed25519Public {
        Ed25519Public(self.0.verifying_key())
    }

    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }

    pub(crate) fn signing_key(&self) -> &ed25519_dalek::SigningKey {
        &self.0
    }
}

impl fmt::Debug for Ed25519KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ed25519KeyPair(public: {})", self.public().to_multibase())
    }
}

/// An X25519 public key (for key agreement).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct X25519Public(x25519_dalek::PublicKey);

impl X25519Public {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(x25519_dalek::PublicKey::from(bytes))
    }

    pub fn from_multibase(s: &str) -> Result<Self, CoreError> {
        from_multibase(X25519_CODEC, s, "X25519").map(|b| Self(x25519_dalek::PublicKey::from(b)))
    }

    pub fn to_multibase(&self) -> String {
        multibase(X25519_CODEC, self.0.as_bytes())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }

    pub fn to_jwk(&self) -> serde_json::Value {
        serde_json::json!({"kty": "OKP", "crv": "X25519", "x": b64url(self.0.as_bytes())})
    }

    /// A public JWK `{"kty": "OKP", "crv": "X25519", "x": …}`; `None` for anything else,
    /// including a JWK that carries a private part.
    pub fn from_jwk(jwk: &serde_json::Value) -> Option<Self> {
        if jwk.get("kty")? != "OKP" || jwk.get("crv")? != "X25519" || jwk.get("d").is_some() {
            return None;
        }
        let x: [u8; 32] = b64url_decode(jwk.get("x")?.as_str()?)?.try_into().ok()?;
        Some(Self::from_bytes(x))
    }
}

impl fmt::Debug for X25519Public {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "X25519Public({})", self.to_multibase())
    }
}

/// An X25519 key pair.
pub struct X25519KeyPair(x25519_dalek::StaticSecret);

impl X25519KeyPair {
    pub fn generate() -> Self {
        Self(x25519_dalek::StaticSecret::from(random_bytes::<32>()))
    }

    pub fn from_secret(secret: &[u8]) -> Result<Self, CoreError> {
        let bytes: [u8; 32] =
            secret.try_into().map_err(|_| CoreError::InvalidKey("an X25519 secret is 32 bytes".into()))?;
        Ok(Self(x25519_dalek::StaticSecret::from(bytes)))
    }

    pub fn secret(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.0.to_bytes().to_vec())
    }

    pub fn public(&self) -> X25519Public {
        X25519Public(x25519_dalek::PublicKey::from(&self.0))
    }

    /// X25519 with `their` key. `None` when the result is all zeros (their key is of small
    /// order), which RFC 7748 §6.1 says to refuse: such a secret is known to anyone.
    pub fn diffie_hellman(&self, their: &X25519Public) -> Option<Zeroizing<[u8; 32]>> {
        let shared = self.0.diffie_hellman(&their.0);
        shared.was_contributory().then(|| Zeroizing::new(shared.to_bytes()))
    }
}

impl fmt::Debug for X25519KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "X25519KeyPair(public: {})", self.public().to_multibase())
    }
}

/// Base58btc (Bitcoin alphabet), for codes people copy by hand.
pub fn base58(bytes: &[u8]) -> String {
    bs58::encode(bytes).into_string()
}

/// Decode a base64url secret (as stored in wallets) into bytes.
pub fn decode_secret(s: &str) -> Result<Zeroizing<Vec<u8>>, CoreError> {
    b64url_decode(s).map(Zeroizing::new).ok_or_else(|| CoreError::InvalidKey("secret is not base64url".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_keys_are_refused() {
        let mut identity = [0u8; 32];
        identity[0] = 1; // the neutral point: every signature "verifies" under it
        let e = Ed25519Public::from_multibase(&multibase(ED25519_CODEC, &identity)).unwrap_err();
        assert!(e.to_string().contains("weak"), "{e}");
    }

    #[test]
    fn multibase_round_trips_and_has_did_key_prefixes() {
        let ed = Ed25519KeyPair::generate().public();
        let mb = ed.to_multibase();
        assert!(mb.starts_with("z6Mk"), "{mb}");
        assert_eq!(Ed25519Public::from_multibase(&mb).unwrap(), ed);

        let x = X25519KeyPair::generate().public();
        let mb = x.to_multibase();
        assert!(mb.starts_with("z6LS"), "{mb}");
        assert_eq!(X25519Public::from_multibase(&mb).unwrap(), x);
    }

    #[test]
    fn wrong_codec_and_garbage_are_refused() {
        let x = X25519KeyPair::generate().public().to_multibase();
        assert!(Ed25519Public::from_multibase(&x).is_err());
        assert!(Ed25519Public::from_multibase("z0OIl").is_err());
        assert!(Ed25519Public::from_multibase("").is_err());
        assert!(Ed25519Public::from_multibase("u6Mk").is_err());
    }

    #[test]
    fn signatures_verify_and_tampering_fails() {
        let k = Ed25519KeyPair::generate();
        let sig = k.sign(b"hello");
        assert!(k.public().verify(b"hello", &sig));
        assert!(!k.public().verify(b"hellO", &sig));
        assert!(!k.public().verify(b"hello", &sig[..63]));
        let again = Ed25519KeyPair::from_secret(&k.secret()).unwrap();
        assert_eq!(again.public(), k.public());
    }

    #[test]
    fn x25519_agreement_matches_and_small_order_keys_are_refused() {
        let (a, b) = (X25519KeyPair::generate(), X25519KeyPair::generate());
        let ab = a.diffie_hellman(&b.public()).unwrap();
        assert_eq!(*ab, *b.diffie_hellman(&a.public()).unwrap());
        assert!(a.diffie_hellman(&X25519Public::from_bytes([0; 32])).is_none());
        let jwk = a.public().to_jwk();
        assert_eq!(X25519Public::from_jwk(&jwk), Some(a.public()));
        assert_eq!(X25519Public::from_jwk(&Ed25519KeyPair::generate().public().to_jwk()), None);
    }

    #[test]
    fn debug_never_shows_secrets() {
        let k = Ed25519KeyPair::generate();
        let secret = b64url(&k.secret());
        assert!(!format!("{k:?}").contains(&secret));
    }
}
