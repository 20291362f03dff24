//! Social recovery on the node (see [`crate::protocol::recovery`]): requests opened by a
//! wallet that lost its root key, approvals signed by the account's friends, and the log of
//! both that the account's devices read and can cancel.

use super::*;
use sichat_core::keys::X25519Public;
use sichat_core::resolver::{Relationship, Resolver};

/// Requests shown to the account's devices.
const MAX_LISTED: i64 = 50;

impl Accounts {
    /// The account a DID names here: its `did:web`, or a DID it had before (a `did:webvh`,
    /// an older host).
    async fn user_of_did(&self, c: &mut store::Conn, did: &str) -> Result<store::UserRow, AccountError> {
        let name = match self.name_in_did(did) {
            Ok(name) => name.as_str().to_owned(),
            Err(_) => store::name_by_alias(c, did)
                .await?
                .ok_or_else(|| AccountError::NotFound(format!("{did} is not an account of this node")))?,
        };
        let user = store::user_by_name(c, &name)
            .await?
            .ok_or_else(|| AccountError::NotFound(format!("{did} is not an account of this node")))?;
        self.check_active(c, &user).await?;
        Ok(user)
    }

    /// Open a recovery of `did`. Only for an account that named friends; when the account has
    /// [`MAX_OPEN_REQUESTS`] open, the oldest with no approval is closed, else refused.
    pub async fn open_recovery(&self, req: &OpenRecovery) -> Result<RecoveryRequest, AccountError> {
        X25519Public::from_multibase(&req.key)
            .map_err(|e| AccountError::InvalidRequest(format!("key must be an X25519 key, multibase: {e}")))?;
        let now = now_ms();
        let mut tx = self.db.pool().begin().await?;
        let user = self.user_of_did(&mut tx, &req.did).await?;
        store::lock_user(&mut tx, &user.id, self.db.backend() == Backend::Postgres).await?;
        if store::guardians(&mut tx, &user.id).await?.is_none() {
            return Err(AccountError::Forbidden(format!(
                "{} named no recovery friends: it cannot be recovered this way (a recovery kit still works)",
                req.did
            )));
        }
        store::expire_recovery_requests(&mut tx, &user.id, now).await?;
        if store::count_open_requests(&mut tx, &user.id).await? >= MAX_OPEN_REQUESTS as i64 {
            let Some(oldest) = store::unapproved_open_requests(&mut tx, &user.id).await?.into_iter().next() else {
                return Err(AccountError::Conflict(format!(
                    "{MAX_OPEN_REQUESTS} recoveries of this account are open and approved in part: finish one, \
                     or wait until they expire"
                )));
            };
            store::close_recovery_requests(&mut tx, &user.id, Some(&oldest), "expired", None, now).await?;
        }
        let row = store::RecoveryRequestRow {
            id: new_id(),
            user_id: user.id.clone(),
            agree_key: req.key.clone(),
            status: "open".into(),
            created_at: now,
            expires_at: now + RECOVERY_REQUEST_TTL_SECS * 1000,
        };
        store::insert_recovery_request(&mut tx, &row).await?;
        let shown = self.show_request(&mut tx, &user, row).await?;
        tx.commit().await?;
        tracing::warn!(user = %user.name, request = %shown.id, "social recovery opened");
        ::metrics::counter!("sichat_recovery_events_total", "event" => "opened").increment(1);
        Ok(shown)
    }

    /// A request, by its id, with its approvals.
    pub async fn recovery_request(&self, id: &str) -> Result<RecoveryRequest, AccountError> {
        let mut c = self.db.pool().acquire().await?;
        let row = Self::request_row(&mut c, id).await?;
        let user = store::user_by_id(&mut c, &row.user_id).await?.ok_or(AccountError::NotFound(not_found(id)))?;
        self.show_request(&mut c, &user, row).await
    }

    /// A friend's approval: signed by a key under `authentication` in their DID document,
    /// for this request's account, node and key, by one of the account's friends, once.
    pub async fn approve_recovery(
        &self,
        resolver: &Resolver,
        id: &str,
        approval: &str,
    ) -> Result<RecoveryRequest, AccountError> {
        let (unverified, kid) = RecoveryApprovalClaims::unverified(approval)?;
        let (guardians, row, user) = {
            let mut c = self.db.pool().acquire().await?;
            let row = Self::request_row(&mut c, id).await?;
            let user = store::user_by_id(&mut c, &row.user_id).await?.ok_or(AccountError::NotFound(not_found(id)))?;
            (self.guardians_of(&mut c, &user.id).await?, row, user)
        };
        if !guardians.dids.contains(&unverified.iss) {
            return Err(AccountError::Forbidden(format!(
                "{} is not one of {}'s recovery friends",
                unverified.iss, user.name
            )));
        }
        // Outside the transaction: the friend's DID may live on another node.
        let keys = resolver
            .resolve(&unverified.iss)
            .await
            .map_err(|e| AccountError::InvalidRequest(format!("cannot resolve {}: {e}", unverified.iss)))?;
        if !kid.starts_with(&format!("{}#", keys.did)) && !kid.starts_with('#') {
            return Err(AccountError::InvalidSignature);
        }
        let key = keys
            .key_for(&kid, Relationship::Authentication)
            .map_err(|e| AccountError::InvalidRequest(format!("the approval's key: {e}")))?;
        let claims: RecoveryApprovalClaims =
            jws::verify_with(approval, &key, TYP_RECOVERY_APPROVAL).map_err(|_| AccountError::InvalidSignature)?;
        self.check_audience(&claims.aud)?;
        let now = now_ms();
        claims.check_times(now / 1000)?;
        if claims.request != row.id || claims.key != row.agree_key {
            return Err(AccountError::InvalidRequest("the approval is for another request or key".into()));
        }
        let mut tx = self.db.pool().begin().await?;
        let account = self.user_of_did(&mut tx, &claims.sub).await;
        if account.map(|a| a.id).ok().as_deref() != Some(&user.id) {
            return Err(AccountError::InvalidRequest(format!(
                "the approval is for {}, not for {}",
                claims.sub, user.name
            )));
        }
        store::lock_user(&mut tx, &user.id, self.db.backend() == Backend::Postgres).await?;
        let row = Self::request_row(&mut tx, id).await?;
        if row.status != "open" || row.expires_at <= now {
            return Err(AccountError::Conflict(format!(
                "this recovery is {}: nothing to approve",
                status_now(&row, now)
            )));
        }
        if !store::insert_approval(&mut tx, id, &claims.iss, approval, now).await? {
            return Err(AccountError::Conflict(format!("{} approved this recovery already", claims.iss)));
        }
        let shown = self.show_request(&mut tx, &user, row).await?;
        tx.commit().await?;
        tracing::warn!(user = %user.name, request = %id, guardian = %claims.iss, "social recovery approved by a friend");
        ::metrics::counter!("sichat_recovery_events_total", "event" => "approved").increment(1);
        Ok(shown)
    }

