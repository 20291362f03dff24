//! OpenID4VP 1.0, verifier side: a user asks for a credential with a DCQL query; the
//! wallet fetches a signed request object by reference and answers with `direct_post`;
//! the presentation is verified and the result kept for the requester.
//!
//! The client identifier is `decentralized_identifier:<the user's DID>`, and the request
//! object is signed with the user's issuing key (`assertionMethod` of that DID).

use crate::policy::{Issuers, TrustPolicy, TrustRule};
use crate::verify::{Expectation, Options, Outcome, Report, Verifier, LDP_VP, VP_JWT};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sichat_accounts::{Accounts, AuthDevice};
use sichat_core::db::Db;
use sichat_core::ids::{new_id, now_ms, random_token};
use sichat_core::jws;
use sqlx::Row;
use std::sync::Arc;

/// How long a request may be answered.
pub const REQUEST_TTL_MS: i64 = 10 * 60 * 1000;
pub const REQUEST_TYP: &str = "oauth-authz-req+jwt";
pub const DID_PREFIX: &str = "decentralized_identifier:";
/// DCQL credential query ids: one per format, either satisfies the request.
pub const JWT_QUERY: &str = "jwt";
pub const LDP_QUERY: &str = "ldp";

#[derive(Debug, thiserror::Error)]
pub enum VpError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Replayed(String),
    /// A response that is not the holder's signed answer to this request: refused, and
    /// the request stays open.
    #[error("{0}")]
    NotAnAnswer(String),
    #[error(transparent)]
    Account(#[from] sichat_accounts::AccountError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<sqlx::Error> for VpError {
    fn from(e: sqlx::Error) -> Self {
        Self::Internal(format!("database: {e}"))
    }
}

/// What a user asks for.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRequest {
    /// The credential type, e.g. `FriendCredential`.
    #[serde(rename = "type")]
    pub type_name: String,
    /// Accepted issuers (DIDs). Empty: any issuer, unless `holders_of` is set.
    #[serde(default)]
    pub issuers: Vec<String>,
    /// Also accept issuers who hold a non-revoked credential of this type that the
    /// requester issued them ("FriendCredential from anyone I have befriended").
    #[serde(default)]
    pub holders_of: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestCreated {
    pub id: String,
    /// `openid4vp://?client_id=…&request_uri=…`, for the holder's wallet.
    pub request_uri: String,
    /// Where the requester reads the result (authenticated).
    pub result_url: String,
    pub expires_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestState {
    pub id: String,
    #[serde(rename = "type")]
    pub type_name: String,
    /// `pending`, `verified`, `rejected` or `expired`.
    pub status: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub answered_at: Option<i64>,
    pub result: Option<Report>,
    /// Responses refused because they were not a signed answer to this request (see
    /// [`Presentations::respond`]); more than none means someone else saw the request.
    #[serde(default)]
    pub refused_answers: i64,
}

pub struct Presentations {
    db: Db,
    accounts: Arc<Accounts>,
    verifier: Arc<Verifier>,
}

/// What a signed request object (`oauth-authz-req+jwt`) says: the node's verifier and a
/// wallet verifying on its own (`sichat verifier request` with no node) make the same one.
pub struct RequestObject<'a> {
    /// `decentralized_identifier:<DID>`: the request is signed by a key of that DID.
    pub client_id: &'a str,
    pub client_name: &'a str,
    /// Where the wallet posts its answer (`direct_post`).
    pub response_uri: &'a str,
    pub nonce: &'a str,
    pub state: &'a str,
    pub request: &'a NewRequest,
}

impl RequestObject<'_> {
    pub fn claims(&self, now_ms: i64) -> Value {
        let now = now_ms / 1000;
        json!({
            "iss": self.client_id,
            "aud": "https://self-issued.me/v2",
            "client_id": self.client_id,
            "response_type": "vp_token",
            "response_mode": "direct_post",
            "response_uri": self.response_uri,
            "nonce": self.nonce,
            "state": self.state,
            "dcql_query": Presentations::dcql(self.request),
            "client_metadata": {
                "client_name": self.client_name,
                "vp_formats_supported": {
                    "jwt_vc_json": {"alg_values": ["EdDSA", "ES256"]},
                    "ldp_vc": {
                        "proof_type_values": ["DataIntegrityProof"],
                        "cryptosuite_values": ["eddsa-rdfc-2022", "ecdsa-rdfc-2019"]
                    }
                }
            },
            "iat": now,
            "exp": now + REQUEST_TTL_MS / 1000,
        })
    }

    /// The `openid4vp://` URI a wallet opens: the client id and where to fetch the request.
    pub fn uri(client_id: &str, request_uri: &str) -> String {
        format!("openid4vp://?client_id={}&request_uri={}", enc(client_id), enc(request_uri))
    }
}

