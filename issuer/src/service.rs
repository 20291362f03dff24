//! Issuing: types, signing with the user's issuing key, status lists, the issuance log.

use crate::credential::{self, Draft, StatusEntry};
use crate::status::{Bitstring, Purpose, LIST_SIZE};
use crate::store::{self, CredentialRow};
use crate::types::{self, CredentialType};
use crate::IssuerError;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use sichat_accounts::{Accounts, AuthDevice};
use sichat_core::db::{is_unique_violation, Backend, Db};
use sichat_core::did::Did;
use sichat_core::ids::{new_id, now_ms, random_bytes};
use sichat_core::node::NodeIdentity;
use sichat_core::p256key::KeyPair;
use sichat_core::resolver::Resolver;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// How a credential is secured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Format {
    /// VC-JOSE-COSE: the credential is the payload of a JWS with `typ: vc+jwt`.
    #[default]
    #[serde(rename = "vc+jwt")]
    VcJwt,
    /// An embedded Data Integrity proof (`eddsa-rdfc-2022`, or `ecdsa-rdfc-2019` for
    /// ES256 types). `ldp_vc` is its OpenID4VCI format identifier.
    #[serde(rename = "ldp_vc")]
    LdpVc,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::VcJwt => "vc+jwt",
            Format::LdpVc => "ldp_vc",
        }
    }

    pub fn parse(s: &str) -> Result<Self, IssuerError> {
        match s {
            "vc+jwt" | "jwt" => Ok(Format::VcJwt),
            "ldp_vc" | "di" => Ok(Format::LdpVc),
            other => Err(IssuerError::InvalidRequest(format!("unknown format {other:?}: choose vc+jwt or ldp_vc"))),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssueRequest {
    /// A credential type name, e.g. `FriendCredential`.
    #[serde(rename = "type")]
    pub type_name: String,
    /// The holder's DID: the credential subject.
    pub subject: String,
    pub claims: Map<String, Value>,
    /// Unix milliseconds.
    #[serde(default)]
    pub valid_until: Option<i64>,
    /// Give it a suspension entry too, so it can be suspended and resumed.
    #[serde(default)]
    pub suspendable: bool,
    #[serde(default)]
    pub format: Format,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Issued {
    pub id: String,
    pub format: Format,
    /// The compact JWS (`vc+jwt`), or the secured document as JSON text (`ldp_vc`).
    pub credential: String,
}

/// One line of the issuance log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IssuedRecord {
    pub id: String,
    #[serde(rename = "type")]
    pub type_name: String,
    pub subject: String,
    pub claims: Value,
    /// `active`, `suspended` or `revoked`.
    pub status: String,
    pub issued_at: i64,
    pub valid_until: Option<i64>,
    pub suspendable: bool,
    pub format: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StatusAction {
    Revoke,
    Suspend,
    Resume,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewType {
    pub name: String,
    pub display_name: Option<String>,
    pub schema: Value,
    /// `EdDSA` (default) or `ES256`, which the DIIP and HAIP wallet profiles require.
    #[serde(default)]
    pub alg: Option<String>,
}

/// A signed status list credential and its entity tag.
#[derive(Debug, Clone)]
pub struct ServedList {
    pub etag: String,
    pub jwt: String,
}

/// A credential ready to be signed: checked, with its key unsealed.
pub(crate) struct Prepared {
    user_id: String,
    user_name: String,
    holder: Did,
    t: CredentialType,
    subject: Value,
    req: IssueRequest,
    kid: String,
    key: sichat_core::p256key::KeyPair,
}

pub struct Issuer {
    pub(crate) db: Db,
    pub(crate) accounts: Arc<Accounts>,
    /// Resolves holders' `did:web` on other nodes, under the node's network policy.
    pub(crate) resolver: Arc<Resolver>,
    /// Signed status lists by list id, re-signed only when the bits change.
    lists: Mutex<HashMap<String, ServedList>>,
}

impl Issuer {
    pub fn new(db: Db, accounts: Arc<Accounts>, resolver: Arc<Resolver>) -> Self {
        Self { db, accounts, resolver, lists: Mutex::new(HashMap::new()) }
    }

    async fn conn(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Any>, IssuerError> {
        Ok(self.db.pool().acquire().await?)
    }

    fn postgres(&self) -> bool {
        self.db.backend() == Backend::Postgres
    }

    pub(crate) fn base_url(&self, user_name: &str) -> String {
        user_base_url(self.accounts.node(), user_name)
    }

    /// The node's JSON-LD context, which credentials issued before the context was embedded
    /// name (see [`credential::CONTEXT_PATH`]).
    pub fn context_url(&self) -> String {
        self.accounts.node().url(credential::CONTEXT_PATH)
    }

    /// Contexts this node serves, by URL, for JSON-LD processing without a fetch.
    pub fn own_contexts(&self) -> std::collections::HashMap<String, String> {
        let public = self.accounts.node().public_url().as_str().to_owned();
        std::collections::HashMap::from([(self.context_url(), credential::context_document(&public).to_string())])
    }

    pub fn schema_url(&self, user_name: &str, type_name: &str) -> String {
        format!("{}/credential-types/{type_name}/schema.json", self.base_url(user_name))
    }

    pub fn list_url(&self, user_name: &str, list_id: &str) -> String {
        list_url(self.accounts.node(), user_name, list_id)
    }

    // ---- types ----

    /// The types the user can issue (and the node-issued membership, for reference).
    pub async fn types(&self, user_id: &str) -> Result<Vec<CredentialType>, IssuerError> {
        let mut all = types::builtin();
        for (name, display_name, schema, alg) in store::user_types(&mut *self.conn().await?, user_id).await? {
            let schema = serde_json::from_str(&schema).map_err(|e| IssuerError::Internal(e.to_string()))?;
            all.push(CredentialType { name, display_name, schema, builtin: false, alg });
        }
        Ok(all)
    }

    pub(crate) async fn find_type(&self, user_id: &str, name: &str) -> Result<CredentialType, IssuerError> {
        self.types(user_id)
            .await?
            .into_iter()
            .find(|t| t.name == name)
            .ok_or_else(|| IssuerError::UnknownType(name.into()))
    }

    pub async fn add_type(&self, me: &AuthDevice, new: NewType) -> Result<CredentialType, IssuerError> {
        types::check_name(&new.name)?;
        if types::builtin().iter().any(|t| t.name == new.name) || new.name == crate::membership::MEMBERSHIP {
            return Err(IssuerError::Conflict(format!("{} is a built-in type", new.name)));
        }
        types::subject_schema(&new.schema)?;
        let alg = new.alg.unwrap_or_else(|| "EdDSA".into());
        if !types::ALGORITHMS.contains(&alg.as_str()) {
            return Err(IssuerError::InvalidType(format!("alg {alg:?}: choose EdDSA or ES256")));
        }
        let display_name = new.display_name.unwrap_or_else(|| new.name.clone());
        if display_name.is_empty() || display_name.len() > 100 {
            return Err(IssuerError::InvalidType("display name must be 1-100 characters".into()));
        }
        let schema = serde_json::to_string(&new.schema).map_err(|e| IssuerError::Internal(e.to_string()))?;
        let mut conn = self.conn().await?;
        let id = new_id();
        let row = store::NewType {
            id: &id,
            user_id: &me.user_id,
            name: &new.name,
            display_name: &display_name,
            schema: &schema,
            alg: &alg,
            now: now_ms(),
        };
        store::insert_type(&mut conn, row).await.map_err(|e| {
            if is_unique_violation(&e) {
                IssuerError::Conflict(format!("you already have a type named {}", new.name))
            } else {
                e.into()
            }
        })?;
        Ok(CredentialType { name: new.name, display_name, schema: new.schema, builtin: false, alg })
    }

    /// The JSON Schema a credential's `credentialSchema` points at.
    pub async fn schema_document(&self, user_name: &str, type_name: &str) -> Result<Value, IssuerError> {
        let user_id = self.user_id(user_name).await?;
        let t = self.find_type(&user_id, type_name).await?;
        types::credential_schema(&self.schema_url(user_name, type_name), &t)
    }

    pub(crate) async fn user_id(&self, name: &str) -> Result<String, IssuerError> {
        let row = sqlx::query("SELECT id FROM acct_users WHERE name = $1 AND status = 'active'")
            .bind(name)
            .fetch_optional(self.db.pool())
            .await?
            .ok_or_else(|| IssuerError::NotFound(format!("no account named {name}")))?;
        Ok(sqlx::Row::try_get(&row, "id")?)
    }

    // ---- issuing ----

    /// Sign a credential for `req.subject` with the user's issuing key and log it.
    pub async fn issue(&self, me: &AuthDevice, req: IssueRequest) -> Result<Issued, IssuerError> {
        let prepared = self.prepare(&me.user_id, &me.user_name, req).await?;
        let mut tx = self.db.pool().begin().await?;
        let issued = self.issue_prepared(&mut tx, prepared).await?;
        tx.commit().await?;
        Ok(issued)
    }

    /// Everything that needs no transaction: the type, the schema check, the key.
    pub(crate) async fn prepare(
        &self,
        user_id: &str,
        user_name: &str,
        req: IssueRequest,
    ) -> Result<Prepared, IssuerError> {
        let holder = Did::parse(&req.subject)?;
        if req.type_name == crate::membership::MEMBERSHIP {
            return Err(IssuerError::InvalidType(
                "MembershipCredential is issued by the node itself: get yours with `sichat credential membership`"
                    .into(),
            ));
        }
        let t = self.find_type(user_id, &req.type_name).await?;
        if req.claims.contains_key("id") {
            return Err(IssuerError::InvalidRequest(
                "claims may not contain \"id\": the subject's id is the holder DID".into(),
            ));
        }
        let mut subject = Map::new();
        subject.insert("id".into(), json!(holder.as_str()));
        subject.extend(req.claims.clone());
        let subject = Value::Object(subject);
        types::check_subject(&t, &subject)?;
        if req.format == Format::LdpVc {
            // The claims must fit what JSON-LD processing accepts (depth, size, numbers),
            // or signing refuses them: the caller's mistake, said as such.
            crate::data_integrity::check_bounds(&json!({"credentialSubject": subject}))
                .map_err(|why| IssuerError::InvalidRequest(format!("claims: {why}")))?;
        }
        if let Some(until) = req.valid_until {
            if until <= now_ms() {
                return Err(IssuerError::InvalidRequest("valid_until must be in the future".into()));
            }
        }
        let (kid, key) = self.accounts.issuing_key_for(user_id, &t.alg).await?;
        Ok(Prepared { user_id: user_id.into(), user_name: user_name.into(), holder, t, subject, req, kid, key })
    }

    /// Allocate status entries, sign, and log, inside the caller's transaction.
    pub(crate) async fn issue_prepared(&self, tx: &mut store::Conn, p: Prepared) -> Result<Issued, IssuerError> {
        // What is issued while the account moves would not reach its new node.
        self.accounts.hold_unless_moving(tx, &p.user_id).await?;
        let now = now_ms();
        let issuer_did = p.kid.split('#').next().unwrap_or_default().to_owned();
        let id = new_id();
        let web_did = self.accounts.user_did(&p.user_name)?.to_string();
        let under = (issuer_did.as_str(), web_did.as_str());
        let (rev_list, rev_index) = self.allocate(tx, &p.user_id, Purpose::Revocation, under, now).await?;
        let suspension = match p.req.suspendable {
            true => Some(self.allocate(tx, &p.user_id, Purpose::Suspension, under, now).await?),
            false => None,
        };
        let mut statuses = vec![StatusEntry {
            purpose: Purpose::Revocation.as_str(),
            list_url: self.list_url(&p.user_name, &rev_list),
            index: rev_index,
        }];
        if let Some((list, index)) = &suspension {
            statuses.push(StatusEntry {
                purpose: Purpose::Suspension.as_str(),
                list_url: self.list_url(&p.user_name, list),
                index: *index,
            });
        }
        let schema_url = self.schema_url(&p.user_name, &p.t.name);
        let node_url = self.accounts.node().public_url().as_str().to_owned();
        let vc = credential::build(&Draft {
            id: &id,
            node_url: &node_url,
            issuer: &issuer_did,
            type_name: &p.t.name,
            subject: &p.subject,
            schema_url: Some(&schema_url),
            statuses: &statuses,
            valid_from_ms: now,
            valid_until_ms: p.req.valid_until,
        });
        let secured = match p.req.format {
            Format::VcJwt => credential::sign_vc_jwt(&p.key, &p.kid, &vc)?,
            // The credential embeds its context: it is signed, as verifiers will check it,
            // with the standard contexts alone.
            Format::LdpVc => crate::data_integrity::sign(&p.key, &p.kid, &vc, &Default::default())
                .await
                .map_err(IssuerError::Internal)?
                .to_string(),
        };
        let row = CredentialRow {
            id: id.clone(),
            user_id: p.user_id.clone(),
            type_name: p.t.name.clone(),
            subject: p.holder.to_string(),
            claims: Value::Object(p.req.claims).to_string(),
            revocation_list: rev_list,
            revocation_index: rev_index as i64,
            suspension_list: suspension.as_ref().map(|s| s.0.clone()),
            suspension_index: suspension.map(|s| s.1 as i64),
            status: "active".into(),
            issued_at: now,
            valid_until: p.req.valid_until,
            format: p.req.format.as_str().into(),
        };
        store::insert_credential(tx, &row).await?;
        metrics::counter!("sichat_credentials_issued_total").increment(1);
        tracing::info!(issuer = %issuer_did, credential = %id, r#type = %p.t.name, "credential issued");
        Ok(Issued { id, format: p.req.format, credential: secured })
    }

    /// A free index, chosen at random, in the user's current list for `purpose` (a new
    /// list when it is crowded). Random indexes keep neighbours from learning order.
    async fn allocate(
        &self,
        c: &mut store::Conn,
        user_id: &str,
        purpose: Purpose,
        (issuer_did, web_did): (&str, &str),
        now: i64,
    ) -> Result<(String, usize), IssuerError> {
        if let Some((list, _)) = store::current_list(c, user_id, purpose, issuer_did, web_did).await? {
            // Two issuances at once must not both take one free index (the second would fail
            // on the list's unique index).
            store::lock_list(c, &list, self.db.backend() == Backend::Postgres).await?;
            for _ in 0..32 {
                let index = (u32::from_le_bytes(random_bytes::<4>()) as usize) % LIST_SIZE;
                if !store::index_taken(c, &list, index as i64).await? {
                    return Ok((list, index));
                }
            }
        }
        let list = new_id();
        store::insert_list(c, &list, user_id, purpose, issuer_did, Bitstring::new(LIST_SIZE).as_bytes(), now).await?;
        let index = (u32::from_le_bytes(random_bytes::<4>()) as usize) % LIST_SIZE;
        Ok((list, index))
    }

    pub async fn issued(&self, me: &AuthDevice) -> Result<Vec<IssuedRecord>, IssuerError> {
        let rows = store::credentials(&mut *self.conn().await?, &me.user_id).await?;
        Ok(rows
            .into_iter()
            .map(|r| IssuedRecord {
                claims: serde_json::from_str(&r.claims).unwrap_or(Value::Null),
                suspendable: r.suspension_list.is_some(),
                id: r.id,
                type_name: r.type_name,
                subject: r.subject,
                status: r.status,
                issued_at: r.issued_at,
                valid_until: r.valid_until,
                format: r.format,
            })
            .collect())
    }

    /// Whether `user_id` has issued `subject` a credential of one of `types` that is in
    /// force now: not revoked, not suspended, not expired. The issuance log is the truth
    /// here, so a revocation counts at once.
    pub async fn has_issued(&self, user_id: &str, subject: &str, types: &[String]) -> Result<bool, IssuerError> {
        if types.is_empty() {
            return Ok(false);
        }
        let mut conn = self.db.read().await?;
        Ok(store::has_active_credential(&mut conn, user_id, subject, types, now_ms()).await?)
    }

    /// Revoke (for good), suspend or resume one of the user's credentials. The served
    /// status list changes at once.
    pub async fn set_status(
        &self,
        me: &AuthDevice,
        id: &str,
        action: StatusAction,
    ) -> Result<IssuedRecord, IssuerError> {
        let mut tx = self.db.pool().begin().await?;
        self.accounts.hold_unless_moving(&mut tx, &me.user_id).await?;
        let row = store::credential(&mut tx, id, &me.user_id)
            .await?
            .ok_or_else(|| IssuerError::NotFound(format!("you issued no credential {id}")))?;
        if row.status == "revoked" {
            return Err(IssuerError::Conflict("this credential is revoked; revocation is final".into()));
        }
        let (list, index, bit, status) = match action {
            StatusAction::Revoke => (row.revocation_list.clone(), row.revocation_index, true, "revoked"),
            StatusAction::Suspend | StatusAction::Resume => {
                let (Some(list), Some(index)) = (row.suspension_list.clone(), row.suspension_index) else {
                    return Err(IssuerError::Conflict("this credential was not issued as suspendable".into()));
                };
                match action {
                    StatusAction::Suspend => (list, index, true, "suspended"),
                    _ => (list, index, false, "active"),
                }
            }
        };
        let stored = store::list(&mut tx, &list, self.postgres())
            .await?
            .ok_or_else(|| IssuerError::Internal("status list missing".into()))?;
        let mut bits = Bitstring::from_bytes(stored.bits);
        bits.set(index as usize, bit)?;
        store::save_bits(&mut tx, &list, bits.as_bytes(), now_ms()).await?;
        store::set_status(&mut tx, id, status).await?;
        tx.commit().await?;
        tracing::info!(credential = %id, status, "credential status changed");
        let mut records = self.issued(me).await?;
        records.retain(|r| r.id == id);
        records.pop().ok_or_else(|| IssuerError::Internal("credential vanished".into()))
    }

    // ---- serving status lists ----

    /// The signed status list credential, re-signed only when its bits have changed.
    pub async fn status_list(&self, user_name: &str, list_id: &str) -> Result<ServedList, IssuerError> {
        let list = store::list(&mut *self.conn().await?, list_id, false)
            .await?
            .filter(|l| l.name == user_name)
            .ok_or_else(|| IssuerError::NotFound("no such status list".into()))?;
        let etag = format!("\"{}\"", &hex(&Sha256::digest(&list.bits))[..32]);
        if let Some(hit) = self.cached(list_id).filter(|c| c.etag == etag) {
            return Ok(hit);
        }
        // Signed under the DID its credentials name: the same key, listed in both documents.
        let (kid, key) = self.accounts.issuing_key(&list.user_id).await?;
        let issuer = match list.issuer_did {
            Some(did) => did,
            None => self.accounts.user_did(&list.name)?.to_string(),
        };
        let kid = format!("{issuer}#{}", kid.rsplit_once('#').map(|(_, f)| f).unwrap_or_default());
        // Its id is the URL its credentials name: this node's, or, for a list that moved in
        // with its account, the old node's (which redirects here).
        let url = list.published_url.unwrap_or_else(|| self.list_url(&list.name, list_id));
        let issuer = kid.split('#').next().unwrap_or_default();
        let vc = crate::status::list_credential(
            &url,
            issuer,
            &list.purpose,
            &Bitstring::from_bytes(list.bits),
            list.updated_at,
        );
        let served = ServedList { etag, jwt: credential::sign_vc_jwt(&KeyPair::Ed25519(key), &kid, &vc)? };
        if let Ok(mut cache) = self.lists.lock() {
            cache.insert(list_id.to_owned(), served.clone());
        }
        Ok(served)
    }

    fn cached(&self, list_id: &str) -> Option<ServedList> {
        self.lists.lock().ok().and_then(|c| c.get(list_id).cloned())
    }
}

/// Where a node serves a user's issuer documents (types, schemas, status lists).
pub(crate) fn user_base_url(node: &NodeIdentity, user_name: &str) -> String {
    node.url(&format!("users/{user_name}"))
}

/// The URL a node serves a user's status list at, which credentials issued there name as
/// their `statusListCredential`.
pub fn list_url(node: &NodeIdentity, user_name: &str, list_id: &str) -> String {
    format!("{}/status/{list_id}", user_base_url(node, user_name))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
