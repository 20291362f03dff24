//! Claims backed by credentials: a site may ask for facts that the user's credentials
//! carry. Each value comes from a credential the user holds that passes the verifier at
//! that moment (signature, validity period, status), and is released only with consent.
//!
//! - `membership` → `sichat_membership`, `friends` → `sichat_friend_of`: the issuers of
//!   the user's MembershipCredentials and FriendCredentials, as arrays (empty when none).
//! - `email` → `email` and `email_verified`: the `email` claim of a ProfileCredential the
//!   user holds (the one received last, when several are valid); nothing at all when the
//!   user holds none. `email_verified` is `false`: a ProfileCredential says who vouched for
//!   the address (its issuer, shown on the consent page), not that anyone proved the user
//!   receives mail there, and no credential type of ours attests that.

use crate::OidcError;
use serde::Serialize;
use serde_json::{json, Map, Value};
use sichat_core::db::Db;
use sichat_verifier::{Options, Verifier};
use sqlx::Row;

/// Where a backed claim's value comes from in a credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The credential's issuer (a DID); the claim is an array of them.
    Issuer,
    /// A string claim of the credential's subject; the claim is one value, released only
    /// when a credential has it, with `verified` (if any) set to `false` beside it.
    Subject { field: &'static str, verified: Option<&'static str> },
}

/// A claim that credentials back: its name, the scope that asks for it, the credential
/// type that carries it, and where in that credential its value is.
pub struct Backed {
    pub claim: &'static str,
    pub scope: &'static str,
    pub credential_type: &'static str,
    pub describe: &'static str,
    pub source: Source,
}

pub const BACKED: &[Backed] = &[
    Backed {
        claim: "sichat_membership",
        scope: "membership",
        credential_type: "MembershipCredential",
        describe: "the nodes you are a member of",
        source: Source::Issuer,
    },
    Backed {
        claim: "sichat_friend_of",
        scope: "friends",
        credential_type: "FriendCredential",
        describe: "who vouches for you as a friend",
        source: Source::Issuer,
    },
    Backed {
        claim: "email",
        scope: "email",
        credential_type: "ProfileCredential",
        describe: "your email address",
        source: Source::Subject { field: "email", verified: Some("email_verified") },
    },
];

pub fn scopes() -> impl Iterator<Item = &'static str> {
    BACKED.iter().map(|b| b.scope)
}

/// One value of a backed claim and the credential behind it.
#[derive(Debug, Clone, Serialize)]
pub struct Evidence {
    pub claim: &'static str,
    pub value: String,
    pub credential_id: String,
    pub credential_type: &'static str,
    /// Who issued the credential (who vouches for the value).
    pub issuer: String,
}

/// The scopes a `claims` request parameter (OIDC Core §5.5) asks for: each backed claim
/// named under `id_token` or `userinfo` brings its scope. Other claims are ignored, as
/// the spec allows.
pub fn scopes_in_claims_parameter(claims: &str) -> Result<Vec<&'static str>, String> {
    let v: Value = serde_json::from_str(claims).map_err(|e| format!("claims is not JSON: {e}"))?;
    let obj = v.as_object().ok_or("claims must be a JSON object")?;
    let mut out = Vec::new();
    for (member, requested) in obj {
        if !["id_token", "userinfo"].contains(&member.as_str()) {
            continue;
        }
        let requested = requested.as_object().ok_or(format!("claims.{member} must be an object"))?;
        for b in BACKED {
            let flag = match b.source {
                Source::Subject { verified: Some(f), .. } => requested.contains_key(f),
                _ => false,
            };
            if (requested.contains_key(b.claim) || flag) && !out.contains(&b.scope) {
                out.push(b.scope);
            }
        }
    }
    Ok(out)
}

