//! JWE in general JSON serialization (RFC 7516 §7.2.1) to one or many X25519 recipients,
//! as DIDComm Messaging v2.1 §5 encrypts:
//!
//! - **authcrypt**: `ECDH-1PU+A256KW` (draft-madden-jose-ecdh-1pu-04, key wrapping mode:
//!   the content's tag goes into the KDF) with `A256CBC-HS512`; `skid` names the sender's
//!   key agreement key and `apu` is base64url(`skid`).
//! - **anoncrypt**: `ECDH-ES+A256KW` (RFC 7518 §4.6) with `A256CBC-HS512`; `A256GCM` and
//!   `XC20P` are accepted when decrypting.
//!
//! One ephemeral key (`epk`, protected) serves every recipient; `apv` is
//! base64url(SHA-256(the recipients' `kid`s, sorted, joined with `.`)). Each recipient gets
//! the content key wrapped with AES-256 Key Wrap under its own derived key.
//!
//! The primitives are RustCrypto's (`aes`, `cbc`, `hmac`, `sha2`, `aes-kw`, `aes-gcm`,
//! `chacha20poly1305`) and `x25519-dalek` (through `sichat-core`); only their composition,
//! which the specifications above fix byte for byte, is written here.

use aes::cipher::{block_padding::Pkcs7, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256, Sha512};
use sichat_core::ids::{b64url, b64url_decode, random_bytes};
use sichat_core::keys::{X25519KeyPair, X25519Public};
use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use zeroize::Zeroizing;

use crate::EnvelopeError;

/// `typ` of an encrypted message.
pub const ENCRYPTED_TYP: &str = "application/didcomm-encrypted+json";

const AUTHCRYPT_ALG: &str = "ECDH-1PU+A256KW";
const ANONCRYPT_ALG: &str = "ECDH-ES+A256KW";
const A256CBC_HS512: &str = "A256CBC-HS512";

/// One of our X25519 key agreement keys, with its DID URL.
///
/// It remembers the static-static agreements (ECDH-1PU's `Zs`) it computes with peers'
/// keys, up to [`AgreementKey::REMEMBERED`] of them, so that in a conversation each message
/// costs one X25519 per recipient key instead of two. They are as secret as the key itself,
/// live only in this value, and are wiped when dropped.
pub struct AgreementKey {
    kid: String,
    key: X25519KeyPair,
    statics: Mutex<HashMap<[u8; 32], Zeroizing<[u8; 32]>>>,
}

impl AgreementKey {
    /// How many peers' static agreements are kept; past that, all are forgotten at once.
    pub const REMEMBERED: usize = 1024;

    pub fn new(kid: impl Into<String>, key: X25519KeyPair) -> Self {
        Self { kid: kid.into(), key, statics: Mutex::new(HashMap::new()) }
    }

    /// The key's DID URL.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn public(&self) -> X25519Public {
        self.key.public()
    }

    /// X25519 with an ephemeral key: computed every time.
    fn agree(&self, their: &X25519Public) -> Option<Zeroizing<[u8; 32]>> {
        self.key.diffie_hellman(their)
    }

    /// X25519 with a peer's static key: remembered.
    fn agree_static(&self, their: &X25519Public) -> Option<Zeroizing<[u8; 32]>> {
        if let Some(z) = self.statics.lock().ok().and_then(|m| m.get(their.as_bytes()).cloned()) {
            return Some(z);
        }
        let z = self.key.diffie_hellman(their)?;
        if let Ok(mut m) = self.statics.lock() {
            if m.len() >= Self::REMEMBERED {
                m.clear();
            }
            m.insert(*their.as_bytes(), z.clone());
        }
        Some(z)
    }
}

impl fmt::Debug for AgreementKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AgreementKey({})", self.kid)
    }
}

/// A recipient's X25519 key agreement key, with its DID URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecipientKey {
    pub kid: String,
    pub key: X25519Public,
}

/// The key management algorithm of a JWE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyAlg {
    /// `ECDH-1PU+A256KW`: authcrypt.
    Authcrypt,
    /// `ECDH-ES+A256KW`: anoncrypt.
    Anoncrypt,
}

/// The content encryption algorithm of a JWE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentAlg {
    A256CbcHs512,
    A256Gcm,
    XChaCha20Poly1305,
}

impl ContentAlg {
    fn parse(enc: &str) -> Option<Self> {
        match enc {
            A256CBC_HS512 => Some(Self::A256CbcHs512),
            "A256GCM" => Some(Self::A256Gcm),
            "XC20P" => Some(Self::XChaCha20Poly1305),
            _ => None,
        }
    }

