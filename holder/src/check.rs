//! Checking a received credential (`vc+jwt` or Data Integrity): the issuer's key, the
//! subject, and the status lists.

use crate::HolderError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sichat_core::jws;
use sichat_core::p256key::PublicKey;
use sichat_core::resolver::{Relationship, Resolver};
use sichat_issuer::data_integrity;
use sichat_issuer::status::{Bitstring, LIST_SIZE};

/// The key an issuer's DID lists for `kid` under `assertionMethod`.
pub async fn issuer_key(resolver: &Resolver, kid: &str) -> Result<PublicKey, HolderError> {
    let (did, _) = kid
        .split_once('#')
        .ok_or_else(|| HolderError::BadCredential("kid must be a DID URL with a fragment".into()))?;
    let keys = resolver.resolve(did).await.map_err(|e| HolderError::BadCredential(e.to_string()))?;
    keys.key_for(kid, Relationship::AssertionMethod).map_err(|e| HolderError::BadCredential(e.to_string()))
}

fn header(jwt: &str) -> Result<Value, HolderError> {
    let part = jwt.split('.').next().unwrap_or_default();
    sichat_core::ids::b64url_decode(part)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| HolderError::BadCredential("not a compact JWS".into()))
}

/// Verify a `vc+jwt` signed by its issuer's assertion key; returns the credential.
pub async fn verify_vc_jwt(resolver: &Resolver, jwt: &str) -> Result<Value, HolderError> {
    let kid = header(jwt)?
        .get("kid")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| HolderError::BadCredential("the credential names no kid".into()))?;
    let key = issuer_key(resolver, &kid).await?;
    let vc: Value =
        jws::verify_with(jwt, &key, "vc+jwt").map_err(|e| HolderError::BadCredential(format!("signature: {e}")))?;
    if issuer_of(&vc) != kid.split('#').next() {
        return Err(HolderError::BadCredential("the credential's issuer is not the signer's DID".into()));
    }
    Ok(vc)
}

/// The issuer DID a credential names (`issuer` as a string or as an object's `id`).
pub fn issuer_of(vc: &Value) -> Option<&str> {
    vc.get("issuer").and_then(|i| i.as_str().or_else(|| i.get("id").and_then(Value::as_str)))
}

/// A credential's content, unverified: the JWS payload, or the JSON document.
pub fn unverified(format: &str, credential: &str) -> Result<Value, HolderError> {
    match format {
        "vc+jwt" => Ok(jws::unverified_payload(credential)?),
        "ldp_vc" => {
            let vc = sichat_core::json::from_str_bounded(credential, sichat_core::json::MAX_DEPTH)
                .map_err(|e| HolderError::BadCredential(format!("not a JSON credential: {e}")))?;
            // A Data Integrity credential must fit what its proof check will accept.
            data_integrity::check_bounds(&vc).map_err(HolderError::BadCredential)?;
            Ok(vc)
        }
        other => Err(HolderError::BadCredential(format!("unknown credential format {other}"))),
    }
}

/// Verify a credential in either format; returns the credential.
pub async fn verify_credential(resolver: &Resolver, format: &str, credential: &str) -> Result<Value, HolderError> {
    match format {
        "vc+jwt" => verify_vc_jwt(resolver, credential).await,
        "ldp_vc" => verify_ldp_vc(resolver, credential).await,
        other => Err(HolderError::BadCredential(format!("unknown credential format {other}"))),
    }
}

/// Verify a Data Integrity credential against its issuer's `assertionMethod` key.
pub async fn verify_ldp_vc(resolver: &Resolver, text: &str) -> Result<Value, HolderError> {
    let vc = unverified("ldp_vc", text)?;
    let (_, method_id) = data_integrity::proof_of(&vc).map_err(HolderError::BadCredential)?;
    let key = issuer_key(resolver, &method_id).await?;
    let mut contexts = data_integrity::Contexts::new();
    for url in data_integrity::remote_contexts(&vc) {
        contexts.insert(url.clone(), resolver.fetcher().get_json(&url).await?.to_string());
    }
    let method = data_integrity::Method { id: method_id.clone(), key };
    data_integrity::verify(&vc, &method, data_integrity::ProofPurpose::Assertion, &contexts)
        .await
        .map_err(|e| HolderError::BadCredential(format!("proof: {e}")))?;
    if issuer_of(&vc) != method_id.split('#').next() {
        return Err(HolderError::BadCredential("the credential's issuer is not the signer's DID".into()));
    }
    Ok(vc)
}

