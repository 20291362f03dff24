//! P-256 (ES256) keys, for the interoperability profiles that require them, and the
//! algorithm-generic [`PublicKey`] and [`KeyPair`] the JWS helpers take.

use crate::ids::{b64url, b64url_decode, random_bytes};
use crate::keys::{Ed25519KeyPair, Ed25519Public};
use crate::CoreError;
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use std::fmt;
use zeroize::Zeroizing;

/// Multicodec `p256-pub` (0x1200) as an unsigned varint.
const P256_CODEC: [u8; 2] = [0x80, 0x24];

#[derive(Clone, Copy, PartialEq, Eq)]
pub struct P256Public(VerifyingKey);

impl P256Public {
    pub fn from_multibase(s: &str) -> Result<Self, CoreError> {
        let raw = s
            .strip_prefix('z')
            .and_then(|b| bs58::decode(b).into_vec().ok())
            .ok_or_else(|| CoreError::InvalidKey("P-256 key must be base58btc multibase".into()))?;
        if raw.len() != 35 || raw[..2] != P256_CODEC {
            return Err(CoreError::InvalidKey("not a multicodec P-256 public key".into()));
        }
        VerifyingKey::from_sec1_bytes(&raw[2..])
            .map(Self)
            .map_err(|_| CoreError::InvalidKey("not a P-256 point".into()))
    }

    /// Multikey: multicodec prefix and the compressed SEC1 point (`zDn…`).
    pub fn to_multibase(&self) -> String {
        let mut buf = P256_CODEC.to_vec();
        buf.extend_from_slice(self.0.to_encoded_point(true).as_bytes());
        format!("z{}", bs58::encode(buf).into_string())
    }

    pub fn to_jwk(&self) -> serde_json::Value {
        let point = self.0.to_encoded_point(false);
        let (x, y) = (point.x().map(|x| b64url(x)), point.y().map(|y| b64url(y)));
        serde_json::json!({"crv": "P-256", "kty": "EC", "x": x, "y": y})
    }

    pub fn from_jwk(jwk: &serde_json::Value) -> Option<Self> {
        if jwk.get("kty")? != "EC" || jwk.get("crv")? != "P-256" || jwk.get("d").is_some() {
            return None;
        }
        let (x, y) = (b64url_decode(jwk.get("x")?.as_str()?)?, b64url_decode(jwk.get("y")?.as_str()?)?);
        if x.len() != 32 || y.len() != 32 {
            return None;
        }
        let mut sec1 = vec![0x04];
        sec1.extend_from_slice(&x);
        sec1.extend_from_slice(&y);
        VerifyingKey::from_sec1_bytes(&sec1).ok().map(Self)
    }

    /// `signature` is the JWS form: r ‖ s, 64 bytes.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        Signature::from_slice(signature).is_ok_and(|sig| self.0.verify(message, &sig).is_ok())
    }
}

impl fmt::Debug for P256Public {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "P256Public({})", self.to_multibase())
    }
}

pub struct P256KeyPair(SigningKey);

impl P256KeyPair {
    pub fn generate() -> Self {
        loop {
            // A random 32-byte string is a valid scalar with overwhelming probability.
            if let Ok(k) = SigningKey::from_slice(&random_bytes::<32>()) {
                return Self(k);
            }
        }
    }

    pub fn from_secret(secret: &[u8]) -> Result<Self, CoreError> {
        SigningKey::from_slice(secret).map(Self).map_err(|_| CoreError::InvalidKey("not a P-256 secret scalar".into()))
    }

    pub fn secret(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.0.to_bytes().to_vec())
    }

    pub fn public(&self) -> P256Public {
        P256Public(*self.0.verifying_key())
    }

    /// An ES256 signature in JWS form (r ‖ s).
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let sig: Signature = self.0.sign(message);
        sig.to_bytes().to_vec()
    }
}

impl fmt::Debug for P256KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "P256KeyPair(public: {})", self.public().to_multibase())
    }
}

/// A signature-verifying public key of either algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublicKey {
    Ed25519(Ed25519Public),
    P256(P256Public),
}

impl PublicKey {
    /// A Multikey of either kind, told apart by its multicodec prefix.
    pub fn from_multibase(s: &str) -> Result<Self, CoreError> {
        Ed25519Public::from_multibase(s).map(Self::Ed25519).or_else(|_| P256Public::from_multibase(s).map(Self::P256))
    }

    pub fn from_jwk(jwk: &serde_json::Value) -> Option<Self> {
        if jwk.get("kty").and_then(|v| v.as_str()) == Some("OKP") {
            if jwk.get("crv")? != "Ed25519" || jwk.get("d").is_some() {
                return None;
            }
            let x = b64url_decode(jwk.get("x")?.as_str()?)?;
            let mut mb = vec![0xed, 0x01];
            mb.extend_from_slice(&x);
            return Ed25519Public::from_multibase(&format!("z{}", bs58::encode(mb).into_string()))
                .ok()
                .map(Self::Ed25519);
        }
        P256Public::from_jwk(jwk).map(Self::P256)
    }

