//! After the node was restored from a backup, credentials the account issued since are not in
//! its issuance log: they verify, but their issuer can no longer revoke them, and a revocation
//! made since is undone. The issuing wallet keeps a copy of what it issued and of the status
//! it set, and hands them back (`POST /api/v1/issuer/credentials/reinstate`). Each must be
//! signed by one of the account's issuing keys; its status entries take back their indexes
//! (lists that were lost are made again, empty, under their old ids) and a revocation the
//! log lacks is applied again. Nothing else is taken on the wallet's word.

use crate::error::IssuerError;
use crate::service::Issuer;
use crate::status::{Bitstring, Purpose, LIST_SIZE};
use crate::store::{self, CredentialRow};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sichat_accounts::service::AuthDevice;
use sichat_core::db::Backend;
use sichat_core::ids::now_ms;
use sichat_core::jws;

/// Most credentials one request carries.
pub const MAX_REINSTATE: usize = 50;

/// A credential as the issuing wallet kept it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeptCredential {
    /// `vc+jwt` or `ldp_vc`.
    pub format: String,
    pub credential: String,
    /// What the wallet last set: `active`, `suspended` or `revoked`.
    pub status: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reinstate {
    pub credentials: Vec<KeptCredential>,
}

/// What became of one credential: `known` (the log has it), `reinstated`, `revoked` (the log
/// had it active; the wallet's revocation is applied again) or `refused`, with why.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Reinstated {
    pub id: String,
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

/// One status entry of a credential: its list id and index.
struct Entry {
    purpose: Purpose,
    list: String,
    index: usize,
}

/// What a credential says of itself, once its signature is the account's.
struct Parsed {
    id: String,
    issuer: String,
    type_name: String,
    subject: String,
    claims: Value,
    issued_at: i64,
    valid_until: Option<i64>,
    entries: Vec<Entry>,
}

impl Issuer {
    pub async fn reinstate(&self, me: &AuthDevice, req: &Reinstate) -> Result<Vec<Reinstated>, IssuerError> {
        if req.credentials.is_empty() || req.credentials.len() > MAX_REINSTATE {
            return Err(IssuerError::InvalidRequest(format!("send 1 to {MAX_REINSTATE} credentials")));
        }
        let mut out = Vec::with_capacity(req.credentials.len());
        for kept in &req.credentials {
            let parsed = match self.check_own(me, kept).await {
                Ok(p) => p,
                Err(why) => {
                    out.push(Reinstated { id: String::new(), outcome: "refused".into(), why: Some(why) });
                    continue;
                }
            };
            let id = parsed.id.clone();
            out.push(match self.put_back(me, parsed, &kept.status, &kept.format).await? {
                Ok(outcome) => Reinstated { id, outcome: outcome.into(), why: None },
                Err(why) => Reinstated { id, outcome: "refused".into(), why: Some(why) },
            });
        }
        Ok(out)
    }

    /// The credential, if one of the account's issuing keys signed it.
    async fn check_own(&self, me: &AuthDevice, kept: &KeptCredential) -> Result<Parsed, String> {
        if !matches!(kept.status.as_str(), "active" | "suspended" | "revoked") {
            return Err(format!("unknown status {:?}", kept.status));
        }
        let (vc, kid) = match kept.format.as_str() {
            "vc+jwt" => {
                let kid = jws::header_of(&kept.credential)
                    .ok()
                    .and_then(|h| h.get("kid").and_then(Value::as_str).map(str::to_owned))
                    .ok_or("a vc+jwt naming no key")?;
                let key = self.own_key(me, &kid).await?;
                let vc: Value = jws::verify_with(&kept.credential, &key, "vc+jwt").map_err(|e| e.to_string())?;
                (vc, kid)
            }
            "ldp_vc" => {
                let vc = sichat_core::json::from_str_bounded::<Value>(&kept.credential, sichat_core::json::MAX_DEPTH)
                    .map_err(|e| e.to_string())?;
                let (_, kid) = crate::data_integrity::proof_of(&vc)?;
                let key = self.own_key(me, &kid).await?;
                let method = crate::data_integrity::Method { id: kid.clone(), key };
                let purpose = crate::data_integrity::ProofPurpose::Assertion;
                crate::data_integrity::verify(&vc, &method, purpose, &Default::default()).await?;
                (vc, kid)
            }
            other => return Err(format!("unknown format {other:?}")),
        };
        parse(&vc, &kid, &self.list_url(&me.user_name, ""))
    }

