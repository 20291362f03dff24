//! MembershipCredential: membership of this node, issued by the node with its node key.
//!
//! Its status list lives at `<public url>/status/<list>` and is computed from account
//! state when served: the bit of every removed account's membership is set. Nothing is
//! stored twice, and removing an account revokes its membership at once.

use crate::credential::{self, Draft, StatusEntry};
use crate::service::{Issued, Issuer, ServedList};
use crate::status::{Bitstring, LIST_SIZE};
use crate::types::{self, CredentialType};
use crate::IssuerError;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sichat_accounts::AuthDevice;
use sichat_core::db::is_unique_violation;
use sichat_core::ids::{new_id, now_ms, random_bytes};
use sqlx::Row;

pub const MEMBERSHIP: &str = "MembershipCredential";

/// The type, for listings and its schema document.
pub fn membership_type() -> CredentialType {
    CredentialType {
        name: MEMBERSHIP.into(),
        display_name: "Member of this node (issued by the node)".into(),
        schema: json!({
            "type": "object",
            "properties": {
                "memberOf": {"type": "string", "pattern": "^did:web:"},
                "name": {"type": "string"}
            },
            "required": ["memberOf", "name"],
            "additionalProperties": false
        }),
        builtin: true,
        alg: "EdDSA".into(),
    }
}

impl Issuer {
    fn node_url(&self, path: &str) -> String {
        self.accounts.node().url(path)
    }

    async fn existing_membership(&self, user_id: &str) -> Result<Option<Issued>, IssuerError> {
        let row = sqlx::query("SELECT id, credential FROM issuer_memberships WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(self.db.pool())
            .await?;
        match row {
            Some(r) => Ok(Some(Issued {
                id: r.try_get("id")?,
                format: crate::service::Format::VcJwt,
                credential: r.try_get("credential")?,
            })),
            None => Ok(None),
        }
    }

    /// The session user's MembershipCredential, issued on first request.
    pub async fn membership(&self, me: &AuthDevice) -> Result<Issued, IssuerError> {
        if let Some(existing) = self.existing_membership(&me.user_id).await? {
            return Ok(existing);
        }
        let node = self.accounts.node();
        let holder = self.accounts.user_did(&me.user_name)?;
        let id = new_id();
        let now = now_ms();
        let subject = json!({"id": holder.as_str(), "memberOf": node.did().as_str(), "name": me.user_name});
        types::check_subject(&membership_type(), &subject)?;
        for attempt in 0..32 {
            let list = "members-1";
            let index = (u32::from_le_bytes(random_bytes::<4>()) as usize) % LIST_SIZE;
            let list_url = self.node_url(&format!("status/{list}"));
            let statuses = [StatusEntry { purpose: "revocation", list_url, index }];
            let schema_url = self.node_url(&format!("credential-types/{MEMBERSHIP}/schema.json"));
            let node_url = node.public_url().as_str().to_owned();
            let vc = credential::build(&Draft {
                id: &id,
                node_url: &node_url,
                issuer: node.did().as_str(),
                type_name: MEMBERSHIP,
                subject: &subject,
                schema_url: Some(&schema_url),
                statuses: &statuses,
                valid_from_ms: now,
                valid_until_ms: None,
            });
            let jwt = node.sign_jws(credential::VC_JWT_TYP, &vc)?;
            let inserted = sqlx::query(
                "INSERT INTO issuer_memberships (id, user_id, list_id, list_index, credential, issued_at) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&id)
            .bind(&me.user_id)
            .bind(list)
            .bind(index as i64)
            .bind(&jwt)
            .bind(now)
            .execute(self.db.pool())
            .await;
            match inserted {
                Ok(_) => return Ok(Issued { id, format: crate::service::Format::VcJwt, credential: jwt }),
                // Another request issued it first, or the index was taken: look again.
                Err(e) if is_unique_violation(&e) && attempt < 31 => {
                    if let Some(existing) = self.existing_membership(&me.user_id).await? {
                        return Ok(existing);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(IssuerError::Internal("no free membership status index".into()))
    }

    /// The node's membership status list, signed by the node key.
    pub async fn membership_status_list(&self, list: &str) -> Result<ServedList, IssuerError> {
        let rows = sqlx::query(
            "SELECT m.list_index, u.status FROM issuer_memberships m JOIN acct_users u ON u.id = m.user_id WHERE m.list_id = $1",
        )
        .bind(list)
        .fetch_all(self.db.pool())
        .await?;
        if rows.is_empty() {
            return Err(IssuerError::NotFound("no such status list".into()));
        }
        let mut bits = Bitstring::new(LIST_SIZE);
        for r in &rows {
            if r.try_get::<String, _>("status")? != "active" {
                bits.set(r.try_get::<i64, _>("list_index")? as usize, true)?;
            }
        }
        let digest: String = Sha256::digest(bits.as_bytes()).iter().take(16).map(|b| format!("{b:02x}")).collect();
        let etag = format!("\"{digest}\"");
        let node = self.accounts.node();
        let url = self.node_url(&format!("status/{list}"));
        let vc: Value = json!({
            "@context": [credential::VCDM2_CONTEXT],
            "id": url,
            "type": ["VerifiableCredential", "BitstringStatusListCredential"],
            "issuer": node.did().as_str(),
            "validFrom": credential::rfc3339(now_ms()),
            "credentialSubject": {
                "id": format!("{url}#list"),
                "type": "BitstringStatusList",
                "statusPurpose": "revocation",
                "encodedList": bits.encode(),
            }
        });
        Ok(ServedList { etag, jwt: node.sign_jws(credential::VC_JWT_TYP, &vc)? })
    }

    /// The schema of the whole MembershipCredential.
    pub fn membership_schema(&self) -> Result<Value, IssuerError> {
        let url = self.node_url(&format!("credential-types/{MEMBERSHIP}/schema.json"));
        types::credential_schema(&url, &membership_type())
    }
}