impl Presentations {
    pub fn new(db: Db, accounts: Arc<Accounts>, verifier: Arc<Verifier>) -> Self {
        Self { db, accounts, verifier }
    }

    pub fn client_id(&self, user_name: &str) -> Result<String, VpError> {
        Ok(format!("{DID_PREFIX}{}", self.accounts.user_did(user_name)?))
    }

    fn url(&self, user_name: &str, path: &str) -> String {
        self.accounts.node().url(&format!("users/{user_name}/oid4vp/{path}"))
    }

    pub async fn create(&self, me: &AuthDevice, req: NewRequest) -> Result<RequestCreated, VpError> {
        if req.type_name.is_empty() || !req.type_name.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(VpError::InvalidRequest("type must be a credential type name, e.g. FriendCredential".into()));
        }
        for did in &req.issuers {
            sichat_core::did::Did::parse(did).map_err(|_| VpError::InvalidRequest(format!("{did} is not a DID")))?;
        }
        let id = new_id();
        let now = now_ms();
        let expires_at = now + REQUEST_TTL_MS;
        sqlx::query(
            "INSERT INTO verifier_requests (id, user_id, nonce, request, status, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, 'pending', $5, $6)",
        )
        .bind(&id)
        .bind(&me.user_id)
        .bind(random_token())
        .bind(serde_json::to_string(&req).map_err(|e| VpError::Internal(e.to_string()))?)
        .bind(now)
        .bind(expires_at)
        .execute(self.db.pool())
        .await?;
        let client_id = self.client_id(&me.user_name)?;
        let request_uri = RequestObject::uri(&client_id, &self.url(&me.user_name, &format!("requests/{id}")));
        let result_url = self.accounts.node().url(&format!("api/v1/verifier/requests/{id}"));
        Ok(RequestCreated { id, request_uri, result_url, expires_at })
    }

    /// The DCQL query for a request: the type in either format, with the accepted
    /// issuers as a value constraint when they are known up front.
    pub fn dcql(req: &NewRequest) -> Value {
        let query = |id: &str, format: &str| {
            let mut q = json!({"id": id, "format": format, "meta": {"type_values": [[req.type_name]]}});
            if !req.issuers.is_empty() && req.holders_of.is_none() {
                q["claims"] = json!([{"path": ["issuer"], "values": req.issuers}]);
            }
            q
        };
        json!({
            "credentials": [query(JWT_QUERY, "jwt_vc_json"), query(LDP_QUERY, "ldp_vc")],
            "credential_sets": [{"options": [[JWT_QUERY], [LDP_QUERY]]}],
        })
    }

    async fn pending(&self, user_name: &str, id: &str) -> Result<(String, String, NewRequest), VpError> {
        let row = sqlx::query(
            "SELECT r.user_id, r.nonce, r.request, r.status, r.expires_at FROM verifier_requests r \
             JOIN acct_users u ON u.id = r.user_id WHERE r.id = $1 AND u.name = $2",
        )
        .bind(id)
        .bind(user_name)
        .fetch_optional(self.db.pool())
        .await?
        .ok_or_else(|| VpError::NotFound("no such presentation request".into()))?;
        let status: String = row.try_get("status")?;
        if status != "pending" {
            return Err(VpError::Replayed(format!(
                "this request was already answered ({status}); a presentation is accepted once: ask for a new request"
            )));
        }
        if row.try_get::<i64, _>("expires_at")? <= now_ms() {
            return Err(VpError::NotFound("this presentation request has expired: ask for a new one".into()));
        }
        let req: NewRequest = serde_json::from_str(&row.try_get::<String, _>("request")?)
            .map_err(|e| VpError::Internal(e.to_string()))?;
        Ok((row.try_get("user_id")?, row.try_get("nonce")?, req))
    }

    /// The signed request object (`oauth-authz-req+jwt`), fetched by the wallet.
    pub async fn request_object(&self, user_name: &str, id: &str) -> Result<String, VpError> {
        let (user_id, nonce, req) = self.pending(user_name, id).await?;
        // The request names the verifier by its did:web DID (its client_id): sign under that
        // DID, whose document lists the same issuing key.
        let (kid, key) = self.accounts.issuing_key_for(&user_id, "EdDSA").await?;
        let kid = format!(
            "{}#{}",
            self.accounts.user_did(user_name)?,
            kid.rsplit_once('#').map(|(_, f)| f).unwrap_or_default()
        );
        let host = self.accounts.node().public_url().host_str().unwrap_or("sichat").to_owned();
        let claims = RequestObject {
            client_id: &self.client_id(user_name)?,
            client_name: &format!("{user_name} on {host}"),
            response_uri: &self.url(user_name, &format!("responses/{id}")),
            nonce: &nonce,
            state: id,
            request: &req,
        }
        .claims(now_ms());
        jws::sign_with(&key, REQUEST_TYP, Some(&kid), &claims).map_err(|e| VpError::Internal(e.to_string()))
    }

    /// The wallet's `direct_post`: verify the presentation and keep the result. Input
    /// that cannot be read changes nothing. A presentation that is not an answer to this
    /// request (see [`answers_request`]) is refused and counted, and the request stays open
    /// for its holder: whoever saw the QR code cannot end it. A signed answer closes the
    /// request, kept as `verified` or, when its credentials fail, as `rejected` with its
    /// reasons.
    pub async fn respond(&self, user_name: &str, id: &str, vp_token: Option<&str>) -> Result<Report, VpError> {
        let (user_id, nonce, req) = self.pending(user_name, id).await?;
        let (format, text) = read_vp_token(vp_token)?;
        let opts = Options {
            expect: Some(Expectation { nonce, audience: self.client_id(user_name)? }),
            policy: Some(self.policy(&user_id, &req).await?),
            ..Options::default()
        };
        let report = self.verifier.verify_presentation(format, &text, &opts).await;
        if let Err(why) = answers_request(&report) {
            sqlx::query("UPDATE verifier_requests SET refused_answers = refused_answers + 1 WHERE id = $1")
                .bind(id)
                .execute(self.db.pool())
                .await?;
            metrics::counter!("sichat_presentations_total", "result" => "not_an_answer").increment(1);
            tracing::warn!(request = %id, reason = %why, "refused a response that is not a signed answer");
            return Err(VpError::NotAnAnswer(format!(
                "not an answer to this request, which stays open: {why}; a presentation must be signed by \
                 its holder's key, with this request's nonce and for this verifier"
            )));
        }
        let status = if report.valid { "verified" } else { "rejected" };
        let stored = serde_json::to_string(&report).map_err(|e| VpError::Internal(e.to_string()))?;
        let done = sqlx::query(
            "UPDATE verifier_requests SET status = $1, result = $2, answered_at = $3 WHERE id = $4 AND status = 'pending'",
        )
        .bind(status)
        .bind(stored)
        .bind(now_ms())
        .bind(id)
        .execute(self.db.pool())
        .await?;
        if done.rows_affected() != 1 {
            return Err(VpError::Replayed("this request was already answered".into()));
        }
        metrics::counter!("sichat_presentations_total", "result" => status).increment(1);
        tracing::info!(request = %id, result = status, "presentation verified");
        Ok(report)
    }

    /// The request's trust policy, with "holders of my X" expanded to their DIDs now.
    async fn policy(&self, user_id: &str, req: &NewRequest) -> Result<TrustPolicy, VpError> {
        let issuers = match (&req.holders_of, req.issuers.is_empty()) {
            (None, true) => Issuers::Any,
            (None, false) => Issuers::Dids(req.issuers.clone()),
            (Some(held), _) => {
                let rows = sqlx::query(
                    "SELECT DISTINCT subject FROM issuer_credentials WHERE user_id = $1 AND type_name = $2 AND status = 'active' \
                     AND (valid_until IS NULL OR valid_until > $3)",
                )
                .bind(user_id)
                .bind(held)
                .bind(now_ms())
                .fetch_all(self.db.pool())
                .await?;
                let mut dids: Vec<String> = rows.iter().map(|r| r.try_get("subject")).collect::<Result<_, _>>()?;
                dids.extend(req.issuers.iter().cloned());
                Issuers::Dids(dids)
            }
        };
        Ok(TrustPolicy { rules: vec![TrustRule { type_name: req.type_name.clone(), issuers }] })
    }

    /// The requester reads the state of one of their requests.
    pub async fn state(&self, me: &AuthDevice, id: &str) -> Result<RequestState, VpError> {
        let row = sqlx::query(
            "SELECT id, request, status, result, created_at, expires_at, answered_at, refused_answers FROM verifier_requests \
             WHERE id = $1 AND user_id = $2",
        )
        .bind(id)
        .bind(&me.user_id)
        .fetch_optional(self.db.pool())
        .await?
        .ok_or_else(|| VpError::NotFound(format!("you made no presentation request {id}")))?;
        let req: NewRequest = serde_json::from_str(&row.try_get::<String, _>("request")?)
            .map_err(|e| VpError::Internal(e.to_string()))?;
        let mut status: String = row.try_get("status")?;
        let expires_at: i64 = row.try_get("expires_at")?;
        if status == "pending" && expires_at <= now_ms() {
            status = "expired".into();
        }
        let result = row
            .try_get::<Option<String>, _>("result")?
            .map(|r| serde_json::from_str(&r))
            .transpose()
            .map_err(|e| VpError::Internal(e.to_string()))?;
        Ok(RequestState {
            id: row.try_get("id")?,
            type_name: req.type_name,
            status,
            created_at: row.try_get("created_at")?,
            expires_at,
            answered_at: row.try_get("answered_at")?,
            result,
            refused_answers: row.try_get("refused_answers")?,
        })
    }

    /// Drop requests that expired a day ago, answered or not.
    pub async fn purge_expired(&self) -> Result<u64, VpError> {
        let r = sqlx::query("DELETE FROM verifier_requests WHERE expires_at < $1")
            .bind(now_ms() - 24 * 3600 * 1000)
            .execute(self.db.pool())
            .await?;
        Ok(r.rows_affected())
    }
}