    async fn own_key(&self, me: &AuthDevice, kid: &str) -> Result<sichat_core::p256key::PublicKey, String> {
        self.accounts
            .issuing_public_key(&me.user_id, kid)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("{kid} is not one of your issuing keys"))
    }

    /// Put the credential back in the log; `Err` says why not (an index another holds).
    async fn put_back(
        &self,
        me: &AuthDevice,
        p: Parsed,
        status: &str,
        format: &str,
    ) -> Result<Result<&'static str, String>, IssuerError> {
        let pg = self.db.backend() == Backend::Postgres;
        let mut tx = self.db.pool().begin().await?;
        self.accounts.hold_unless_moving(&mut tx, &me.user_id).await?;
        if let Some(row) = store::credential(&mut tx, &p.id, &me.user_id).await? {
            // A revocation the restored log lacks is applied again; nothing else is undone.
            if status != "revoked" || row.status == "revoked" {
                return Ok(Ok("known"));
            }
            set_bit(&mut tx, &row.revocation_list, row.revocation_index as usize, pg).await?;
            store::set_status(&mut tx, &p.id, "revoked").await?;
            tx.commit().await?;
            return Ok(Ok("revoked"));
        }
        let Some(revocation) = p.entries.iter().find(|e| e.purpose == Purpose::Revocation) else {
            return Ok(Err("the credential has no revocation entry of this node".into()));
        };
        let suspension = p.entries.iter().find(|e| e.purpose == Purpose::Suspension);
        for e in std::iter::once(revocation).chain(suspension) {
            match store::list(&mut tx, &e.list, pg).await? {
                Some(list) if list.user_id != me.user_id => return Ok(Err(format!("list {} is not yours", e.list))),
                Some(_) => {
                    if store::index_taken(&mut tx, &e.list, e.index as i64).await? {
                        return Ok(Err(format!("index {} of list {} is another credential's", e.index, e.list)));
                    }
                }
                None => {
                    let bits = Bitstring::new(LIST_SIZE);
                    store::insert_list(&mut tx, &e.list, &me.user_id, e.purpose, &p.issuer, bits.as_bytes(), now_ms())
                        .await?;
                }
            }
        }
        let row = CredentialRow {
            id: p.id.clone(),
            user_id: me.user_id.clone(),
            type_name: p.type_name,
            subject: p.subject,
            claims: p.claims.to_string(),
            revocation_list: revocation.list.clone(),
            revocation_index: revocation.index as i64,
            suspension_list: suspension.map(|s| s.list.clone()),
            suspension_index: suspension.map(|s| s.index as i64),
            status: status.to_owned(),
            issued_at: p.issued_at,
            valid_until: p.valid_until,
            format: format.to_owned(),
        };
        store::insert_credential(&mut tx, &row).await?;
        match (status, suspension) {
            ("revoked", _) => set_bit(&mut tx, &revocation.list, revocation.index, pg).await?,
            ("suspended", Some(s)) => set_bit(&mut tx, &s.list, s.index, pg).await?,
            _ => {}
        }
        tx.commit().await?;
        tracing::info!(credential = %p.id, status, "credential put back in the issuance log");
        Ok(Ok("reinstated"))
    }
}

async fn set_bit(tx: &mut store::Conn, list: &str, index: usize, pg: bool) -> Result<(), IssuerError> {
    let stored = store::list(tx, list, pg).await?.ok_or_else(|| IssuerError::Internal("status list missing".into()))?;
    let mut bits = Bitstring::from_bytes(stored.bits);
    bits.set(index, true)?;
    store::save_bits(tx, list, bits.as_bytes(), now_ms()).await?;
    Ok(())
}

/// Read a kept credential's document as `reinstate` does, once its signature checked out:
/// its id, or why it is refused. For the fuzz target.
pub fn read_kept(vc: &Value, kid: &str, lists: &str) -> Result<String, String> {
    parse(vc, kid, lists).map(|p| p.id)
}