    /// The account's recoveries, newest first: what its devices see and may cancel.
    pub async fn recoveries_of(&self, me: &AuthDevice) -> Result<Vec<RecoveryRequest>, AccountError> {
        let mut c = self.db.pool().acquire().await?;
        let user = store::user_by_id(&mut c, &me.user_id).await?.ok_or(AccountError::Unauthorized)?;
        let rows = store::recovery_requests(&mut c, &user.id, MAX_LISTED).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(self.show_request(&mut c, &user, row).await?);
        }
        Ok(out)
    }

    /// A device of the account cancels one open recovery, or all (`id` `None`): the user
    /// did not ask for it. How many were cancelled.
    pub async fn cancel_recovery(&self, me: &AuthDevice, id: Option<&str>) -> Result<u64, AccountError> {
        let mut tx = self.db.pool().begin().await?;
        if let Some(id) = id {
            let row = Self::request_row(&mut tx, id).await?;
            if row.user_id != me.user_id {
                return Err(AccountError::NotFound(not_found(id)));
            }
        }
        let n = store::close_recovery_requests(&mut tx, &me.user_id, id, "cancelled", Some(&me.device_id), now_ms())
            .await?;
        tx.commit().await?;
        if n > 0 {
            tracing::warn!(user = %me.user_name, device = %me.device_id, cancelled = n, "social recovery cancelled");
            ::metrics::counter!("sichat_recovery_events_total", "event" => "cancelled").increment(n);
        }
        Ok(n)
    }

    async fn request_row(c: &mut store::Conn, id: &str) -> Result<store::RecoveryRequestRow, AccountError> {
        if id.is_empty() || id.len() > 64 {
            return Err(AccountError::NotFound(not_found(id)));
        }
        store::recovery_request(c, id).await?.ok_or_else(|| AccountError::NotFound(not_found(id)))
    }

    async fn guardians_of(&self, c: &mut store::Conn, user_id: &str) -> Result<Guardians, AccountError> {
        stored_guardians(c, user_id).await?.ok_or_else(|| {
            AccountError::Forbidden("the account named no recovery friends (any more): nothing to approve".into())
        })
    }

    async fn show_request(
        &self,
        c: &mut store::Conn,
        user: &store::UserRow,
        row: store::RecoveryRequestRow,
    ) -> Result<RecoveryRequest, AccountError> {
        let guardians = stored_guardians(c, &user.id).await?.unwrap_or(Guardians { threshold: 0, dids: Vec::new() });
        let approvals = store::approvals(c, &row.id)
            .await?
            .into_iter()
            .map(|a| RecoveryApproval { guardian: a.guardian, approval: a.approval, approved_at: a.approved_at })
            .collect();
        Ok(RecoveryRequest {
            status: status_now(&row, now_ms()).to_owned(),
            id: row.id,
            did: self.node.user_did(&user.name)?.to_string(),
            name: user.name.clone(),
            key: row.agree_key,
            recovery_key: user.recovery_key.clone().unwrap_or_default(),
            threshold: guardians.threshold,
            guardians: guardians.dids,
            created_at: row.created_at,
            expires_at: row.expires_at,
            approvals,
        })
    }
}

fn status_now(row: &store::RecoveryRequestRow, now: i64) -> &str {
    if row.status == "open" && row.expires_at <= now {
        "expired"
    } else {
        &row.status
    }
}

fn not_found(id: &str) -> String {
    format!("no recovery request {id:?}: check the code your friend was given")
}

/// The friends the account named, if any.
pub(super) async fn stored_guardians(c: &mut store::Conn, user_id: &str) -> Result<Option<Guardians>, AccountError> {
    store::guardians(c, user_id)
        .await?
        .map(|raw| serde_json::from_str(&raw))
        .transpose()
        .map_err(|e| AccountError::Internal(format!("stored recovery friends: {e}")))
}