/// The status of a credential, from its status list entries.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Status {
    /// `active`, `revoked`, `suspended`, `expired`, `not yet valid`, or `unknown (…)`.
    pub state: String,
    pub revoked: bool,
    pub suspended: bool,
}

/// Fetch every status list a credential points at, check each list's signature by the
/// credential's issuer, and read the bits. Validity dates count too.
pub async fn status(resolver: &Resolver, vc: &Value, now_ms: i64) -> Status {
    match status_inner(resolver, vc).await {
        Ok((revoked, suspended)) => {
            let date = |k: &str| vc.get(k).and_then(Value::as_str).and_then(parse_rfc3339_ms);
            let state = if revoked {
                "revoked"
            } else if suspended {
                "suspended"
            } else if date("validUntil").is_some_and(|t| t <= now_ms) {
                "expired"
            } else if date("validFrom").is_some_and(|t| t > now_ms) {
                "not yet valid"
            } else {
                "active"
            };
            Status { state: state.into(), revoked, suspended }
        }
        Err(e) => Status { state: format!("unknown ({e})"), revoked: false, suspended: false },
    }
}

async fn status_inner(resolver: &Resolver, vc: &Value) -> Result<(bool, bool), HolderError> {
    let issuer = issuer_of(vc).unwrap_or_default();
    let entries = match vc.get("credentialStatus") {
        Some(Value::Array(a)) => a.clone(),
        Some(one @ Value::Object(_)) => vec![one.clone()],
        _ => Vec::new(),
    };
    let (mut revoked, mut suspended) = (false, false);
    for e in entries {
        let url = e
            .get("statusListCredential")
            .and_then(Value::as_str)
            .ok_or_else(|| HolderError::BadCredential("status entry without a list".into()))?;
        let index: usize = e
            .get("statusListIndex")
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| HolderError::BadCredential("status entry without a valid index".into()))?;
        let purpose = e.get("statusPurpose").and_then(Value::as_str).unwrap_or_default();
        let body = resolver.fetcher().get(url, "application/vc+jwt").await?;
        let jwt =
            std::str::from_utf8(&body).map_err(|_| HolderError::BadCredential("status list is not text".into()))?;
        let list = verify_vc_jwt(resolver, jwt).await?;
        if list.get("issuer").and_then(Value::as_str) != Some(issuer) {
            return Err(HolderError::BadCredential("the status list has another issuer".into()));
        }
        let subject = &list["credentialSubject"];
        if subject.get("statusPurpose").and_then(Value::as_str) != Some(purpose) {
            return Err(HolderError::BadCredential("the status list's purpose does not match the entry".into()));
        }
        let encoded = subject.get("encodedList").and_then(Value::as_str).unwrap_or_default();
        let bits =
            Bitstring::decode(encoded, 16 * LIST_SIZE / 8).map_err(|e| HolderError::BadCredential(e.to_string()))?;
        let set = bits.get(index).ok_or_else(|| HolderError::BadCredential("status index beyond the list".into()))?;
        match purpose {
            "revocation" => revoked |= set,
            "suspension" => suspended |= set,
            _ => {}
        }
    }
    Ok((revoked, suspended))
}

/// An RFC 3339 date-time (as VCDM's `validFrom`/`validUntil`) to unix milliseconds.
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339_ms("2000-03-01T00:00:01Z"), Some(951_868_801_000));
        assert_eq!(parse_rfc3339_ms("2000-03-01"), None);
    }
}
