//! What the node publishes for an account's issuing (status lists, schemas, the context),
//! and where each credential's status entries are: `sichat export` copies the documents to
//! a static site and keeps the entries, so the wallet can revoke with no node.

use crate::service::{list_url, user_base_url, Issuer};
use crate::store;
use crate::IssuerError;
use serde::{Deserialize, Serialize};
use sichat_accounts::service::AuthDevice;

/// One status list, at the URL its credentials name.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PublishedList {
    pub id: String,
    /// `revocation` or `suspension`.
    pub purpose: String,
    pub url: String,
}

/// Where a credential's status is kept: a list id and an index, per purpose.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StatusPlace {
    pub id: String,
    #[serde(rename = "type")]
    pub type_name: String,
    pub subject: String,
    /// `active`, `suspended` or `revoked`.
    pub status: String,
    pub revocation: (String, i64),
    pub suspension: Option<(String, i64)>,
    pub valid_until: Option<i64>,
}

/// `GET /api/v1/issuer/published`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Published {
    pub lists: Vec<PublishedList>,
    pub credentials: Vec<StatusPlace>,
    /// The JSON Schemas of the account's credential types.
    pub schemas: Vec<String>,
    /// The node's JSON-LD context, which credentials issued before it was embedded name.
    pub context: String,
}

/// `GET /users/{name}/resources`: what the account publishes here, public as each of them
/// is. A standby node mirrors them from it, for verifiers while this node is down.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Resources {
    /// The URLs of its status lists.
    pub status_lists: Vec<String>,
    /// The URLs of its credential types' JSON Schemas.
    pub schemas: Vec<String>,
}

impl Issuer {
    pub async fn resources(&self, user_name: &str) -> Result<Resources, IssuerError> {
        let user_id = self
            .accounts
            .active_user_id(user_name)
            .await?
            .ok_or_else(|| IssuerError::NotFound(format!("no account {user_name} here")))?;
        let node = self.accounts.node();
        let status_lists = store::lists_of(&mut *self.db.read().await?, &user_id)
            .await?
            .into_iter()
            .map(|l| l.published_url.unwrap_or_else(|| list_url(node, user_name, &l.id)))
            .collect();
        Ok(Resources { status_lists, schemas: self.schema_urls(&user_id, user_name).await? })
    }

    async fn schema_urls(&self, user_id: &str, user_name: &str) -> Result<Vec<String>, IssuerError> {
        let base = user_base_url(self.accounts.node(), user_name);
        Ok(self
            .types(user_id)
            .await?
            .into_iter()
            .filter(|t| t.name != crate::membership::MEMBERSHIP)
            .map(|t| format!("{base}/credential-types/{}/schema.json", t.name))
            .collect())
    }

    pub async fn published(&self, me: &AuthDevice) -> Result<Published, IssuerError> {
        let node = self.accounts.node();
        let mut conn = self.db.read().await?;
        let lists = store::lists_of(&mut conn, &me.user_id)
            .await?
            .into_iter()
            .map(|l| PublishedList {
                url: l.published_url.unwrap_or_else(|| list_url(node, &me.user_name, &l.id)),
                id: l.id,
                purpose: l.purpose,
            })
            .collect();
        let credentials = store::credentials(&mut conn, &me.user_id)
            .await?
            .into_iter()
            .map(|r| StatusPlace {
                id: r.id,
                type_name: r.type_name,
                subject: r.subject,
                status: r.status,
                revocation: (r.revocation_list, r.revocation_index),
                suspension: r.suspension_list.zip(r.suspension_index),
                valid_until: r.valid_until,
            })
            .collect();
        drop(conn);
        let schemas = self.schema_urls(&me.user_id, &me.user_name).await?;
        Ok(Published { lists, credentials, schemas, context: node.url(crate::credential::CONTEXT_PATH) })
    }
}