/// The evidence for the backed claims that `scopes` asks for: every credential of the
/// user, of a type that backs one, that verifies now.
pub async fn evidence(
    db: &Db,
    verifier: &Verifier,
    user_id: &str,
    scopes: &[&str],
) -> Result<Vec<Evidence>, OidcError> {
    let wanted: Vec<&Backed> = BACKED.iter().filter(|b| scopes.contains(&b.scope)).collect();
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    // Newest first: where a claim takes one value, the credential received last gives it.
    let mut held: Vec<(String, String, String)> = Vec::new();
    for r in sqlx::query(
        "SELECT id, format, credential FROM holder_credentials WHERE user_id = $1 ORDER BY received_at DESC, id",
    )
    .bind(user_id)
    .fetch_all(db.pool())
    .await?
    {
        held.push((r.try_get("id")?, r.try_get("format")?, r.try_get("credential")?));
    }
    // The node's own MembershipCredential for the user counts even if no wallet stored it.
    for r in sqlx::query("SELECT id, credential FROM issuer_memberships WHERE user_id = $1")
        .bind(user_id)
        .fetch_all(db.pool())
        .await?
    {
        let id: String = r.try_get("id")?;
        if !held.iter().any(|(h, _, _)| *h == id) {
            held.push((id, "vc+jwt".into(), r.try_get("credential")?));
        }
    }
    let mut out = Vec::new();
    for (id, format, text) in held {
        let report = verifier.verify_credential(&format, &text, &Options::default()).await;
        if !report.valid {
            continue;
        }
        let Some(issuer) = report.issuer.clone() else { continue };
        for b in wanted.iter().filter(|b| report.types.iter().any(|t| t == b.credential_type)) {
            let value = match b.source {
                Source::Issuer => issuer.clone(),
                Source::Subject { field, .. } => {
                    // One value: the first credential that has it wins.
                    if out.iter().any(|e: &Evidence| e.claim == b.claim) {
                        continue;
                    }
                    let v = report.subject.as_ref().and_then(|s| s.get(field)).and_then(Value::as_str);
                    match v.map(str::trim).filter(|v| !v.is_empty()) {
                        Some(v) => v.to_owned(),
                        None => continue,
                    }
                }
            };
            if !out.iter().any(|e: &Evidence| e.claim == b.claim && e.value == value) {
                out.push(Evidence {
                    claim: b.claim,
                    value,
                    credential_id: id.clone(),
                    credential_type: b.credential_type,
                    issuer: issuer.clone(),
                });
            }
        }
    }
    Ok(out)
}

/// The claims object for `evidence`. A claim from issuers is an array of values; asked for
/// with no valid credential it is an empty array, so a site can tell "none" from "not
/// released". A claim from a subject's field is one value, left out when no valid
/// credential has it (OIDC Core §5.3.2: claims without a value are omitted).
pub fn as_claims(scopes: &[&str], evidence: &[Evidence]) -> Map<String, Value> {
    let mut out = Map::new();
    for b in BACKED.iter().filter(|b| scopes.contains(&b.scope)) {
        let mut values = evidence.iter().filter(|e| e.claim == b.claim).map(|e| e.value.as_str());
        match b.source {
            Source::Issuer => {
                out.insert(b.claim.to_owned(), json!(values.collect::<Vec<_>>()));
            }
            Source::Subject { verified, .. } => {
                if let Some(v) = values.next() {
                    out.insert(b.claim.to_owned(), json!(v));
                    if let Some(flag) = verified {
                        out.insert(flag.to_owned(), json!(false));
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evidence(claim: &'static str, value: &str, credential_type: &'static str) -> Evidence {
        Evidence {
            claim,
            value: value.into(),
            credential_id: format!("urn:uuid:{value}"),
            credential_type,
            issuer: "did:web:example.org:users:alice".into(),
        }
    }

    #[test]
    fn email_is_one_unverified_value_or_nothing() {
        let scopes = ["openid", "email", "friends"];
        let none = as_claims(&scopes, &[]);
        assert_eq!(Value::Object(none), json!({"sichat_friend_of": []}), "no email claim at all without one");

        let held = [
            evidence("email", "bob@example.org", "ProfileCredential"),
            evidence("email", "old@example.org", "ProfileCredential"),
            evidence("sichat_friend_of", "did:web:example.org:users:alice", "FriendCredential"),
        ];
        assert_eq!(
            Value::Object(as_claims(&scopes, &held)),
            json!({
                "email": "bob@example.org",
                "email_verified": false,
                "sichat_friend_of": ["did:web:example.org:users:alice"],
            })
        );
        assert!(as_claims(&["openid"], &held).is_empty(), "nothing without the scopes");
    }

    #[test]
    fn the_claims_parameter_asks_for_email_by_either_name() {
        let asked = json!({"userinfo": {"email": null}}).to_string();
        assert_eq!(scopes_in_claims_parameter(&asked).unwrap(), ["email"]);
        let asked = json!({"id_token": {"email_verified": {"essential": true}}}).to_string();
        assert_eq!(scopes_in_claims_parameter(&asked).unwrap(), ["email"]);
        let asked = json!({"id_token": {"name": null}}).to_string();
        assert!(scopes_in_claims_parameter(&asked).unwrap().is_empty());
    }
}
