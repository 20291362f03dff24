//! Claims backed by credentials: a site may ask for facts that the user's credentials
//! carry. Each value comes from a credential the user holds that passes the verifier at
//! that moment (signature, validity period, status), and is released only with consent.

use crate::OidcError;
use serde::Serialize;
use serde_json::{json, Map, Value};
use sichat_core::db::Db;
use sichat_verifier::{Options, Verifier};
use sqlx::Row;

/// A claim that credentials back: its name, the scope that asks for it, and the credential
/// type whose issuer is its value.
pub struct Backed {
    pub claim: &'static str,
    pub scope: &'static str,
    pub credential_type: &'static str,
    pub describe: &'static str,
}

pub const BACKED: &[Backed] = &[
    Backed {
        claim: "sichat_membership",
        scope: "membership",
        credential_type: "MembershipCredential",
        describe: "the nodes you are a member of",
    },
    Backed {
        claim: "sichat_friend_of",
        scope: "friends",
        credential_type: "FriendCredential",
        describe: "who vouches for you as a friend",
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
            if requested.contains_key(b.claim) && !out.contains(&b.scope) {
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
    let mut held: Vec<(String, String, String)> = Vec::new();
    for r in sqlx::query("SELECT id, format, credential FROM holder_credentials WHERE user_id = $1")
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
            if !out.iter().any(|e: &Evidence| e.claim == b.claim && e.value == issuer) {
                out.push(Evidence {
                    claim: b.claim,
                    value: issuer.clone(),
                    credential_id: id.clone(),
                    credential_type: b.credential_type,
                });
            }
        }
    }
    Ok(out)
}

/// The claims object for `evidence`: each backed claim as an array of values. A claim
/// that was asked for but has no valid credential is an empty array, so a site can tell
/// "none" from "not released".
pub fn as_claims(scopes: &[&str], evidence: &[Evidence]) -> Map<String, Value> {
    let mut out = Map::new();
    for b in BACKED.iter().filter(|b| scopes.contains(&b.scope)) {
        let values: Vec<&str> = evidence.iter().filter(|e| e.claim == b.claim).map(|e| e.value.as_str()).collect();
        out.insert(b.claim.to_owned(), json!(values));
    }
    out
}