/// The fields of a credential this node issued, its status entries under `lists` (the
/// account's status list URL with the list id left off).
fn parse(vc: &Value, kid: &str, lists: &str) -> Result<Parsed, String> {
    let text = |v: &Value, what: &str| v.as_str().map(str::to_owned).ok_or_else(|| format!("no {what}"));
    let id = text(&vc["id"], "id")?.trim_start_matches("urn:uuid:").to_owned();
    if id.is_empty() || id.len() > 64 {
        return Err("a credential id of 1 to 64 characters".into());
    }
    let issuer = match &vc["issuer"] {
        Value::Object(o) => o.get("id").and_then(Value::as_str).unwrap_or_default().to_owned(),
        other => text(other, "issuer")?,
    };
    if !kid.starts_with(&format!("{issuer}#")) {
        return Err(format!("signed by {kid}, not by its issuer {issuer}"));
    }
    let types: Vec<&str> =
        vc["type"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    let type_name = types.iter().find(|t| **t != "VerifiableCredential").ok_or("no credential type")?.to_string();
    let mut claims = vc["credentialSubject"].clone();
    let subject = text(&claims["id"], "credentialSubject.id")?;
    if let Some(o) = claims.as_object_mut() {
        o.remove("id");
    }
    let time = |v: &Value| -> Option<i64> {
        let t = time::OffsetDateTime::parse(v.as_str()?, &time::format_description::well_known::Rfc3339).ok()?;
        Some((t.unix_timestamp_nanos() / 1_000_000) as i64)
    };
    let issued_at = time(&vc["validFrom"]).ok_or("no validFrom")?;
    let valid_until = time(&vc["validUntil"]);
    let statuses = match &vc["credentialStatus"] {
        Value::Array(a) => a.clone(),
        Value::Null => Vec::new(),
        one => vec![one.clone()],
    };
    let mut entries = Vec::new();
    for s in &statuses {
        let purpose = match s["statusPurpose"].as_str() {
            Some("revocation") => Purpose::Revocation,
            Some("suspension") => Purpose::Suspension,
            _ => continue,
        };
        let url = text(&s["statusListCredential"], "statusListCredential")?;
        let Some(list) = url.strip_prefix(lists).filter(|l| !l.is_empty() && l.len() <= 64 && !l.contains('/')) else {
            return Err(format!("its status list {url} is not one of this account's here"));
        };
        let index: usize =
            text(&s["statusListIndex"], "statusListIndex")?.parse().map_err(|_| "a bad statusListIndex")?;
        if index >= LIST_SIZE {
            return Err("a statusListIndex past the list".into());
        }
        entries.push(Entry { purpose, list: list.to_owned(), index });
    }
    Ok(Parsed { id, issuer, type_name, subject, claims, issued_at, valid_until, entries })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const KID: &str = "did:web:n.example:users:alice#issuing-1";
    const LISTS: &str = "https://n.example/users/alice/status/";

    fn vc() -> Value {
        json!({
            "id": "urn:uuid:abc",
            "type": ["VerifiableCredential", "FriendCredential"],
            "issuer": "did:web:n.example:users:alice",
            "validFrom": "2026-12-04T10:00:00Z",
            "credentialSubject": {"id": "did:key:z6Mk", "name": "Bob"},
            "credentialStatus": [{"statusPurpose": "revocation", "statusListIndex": "42",
                "statusListCredential": "https://n.example/users/alice/status/L1"}],
        })
    }

    #[test]
    fn a_credential_of_this_account_reads_and_others_do_not() {
        let p = parse(&vc(), KID, LISTS).unwrap();
        assert_eq!(
            (p.id.as_str(), p.type_name.as_str(), p.subject.as_str()),
            ("abc", "FriendCredential", "did:key:z6Mk")
        );
        assert_eq!((p.entries[0].list.as_str(), p.entries[0].index), ("L1", 42));
        assert_eq!(p.claims, json!({"name": "Bob"}));

        let mut other = vc();
        other["issuer"] = json!("did:web:n.example:users:mallory");
        assert!(parse(&other, KID, LISTS).is_err(), "signed by another issuer's key");
        let mut foreign = vc();
        foreign["credentialStatus"][0]["statusListCredential"] = json!("https://elsewhere.example/status/L1");
        assert!(parse(&foreign, KID, LISTS).is_err(), "a list of another node");
        let mut past = vc();
        past["credentialStatus"][0]["statusListIndex"] = json!("131072");
        assert!(parse(&past, KID, LISTS).is_err(), "past the list");
        let mut nested = vc();
        nested["credentialStatus"][0]["statusListCredential"] = json!("https://n.example/users/alice/status/a/b");
        assert!(parse(&nested, KID, LISTS).is_err());
        let mut undated = vc();
        undated["validFrom"] = json!("yesterday");
        assert!(parse(&undated, KID, LISTS).is_err());
    }
}