    fn key_len(self) -> usize {
        match self {
            Self::A256CbcHs512 => 64,
            Self::A256Gcm | Self::XChaCha20Poly1305 => 32,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct GeneralJwe {
    protected: String,
    recipients: Vec<RecipientJson>,
    iv: String,
    ciphertext: String,
    tag: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    aad: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct RecipientJson {
    #[serde(default)]
    header: Map<String, Value>,
    encrypted_key: String,
}

fn bad(why: impl Into<String>) -> EnvelopeError {
    EnvelopeError::MalformedJwe(why.into())
}

/// base64url(SHA-256(sorted kids joined by '.')), DIDComm's `apv`.
pub fn apv_of<'a>(kids: impl IntoIterator<Item = &'a str>) -> String {
    b64url(&apv_digest(kids))
}

fn apv_digest<'a>(kids: impl IntoIterator<Item = &'a str>) -> [u8; 32] {
    let mut kids: Vec<&str> = kids.into_iter().collect();
    kids.sort_unstable();
    Sha256::digest(kids.join(".").as_bytes()).into()
}

/// Encrypt `plaintext` to every key in `to`: authcrypt from `sender` if given, else
/// anoncrypt. Returns the JWE as JSON text.
pub fn encrypt(plaintext: &[u8], sender: Option<&AgreementKey>, to: &[RecipientKey]) -> Result<String, EnvelopeError> {
    if to.is_empty() {
        return Err(EnvelopeError::InvalidPack("no recipient keys".into()));
    }
    for (i, r) in to.iter().enumerate() {
        if to[..i].iter().any(|o| o.kid == r.kid) {
            return Err(EnvelopeError::InvalidPack(format!("recipient key {} is listed twice", r.kid)));
        }
    }
    let epk = X25519KeyPair::generate();
    let apv = apv_digest(to.iter().map(|r| r.kid.as_str()));
    let mut header = Map::new();
    header.insert("typ".into(), ENCRYPTED_TYP.into());
    header.insert("alg".into(), if sender.is_some() { AUTHCRYPT_ALG } else { ANONCRYPT_ALG }.into());
    header.insert("enc".into(), A256CBC_HS512.into());
    if let Some(s) = sender {
        header.insert("skid".into(), s.kid().into());
        header.insert("apu".into(), b64url(s.kid().as_bytes()).into());
    }
    header.insert("apv".into(), b64url(&apv).into());
    header.insert("epk".into(), epk.public().to_jwk());
    let protected = b64url(&serde_json::to_vec(&header).map_err(|e| EnvelopeError::InvalidPack(e.to_string()))?);

    let cek = Zeroizing::new(random_bytes::<64>());
    let iv = random_bytes::<16>();
    let (ciphertext, tag) = cbc_hs512_encrypt(&cek, &iv, protected.as_bytes(), plaintext);

    let apu = sender.map(|s| s.kid().as_bytes()).unwrap_or_default();
    let mut recipients = Vec::with_capacity(to.len());
    for r in to {
        let small = || EnvelopeError::InvalidPack(format!("{} is a small-order X25519 key", r.kid));
        let ze = epk.diffie_hellman(&r.key).ok_or_else(small)?;
        let kek = match sender {
            Some(s) => {
                let zs = s.agree_static(&r.key).ok_or_else(small)?;
                concat_kdf(&[&ze[..], &zs[..]], AUTHCRYPT_ALG, apu, &apv, Some(&tag))
            }
            None => concat_kdf(&[&ze[..]], ANONCRYPT_ALG, apu, &apv, None),
        };
        let wrapped = aes_kw::KekAes256::from(*kek)
            .wrap_vec(&cek[..])
            .map_err(|_| EnvelopeError::InvalidPack("key wrap failed".into()))?;
        let mut h = Map::new();
        h.insert("kid".into(), r.kid.clone().into());
        recipients.push(RecipientJson { header: h, encrypted_key: b64url(&wrapped) });
    }
    let jwe = GeneralJwe {
        protected,
        recipients,
        iv: b64url(&iv),
        ciphertext: b64url(&ciphertext),
        tag: b64url(&tag),
        aad: None,
    };
    serde_json::to_string(&jwe).map_err(|e| EnvelopeError::InvalidPack(e.to_string()))
}

/// A parsed JWE, not yet decrypted.
pub struct Encrypted {
    alg: KeyAlg,
    enc: ContentAlg,
    skid: Option<String>,
    apu: Vec<u8>,
    apv: Vec<u8>,
    epk: X25519Public,
    recipients: Vec<(String, Vec<u8>)>,
    aad: Vec<u8>,
    iv: Vec<u8>,
    ciphertext: Vec<u8>,
    tag: Vec<u8>,
}

impl Encrypted {
    /// Parse a JWE in general (or flattened) JSON serialization and check its headers.
    pub fn parse(value: Value) -> Result<Self, EnvelopeError> {
        let value = flatten_to_general(value)?;
        let jwe: GeneralJwe = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
        let header: Map<String, Value> = b64url_decode(&jwe.protected)
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| bad("the protected header is not a base64url JSON object"))?;
        let text = |name: &str| header.get(name).and_then(Value::as_str);
        if header.contains_key("crit") || header.contains_key("zip") {
            return Err(EnvelopeError::UnsupportedAlgorithm("JWE with `crit` or `zip`".into()));
        }
        match header.get("typ") {
            None => {}
            Some(Value::String(t)) if t == ENCRYPTED_TYP => {}
            Some(other) => return Err(bad(format!("`typ` must be {ENCRYPTED_TYP}, not {other}"))),
        }
        let alg = match text("alg") {
            Some(AUTHCRYPT_ALG) => KeyAlg::Authcrypt,
            Some(ANONCRYPT_ALG) => KeyAlg::Anoncrypt,
            Some(other) => return Err(EnvelopeError::UnsupportedAlgorithm(format!("JWE alg {other}"))),
            None => return Err(bad("no `alg` in the protected header")),
        };
        let enc_name = text("enc").ok_or_else(|| bad("no `enc` in the protected header"))?;
        let enc = ContentAlg::parse(enc_name)
            .ok_or_else(|| EnvelopeError::UnsupportedAlgorithm(format!("JWE enc {enc_name}")))?;
        if alg == KeyAlg::Authcrypt && enc != ContentAlg::A256CbcHs512 {
            return Err(EnvelopeError::UnsupportedAlgorithm(format!(
                "authcrypt with {enc_name} (DIDComm uses A256CBC-HS512)"
            )));
        }
        let epk = header.get("epk").ok_or_else(|| bad("no `epk` in the protected header"))?;
        let epk = X25519Public::from_jwk(epk).ok_or_else(|| {
            EnvelopeError::UnsupportedAlgorithm(format!(
                "epk on curve {} (X25519 is supported)",
                epk.get("crv").and_then(Value::as_str).unwrap_or("?")
            ))
        })?;
        let apu = match text("apu") {
            Some(a) => b64url_decode(a).ok_or_else(|| bad("`apu` is not base64url"))?,
            None => Vec::new(),
        };
        let skid = match (alg, text("skid")) {
            (KeyAlg::Anoncrypt, _) => None,
            (KeyAlg::Authcrypt, Some(skid)) => {
                if !apu.is_empty() && apu != skid.as_bytes() {
                    return Err(bad("`apu` is not the base64url of `skid`"));
                }
                Some(skid.to_owned())
            }
            (KeyAlg::Authcrypt, None) => {
                Some(String::from_utf8(apu.clone()).map_err(|_| bad("no `skid`, and `apu` is not a key id"))?)
            }
        };
        if skid.as_deref() == Some("") {
            return Err(bad("authcrypt without a sender key id (`skid`)"));
        }

        if jwe.recipients.is_empty() {
            return Err(bad("no recipients"));
        }
        let mut recipients = Vec::with_capacity(jwe.recipients.len());
        for r in jwe.recipients {
            if let Some(name) = r.header.keys().find(|k| header.contains_key(*k)) {
                return Err(bad(format!("{name:?} is both protected and in a recipient header")));
            }
            let kid = r.header.get("kid").and_then(Value::as_str).ok_or_else(|| bad("a recipient has no `kid`"))?;
            let ek = b64url_decode(&r.encrypted_key).ok_or_else(|| bad("`encrypted_key` is not base64url"))?;
            recipients.push((kid.to_owned(), ek));
        }
        let apv_text = text("apv").ok_or_else(|| bad("no `apv` in the protected header"))?;
        if apv_text.trim_end_matches('=') != apv_of(recipients.iter().map(|(k, _)| k.as_str())) {
            return Err(bad("`apv` does not match the recipients' key ids"));
        }
        let apv = b64url_decode(apv_text).ok_or_else(|| bad("`apv` is not base64url"))?;
        let mut aad = jwe.protected.into_bytes();
        if let Some(extra) = jwe.aad {
            aad.push(b'.');
            aad.extend_from_slice(extra.as_bytes());
        }
        let field = |v: &str, what: &str| b64url_decode(v).ok_or_else(|| bad(format!("`{what}` is not base64url")));
        Ok(Self {
            alg,
            enc,
            skid,
            apu,
            apv,
            epk,
            recipients,
            aad,
            iv: field(&jwe.iv, "iv")?,
            ciphertext: field(&jwe.ciphertext, "ciphertext")?,
            tag: field(&jwe.tag, "tag")?,
        })
    }

    pub fn alg(&self) -> KeyAlg {
        self.alg
    }

    pub fn enc(&self) -> ContentAlg {
        self.enc
    }

    /// The sender's key id of an authcrypted JWE (`skid`), as it claims.
    pub fn sender_kid(&self) -> Option<&str> {
        self.skid.as_deref()
    }

    pub fn recipient_kids(&self) -> impl Iterator<Item = &str> {
        self.recipients.iter().map(|(k, _)| k.as_str())
    }

    /// Decrypt an anoncrypted JWE with whichever of `ours` it names. Returns the kid used
    /// and the plaintext.
    pub fn decrypt_anon(&self, ours: &[AgreementKey]) -> Result<(String, Vec<u8>), EnvelopeError> {
        if self.alg != KeyAlg::Anoncrypt {
            return Err(bad("expected an anoncrypted (ECDH-ES) JWE"));
        }
        self.decrypt(ours, None)
    }

    /// Decrypt an authcrypted JWE from `sender` (the key `skid` names, as resolved).
    pub fn decrypt_auth(
        &self,
        ours: &[AgreementKey],
        sender: &X25519Public,
    ) -> Result<(String, Vec<u8>), EnvelopeError> {
        if self.alg != KeyAlg::Authcrypt {
            return Err(bad("expected an authcrypted (ECDH-1PU) JWE"));
        }
        self.decrypt(ours, Some(sender))
    }

    fn decrypt(
        &self,
        ours: &[AgreementKey],
        sender: Option<&X25519Public>,
    ) -> Result<(String, Vec<u8>), EnvelopeError> {
        let mut named_us = false;
        for (kid, wrapped) in &self.recipients {
            let Some(our) = ours.iter().find(|o| o.kid == *kid) else { continue };
            named_us = true;
            let Some(cek) = self.unwrap_cek(our, sender, wrapped) else { continue };
            return self.decrypt_content(&cek).map(|p| (kid.clone(), p));
        }
        if named_us {
            Err(EnvelopeError::DecryptionFailed)
        } else {
            Err(EnvelopeError::NotForUs { kids: self.recipients.iter().map(|(k, _)| k.clone()).collect() })
        }
    }

    fn unwrap_cek(
        &self,
        our: &AgreementKey,
        sender: Option<&X25519Public>,
        wrapped: &[u8],
    ) -> Option<Zeroizing<Vec<u8>>> {
        let ze = our.agree(&self.epk)?;
        let kek = match sender {
            Some(s) => {
                let zs = our.agree_static(s)?;
                concat_kdf(&[&ze[..], &zs[..]], AUTHCRYPT_ALG, &self.apu, &self.apv, Some(&self.tag))
            }
            None => concat_kdf(&[&ze[..]], ANONCRYPT_ALG, &self.apu, &self.apv, None),
        };
        let cek = Zeroizing::new(aes_kw::KekAes256::from(*kek).unwrap_vec(wrapped).ok()?);
        (cek.len() == self.enc.key_len()).then_some(cek)
    }

    fn decrypt_content(&self, cek: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
        let failed = |_| EnvelopeError::DecryptionFailed;
        match self.enc {
            ContentAlg::A256CbcHs512 => cbc_hs512_decrypt(cek, &self.iv, &self.aad, &self.ciphertext, &self.tag),
            ContentAlg::A256Gcm => {
                if self.iv.len() != 12 || self.tag.len() != 16 {
                    return Err(EnvelopeError::DecryptionFailed);
                }
                let cipher = aes_gcm::Aes256Gcm::new_from_slice(cek).map_err(|_| EnvelopeError::DecryptionFailed)?;
                let msg = [&self.ciphertext[..], &self.tag[..]].concat();
                cipher
                    .decrypt(aes_gcm::Nonce::from_slice(&self.iv), Payload { msg: &msg, aad: &self.aad })
                    .map_err(failed)
            }
            ContentAlg::XChaCha20Poly1305 => {
                if self.iv.len() != 24 || self.tag.len() != 16 {
                    return Err(EnvelopeError::DecryptionFailed);
                }
                let cipher = chacha20poly1305::XChaCha20Poly1305::new_from_slice(cek)
                    .map_err(|_| EnvelopeError::DecryptionFailed)?;
                let msg = [&self.ciphertext[..], &self.tag[..]].concat();
                cipher
                    .decrypt(chacha20poly1305::XNonce::from_slice(&self.iv), Payload { msg: &msg, aad: &self.aad })
                    .map_err(failed)
            }
        }
    }
}

/// A flattened JWE (RFC 7516 §7.2.2) as the general form with one recipient.
fn flatten_to_general(mut value: Value) -> Result<Value, EnvelopeError> {
    let obj = value.as_object_mut().ok_or_else(|| bad("not a JSON object"))?;
    if obj.contains_key("unprotected") {
        return Err(bad("a shared unprotected header (DIDComm protects every shared header)"));
    }
    if obj.contains_key("recipients") {
        return Ok(value);
    }
    let mut r = Map::new();
    for name in ["header", "encrypted_key"] {
        if let Some(v) = obj.remove(name) {
            r.insert(name.into(), v);
        }
    }
    obj.insert("recipients".into(), Value::Array(vec![Value::Object(r)]));
    Ok(value)
}

/// The Concat KDF of NIST SP 800-56A as JOSE uses it (RFC 7518 §4.6.2), for a 256-bit
/// key: one SHA-256 round over `1 ‖ Z ‖ AlgorithmID ‖ PartyUInfo ‖ PartyVInfo ‖
/// SuppPubInfo`, every variable field prefixed with its 32-bit length. For ECDH-1PU in
/// key wrapping mode, SuppPubInfo also carries the content tag, length-prefixed
/// (draft-madden-jose-ecdh-1pu-04 §2.3).
fn concat_kdf(z: &[&[u8]], alg: &str, apu: &[u8], apv: &[u8], tag: Option<&[u8]>) -> Zeroizing<[u8; 32]> {
    concat_kdf_bits(z, alg, apu, apv, 256, tag)
}

/// [`concat_kdf`] with any `keydatalen` up to 256 bits: the first `bits / 8` bytes are the key.
fn concat_kdf_bits(
    z: &[&[u8]],
    alg: &str,
    apu: &[u8],
    apv: &[u8],
    bits: u32,
    tag: Option<&[u8]>,
) -> Zeroizing<[u8; 32]> {
    let mut h = Sha256::new();
    h.update(1u32.to_be_bytes());
    for part in z {
        h.update(part);
    }
    for field in [alg.as_bytes(), apu, apv] {
        h.update((field.len() as u32).to_be_bytes());
        h.update(field);
    }
    h.update(bits.to_be_bytes());
    if let Some(tag) = tag {
        h.update((tag.len() as u32).to_be_bytes());
        h.update(tag);
    }
    Zeroizing::new(h.finalize().into())
}

type HmacSha512 = Hmac<Sha512>;

/// A256CBC-HS512 (RFC 7518 §5.2.5): the first half of the key authenticates, the second
/// encrypts; the tag is the first 32 bytes of HMAC-SHA-512(AAD ‖ IV ‖ C ‖ AL).
fn cbc_hs512_encrypt(key: &[u8; 64], iv: &[u8; 16], aad: &[u8], plaintext: &[u8]) -> (Vec<u8>, [u8; 32]) {
    let (mac_key, enc_key) = key.split_at(32);
    let ciphertext =
        cbc::Encryptor::<aes::Aes256>::new(enc_key.into(), iv.into()).encrypt_padded_vec_mut::<Pkcs7>(plaintext);
    let full = cbc_hs512_mac(mac_key, iv, aad, &ciphertext).finalize().into_bytes();
    let mut tag = [0u8; 32];
    tag.copy_from_slice(&full[..32]);
    (ciphertext, tag)
}

fn cbc_hs512_mac(mac_key: &[u8], iv: &[u8], aad: &[u8], ciphertext: &[u8]) -> HmacSha512 {
    // HMAC takes a key of any length; 32 bytes cannot fail.
    let mut mac = <HmacSha512 as Mac>::new_from_slice(mac_key).unwrap_or_else(|_| unreachable!());
    mac.update(aad);
    mac.update(iv);
    mac.update(ciphertext);
    mac.update(&((aad.len() as u64) * 8).to_be_bytes());
    mac
}

fn cbc_hs512_decrypt(
    key: &[u8],
    iv: &[u8],
    aad: &[u8],
    ciphertext: &[u8],
    tag: &[u8],
) -> Result<Vec<u8>, EnvelopeError> {
    if key.len() != 64 || iv.len() != 16 || tag.len() != 32 {
        return Err(EnvelopeError::DecryptionFailed);
    }
    let (mac_key, enc_key) = key.split_at(32);
    // Constant time, and before any decryption: no padding oracle.
    cbc_hs512_mac(mac_key, iv, aad, ciphertext)
        .verify_truncated_left(tag)
        .map_err(|_| EnvelopeError::DecryptionFailed)?;
    cbc::Decryptor::<aes::Aes256>::new(enc_key.into(), iv.into())
        .decrypt_padded_vec_mut::<Pkcs7>(ciphertext)
        .map_err(|_| EnvelopeError::DecryptionFailed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7518 Appendix B.3: AES_256_CBC_HMAC_SHA_512 test vector.
    #[test]
    fn a256cbc_hs512_matches_rfc7518_b3() {
        let key: Vec<u8> = (0u8..64).collect();
        let p = hex("41206369706865722073797374656d206d757374206e6f7420626520726571756972656420746f206265207365637265742c20616e64206974206d7573742062652061626c6520746f2066616c6c20696e746f207468652068616e6473206f662074686520656e656d7920776974686f757420696e636f6e76656e69656e6365");
        let iv = hex("1af38c2dc2b96ffdd86694092341bc04");
        let a = hex("546865207365636f6e64207072696e6369706c65206f662041756775737465204b6572636b686f666673");
        let (c, t) = cbc_hs512_encrypt(&key.clone().try_into().unwrap(), &iv.clone().try_into().unwrap(), &a, &p);
        assert_eq!(c, hex("4affaaadb78c31c5da4b1b590d10ffbd3dd8d5d302423526912da037ecbcc7bd822c301dd67c373bccb584ad3e9279c2e6d12a1374b77f077553df829410446b36ebd97066296ae6427ea75c2e0846a11a09ccf5370dc80bfecbad28c73f09b3a3b75e662a2594410ae496b2e2e6609e31e6e02cc837f053d21f37ff4f51950bbe2638d09dd7a4930930806d0703b1f6"));
        assert_eq!(t.to_vec(), hex("4dd3b4c088a7f45c216839645b2012bf2e6269a8c56a816dbc1b267761955bc5"));
        assert_eq!(cbc_hs512_decrypt(&key, &iv, &a, &c, &t).unwrap(), p);
        assert!(cbc_hs512_decrypt(&key, &iv, &a, &c, &t[..16]).is_err(), "a truncated tag is refused");
    }

    /// RFC 7518 Appendix C: the ECDH-ES Concat KDF example (A128GCM, direct mode).
    #[test]
    fn concat_kdf_layout_matches_rfc7518_c() {
        let z = [
            158, 86, 217, 29, 129, 113, 53, 211, 114, 131, 66, 131, 191, 132, 38, 156, 251, 49, 110, 163, 218, 128,
            106, 72, 246, 218, 167, 121, 140, 254, 144, 196,
        ];
        let key = concat_kdf_bits(&[&z], "A128GCM", b"Alice", b"Bob", 128, None);
        assert_eq!(b64url(&key[..16]), "VqqN6vgjbSBcIijNcacQGg");
    }

    #[test]
    fn remembered_static_agreements_are_the_agreements_and_bounded() {
        let ours = AgreementKey::new("did:example:a#x", X25519KeyPair::generate());
        let peers: Vec<X25519KeyPair> = (0..3).map(|_| X25519KeyPair::generate()).collect();
        for _ in 0..2 {
            for p in &peers {
                let direct = p.diffie_hellman(&ours.public()).unwrap();
                assert_eq!(*ours.agree_static(&p.public()).unwrap(), *direct);
            }
        }
        assert!(ours.agree_static(&X25519Public::from_bytes([0; 32])).is_none());
        for i in 0..AgreementKey::REMEMBERED + 5 {
            let mut b = [9u8; 32];
            b[..8].copy_from_slice(&(i as u64).to_le_bytes());
            let _ = ours.agree_static(&X25519Public::from_bytes(b));
        }
        assert!(ours.statics.lock().unwrap().len() <= AgreementKey::REMEMBERED);
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }
}