    pub fn to_multibase(&self) -> String {
        match self {
            Self::Ed25519(k) => k.to_multibase(),
            Self::P256(k) => k.to_multibase(),
        }
    }

    /// The public JWK with its required members only, in the lexicographic order of RFC
    /// 7638 (`crv`, `kty`, `x`, then `y` for EC) and no whitespace: the one text of the
    /// key that `did:jwk` and thumbprints are made from, whatever order a JSON map keeps.
    pub fn canonical_jwk(&self) -> String {
        match self {
            Self::Ed25519(k) => format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, b64url(k.as_bytes())),
            Self::P256(k) => {
                let point = k.0.to_encoded_point(false);
                let coordinate = |c: Option<&p256::FieldBytes>| c.map(|c| b64url(c)).unwrap_or_default();
                format!(
                    r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
                    coordinate(point.x()),
                    coordinate(point.y())
                )
            }
        }
    }

    /// The key's `did:jwk`: base64url of its [canonical JWK](Self::canonical_jwk), so a
    /// key has one `did:jwk` whoever writes it.
    pub fn did_jwk(&self) -> String {
        format!("did:jwk:{}", b64url(self.canonical_jwk().as_bytes()))
    }

    pub fn to_jwk(&self) -> serde_json::Value {
        match self {
            Self::Ed25519(k) => k.to_jwk(),
            Self::P256(k) => k.to_jwk(),
        }
    }

    /// The JWS `alg` this key verifies.
    pub fn alg(&self) -> &'static str {
        match self {
            Self::Ed25519(_) => "EdDSA",
            Self::P256(_) => "ES256",
        }
    }

    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match self {
            Self::Ed25519(k) => k.verify(message, signature),
            Self::P256(k) => k.verify(message, signature),
        }
    }
}

/// A signing key of either algorithm.
#[derive(Debug)]
pub enum KeyPair {
    Ed25519(Ed25519KeyPair),
    P256(P256KeyPair),
}

impl KeyPair {
    pub fn public(&self) -> PublicKey {
        match self {
            Self::Ed25519(k) => PublicKey::Ed25519(k.public()),
            Self::P256(k) => PublicKey::P256(k.public()),
        }
    }

    pub fn alg(&self) -> &'static str {
        self.public().alg()
    }

    pub fn secret(&self) -> Zeroizing<Vec<u8>> {
        match self {
            Self::Ed25519(k) => k.secret(),
            Self::P256(k) => k.secret(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn did_jwk_is_made_from_the_canonical_jwk_whatever_the_member_order() {
        // did:jwk's own example key, its members written out of RFC 7638 order.
        let canonical = r#"{"crv":"P-256","kty":"EC","x":"acbIQiuMs3i8_uszEjJ2tpTtRM4EU3yz91PH6CdH2V0","y":"_KcyLj9vWMptnmKtm46GqDz8wf74I5LKgrl2GzH3nSE"}"#;
        let shuffled = serde_json::json!({"y": "_KcyLj9vWMptnmKtm46GqDz8wf74I5LKgrl2GzH3nSE", "kty": "EC",
            "x": "acbIQiuMs3i8_uszEjJ2tpTtRM4EU3yz91PH6CdH2V0", "crv": "P-256"});
        let key = PublicKey::from_jwk(&shuffled).unwrap();
        assert_eq!(key.canonical_jwk(), canonical);
        assert_eq!(key.did_jwk(), format!("did:jwk:{}", b64url(canonical.as_bytes())));
        assert_eq!(key.to_jwk().to_string(), canonical, "the JWK we publish is in the same order");

        let ed = Ed25519KeyPair::generate().public();
        let x = b64url(ed.as_bytes());
        let key = PublicKey::Ed25519(ed);
        assert_eq!(key.canonical_jwk(), format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#));
        assert_eq!(key.to_jwk().to_string(), key.canonical_jwk());
    }

    #[test]
    fn p256_multikey_jwk_and_signatures() {
        let k = P256KeyPair::generate();
        let mb = k.public().to_multibase();
        assert!(mb.starts_with("zDn"), "{mb}");
        assert_eq!(P256Public::from_multibase(&mb).unwrap(), k.public());
        assert_eq!(PublicKey::from_multibase(&mb).unwrap(), PublicKey::P256(k.public()));
        assert_eq!(P256Public::from_jwk(&k.public().to_jwk()).unwrap(), k.public());
        let sig = k.sign(b"m");
        assert_eq!(sig.len(), 64);
        assert!(k.public().verify(b"m", &sig));
        assert!(!k.public().verify(b"n", &sig));
        assert_eq!(P256KeyPair::from_secret(&k.secret()).unwrap().public(), k.public());
        let ed = Ed25519KeyPair::generate().public();
        assert_eq!(PublicKey::from_multibase(&ed.to_multibase()).unwrap(), PublicKey::Ed25519(ed));
        assert_eq!(PublicKey::from_jwk(&ed.to_jwk()).unwrap(), PublicKey::Ed25519(ed));
        assert!(
            PublicKey::from_multibase("z6LSbysY2xFMRpGMhb7tFTLMpeuPRaqaWM1yECx2AtzE3KCc").is_err(),
            "X25519 is no signing key"
        );
    }
}
