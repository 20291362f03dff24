//! Bitstring Status List v1.0: a gzip-compressed bitstring, base64url with the multibase
//! prefix `u`. Index 0 is the left-most (most significant) bit of the first byte.

use crate::IssuerError;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use sichat_core::ids::{b64url, b64url_decode};
use std::io::{Read, Write};

/// Entries per list: the specification's minimum, which gives holders group privacy.
pub const LIST_SIZE: usize = 131_072;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Revocation,
    Suspension,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Revocation => "revocation",
            Self::Suspension => "suspension",
        }
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct Bitstring(Vec<u8>);

impl std::fmt::Debug for Bitstring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set: u32 = self.0.iter().map(|b| b.count_ones()).sum();
        write!(f, "Bitstring({} bits, {set} set)", self.len())
    }
}

impl Bitstring {
    pub fn new(bits: usize) -> Self {
        Self(vec![0; bits.div_ceil(8)])
    }

    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len() * 8
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, index: usize) -> Option<bool> {
        self.0.get(index / 8).map(|b| b & (0x80 >> (index % 8)) != 0)
    }

    pub fn set(&mut self, index: usize, value: bool) -> Result<(), IssuerError> {
        let byte =
            self.0.get_mut(index / 8).ok_or_else(|| IssuerError::Internal(format!("index {index} out of range")))?;
        let mask = 0x80 >> (index % 8);
        if value {
            *byte |= mask;
        } else {
            *byte &= !mask;
        }
        Ok(())
    }

    /// `encodedList`: multibase base64url (`u…`) of the GZIP-compressed bitstring.
    pub fn encode(&self) -> String {
        let mut gz = GzEncoder::new(Vec::new(), Compression::default());
        // Writing to a Vec cannot fail.
        let _ = gz.write_all(&self.0);
        format!("u{}", b64url(&gz.finish().unwrap_or_default()))
    }

    /// Decode an `encodedList`, refusing anything that inflates past `max_bytes`.
    pub fn decode(encoded: &str, max_bytes: usize) -> Result<Self, IssuerError> {
        let bad = |why: &str| IssuerError::InvalidRequest(format!("encodedList: {why}"));
        let body = encoded.strip_prefix('u').ok_or_else(|| bad("must be multibase base64url (start with 'u')"))?;
        let gz = b64url_decode(body).ok_or_else(|| bad("not base64url"))?;
        let mut out = Vec::new();
        GzDecoder::new(&gz[..]).take(max_bytes as u64 + 1).read_to_end(&mut out).map_err(|_| bad("not GZIP"))?;
        if out.len() > max_bytes {
            return Err(bad("larger than allowed"));
        }
        Ok(Self(out))
    }
}

/// The `BitstringStatusListCredential` a list is served as (signed as `vc+jwt`), at `url`,
/// by `issuer`, as of `updated_at`: the node serves it, and a wallet whose node is gone
/// re-signs it on a static host (`sichat site revoke`).
pub fn list_credential(url: &str, issuer: &str, purpose: &str, bits: &Bitstring, updated_at: i64) -> serde_json::Value {
    serde_json::json!({
        "@context": [crate::credential::VCDM2_CONTEXT],
        "id": url,
        "type": ["VerifiableCredential", "BitstringStatusListCredential"],
        "issuer": issuer,
        "validFrom": crate::credential::rfc3339(updated_at),
        "credentialSubject": {
            "id": format!("{url}#list"),
            "type": "BitstringStatusList",
            "statusPurpose": purpose,
            "encodedList": bits.encode(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_are_msb_first_and_round_trip_through_the_encoding() {
        let mut b = Bitstring::new(LIST_SIZE);
        b.set(0, true).unwrap();
        b.set(9, true).unwrap();
        b.set(LIST_SIZE - 1, true).unwrap();
        assert_eq!(b.as_bytes()[0], 0x80);
        assert_eq!(b.as_bytes()[1], 0x40);
        let enc = b.encode();
        assert!(enc.starts_with("uH4sI"), "gzip magic in base64url: {enc}");
        let d = Bitstring::decode(&enc, LIST_SIZE / 8).unwrap();
        assert_eq!(d, b);
        assert_eq!(d.get(9), Some(true));
        assert_eq!(d.get(10), Some(false));
        assert_eq!(d.get(LIST_SIZE), None);
        assert!(b.set(LIST_SIZE, true).is_err());
        b.set(0, false).unwrap();
        assert_eq!(b.get(0), Some(false));
    }

    #[test]
    fn decoding_refuses_junk_and_zip_bombs() {
        assert!(Bitstring::decode("zabc", 10).is_err());
        assert!(Bitstring::decode("u!!!", 10).is_err());
        assert!(Bitstring::decode(&format!("u{}", b64url(b"not gzip")), 10).is_err());
        let big = Bitstring::new(8 * 1024 * 1024).encode();
        assert!(Bitstring::decode(&big, LIST_SIZE / 8).is_err());
    }
}