/// Whether a verified presentation is an answer to the request at all: well formed, its
/// signature verifying under its holder's DID (a key listed for `authentication`), and made
/// for this verifier and this request's nonce. Whatever its credentials say, only such an
/// answer may close a request; the first of these checks that did not pass says why not.
/// The one presentation a `direct_post`'s `vp_token` carries, with its format (`vp+jwt` or
/// `ldp_vp`): the token is a JSON object keyed by credential query id (`jwt` or `ldp`),
/// answering exactly one query with an array of one presentation.
pub fn read_vp_token(vp_token: Option<&str>) -> Result<(&'static str, String), VpError> {
    let token = vp_token.ok_or_else(|| VpError::InvalidRequest("vp_token is missing".into()))?;
    let token: Value = serde_json::from_str(token)
        .map_err(|_| VpError::InvalidRequest("vp_token must be a JSON object keyed by credential query id".into()))?;
    let entries = token.as_object().filter(|o| o.len() == 1).ok_or_else(|| {
        VpError::InvalidRequest("vp_token must answer exactly one credential query (jwt or ldp)".into())
    })?;
    let (query, presentations) = entries.iter().next().map(|(k, v)| (k.as_str(), v)).unwrap_or(("", &Value::Null));
    let one =
        presentations.as_array().filter(|a| a.len() == 1).map(|a| &a[0]).ok_or_else(|| {
            VpError::InvalidRequest("each vp_token entry must be an array of one presentation".into())
        })?;
    match (query, one) {
        (JWT_QUERY, Value::String(jwt)) => Ok((VP_JWT, jwt.clone())),
        (LDP_QUERY, Value::Object(_)) => Ok((LDP_VP, one.to_string())),
        (JWT_QUERY | LDP_QUERY, _) => {
            Err(VpError::InvalidRequest(format!("the {query} answer is not a presentation of that format")))
        }
        (other, _) => Err(VpError::InvalidRequest(format!("unknown credential query id {other:?}"))),
    }
}

pub fn answers_request(report: &Report) -> Result<(), String> {
    for name in ["syntax", "signature", "audience_and_nonce"] {
        match report.checks.iter().find(|c| c.check == name) {
            Some(c) if c.outcome == Outcome::Passed => {}
            Some(c) => return Err(format!("{name}: {}", c.reason)),
            None => return Err(format!("{name}: not checked")),
        }
    }
    Ok(())
}

/// Percent-encode a query component (all but RFC 3986 unreserved characters).
pub fn enc(s: &str) -> String {
    const COMPONENT: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
    percent_encoding::utf8_percent_encode(s, COMPONENT).to_string()
}
