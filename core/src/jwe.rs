//! Data sealed to one X25519 key: a compact JWE with `ECDH-ES` key agreement and `A256GCM`
//! content encryption (RFC 7516, RFC 7518 §4.6, RFC 8037), through `josekit`. Used where a
//! node hands secrets to another node through a third party (an account's move, whose
//! bundle travels through the user's wallet): only the holder of the private key reads
//! it, and no one can change it unnoticed.

use crate::ids::b64url;
use crate::keys::{X25519KeyPair, X25519Public};
use crate::CoreError;
use josekit::jwe::{JweHeader, ECDH_ES};
use josekit::jwk::Jwk;
use zeroize::Zeroizing;

fn sealed(why: impl std::fmt::Display) -> CoreError {
    CoreError::Sealed(format!("sealed data: {why}"))
}

/// `plaintext` sealed to `recipient`; `typ` names what it is, and [`open`] checks it.
pub fn seal(recipient: &X25519Public, typ: &str, plaintext: &[u8]) -> Result<String, CoreError> {
    let jwk = Jwk::from_map(match recipient.to_jwk() {
        serde_json::Value::Object(map) => map,
        _ => return Err(sealed("the recipient key is not a JWK")),
    })
    .map_err(sealed)?;
    let encrypter = ECDH_ES.encrypter_from_jwk(&jwk).map_err(sealed)?;
    let mut header = JweHeader::new();
    header.set_content_encryption("A256GCM");
    header.set_token_type(typ);
    josekit::jwe::serialize_compact(plaintext, &header, &encrypter).map_err(sealed)
}

/// The plaintext of a JWE sealed to `key` with [`seal`], if its `typ` is `typ` and it is at
/// most `max_len` bytes long.
pub fn open(key: &X25519KeyPair, typ: &str, jwe: &str, max_len: usize) -> Result<Zeroizing<Vec<u8>>, CoreError> {
    if jwe.len() > max_len {
        return Err(sealed(format!("it is over {max_len} bytes")));
    }
    let secret = key.secret();
    let private = serde_json::json!({
        "kty": "OKP", "crv": "X25519", "x": b64url(key.public().as_bytes()), "d": b64url(&secret),
    });
    let serde_json::Value::Object(map) = private else { return Err(sealed("the key is not a JWK")) };
    let jwk = Jwk::from_map(map).map_err(sealed)?;
    let decrypter = ECDH_ES.decrypter_from_jwk(&jwk).map_err(sealed)?;
    let (plaintext, header) = josekit::jwe::deserialize_compact(jwe, &decrypter)
        .map_err(|_| sealed("it was not sealed to this key, or it was changed"))?;
    if header.content_encryption() != Some("A256GCM") {
        return Err(sealed("its content encryption must be A256GCM"));
    }
    if header.token_type() != Some(typ) {
        return Err(sealed(format!("it is not a {typ}")));
    }
    Ok(Zeroizing::new(plaintext))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_data_opens_only_with_its_key_and_type() {
        let key = X25519KeyPair::generate();
        let jwe = seal(&key.public(), "test+jwe", b"the secret").expect("seal");
        assert!(!jwe.contains("secret"));
        assert_eq!(open(&key, "test+jwe", &jwe, 1 << 20).expect("open").as_slice(), b"the secret");
        assert!(open(&X25519KeyPair::generate(), "test+jwe", &jwe, 1 << 20).is_err(), "another key");
        assert!(open(&key, "other+jwe", &jwe, 1 << 20).is_err(), "another type");
        assert!(open(&key, "test+jwe", &jwe, 10).is_err(), "too long");
        // Any change to the ciphertext or the tag is refused.
        let mut parts: Vec<String> = jwe.split('.').map(str::to_owned).collect();
        let flipped = if parts[3].starts_with('A') { "B" } else { "A" };
        parts[3].replace_range(0..1, flipped);
        assert!(open(&key, "test+jwe", &parts.join("."), 1 << 20).is_err(), "a changed ciphertext");
        assert!(open(&key, "test+jwe", "not.a.jwe", 1 << 20).is_err());
        assert!(open(&key, "test+jwe", "", 1 << 20).is_err());
    }
}
