//! Requests signed by the account's root key: add or revoke a device, rotate the root,
//! upgrade or move the DID. Every one is checked (signature, audience, freshness,
//! single-use challenge) in the transaction that makes the change.

use super::*;

/// The most certificates one `renew_devices` carries.
const MAX_RENEWALS: usize = 100;

/// A root-key-signed request that passed its checks, in its transaction.
pub(super) struct RootOp {
    pub(super) tx: sqlx::Transaction<'static, sqlx::Any>,
    pub(super) user: store::UserRow,
    pub(super) root: Ed25519Public,
    /// The key that signed the request: the root key, the recovery key (`recover`) or the
    /// last key of a `catch_up` chain.
    pub(super) signer: Ed25519Public,
    pub(super) claims: RootOpClaims,
    pub(super) now: i64,
}

impl Accounts {
    /// The checks every request signed by the root key passes (signature, audience,
    /// freshness, single-use challenge), in a transaction that holds the account.
    pub(super) async fn begin_root_op(&self, request: &str) -> Result<RootOp, AccountError> {
        let unverified: RootOpClaims = jws::unverified_payload(request)?;
        let name = self.name_in_did(&unverified.iss)?;
        let now = now_ms();
        let mut tx = self.db.pool().begin().await?;
        let user = store::user_by_name(&mut tx, name.as_str()).await?.ok_or(AccountError::Unauthorized)?;
        self.check_active(&mut tx, &user).await?;
        store::lock_user(&mut tx, &user.id, self.db.backend() == Backend::Postgres).await?;
        let root = Ed25519Public::from_multibase(&user.root_key)?;
        // `recover` alone is signed by the recovery key; everything else by the root key.
        let signer = match &unverified.op {
            RootOperation::Recover { .. } => {
                let key = user.recovery_key.as_deref().ok_or_else(|| {
                    AccountError::Forbidden("this account named no recovery key: it cannot be recovered".into())
                })?;
                Ed25519Public::from_multibase(key)?
            }
            RootOperation::CatchUp { rotations, .. } => follow_rotations(&root, &unverified.iss, rotations)?,
            _ => root,
        };
        let claims: RootOpClaims = jws::verify(request, &signer, TYP_ROOT_OP)?;
        self.check_audience(&claims.aud)?;
        Self::check_fresh(claims.iat)?;
        if !store::take_challenge(&mut tx, &claims.challenge, CHALLENGE_PURPOSE_REQUEST, None, now).await? {
            return Err(AccountError::ChallengeInvalid);
        }
        Ok(RootOp { tx, user, root, signer, claims, now })
    }

    /// Refuse an account that was removed, or moved to another node (saying where).
    pub(super) async fn check_active(&self, c: &mut store::Conn, user: &store::UserRow) -> Result<(), AccountError> {
        match user.status.as_str() {
            "active" => Ok(()),
            "moved" => {
                let to = store::finished_move(c, &user.id, "out").await?.and_then(|m| m.peer_origin);
                Err(AccountError::AccountMoved { name: user.name.clone(), to: to.unwrap_or_default() })
            }
            _ => Err(AccountError::AccountRemoved(user.name.clone())),
        }
    }

    /// A request signed by the account's root key: add or revoke a device, rotate the root.
    pub async fn root_operation(&self, request: &str) -> Result<Account, AccountError> {
        let RootOp { mut tx, user, root, signer, claims, now } = self.begin_root_op(request).await?;
        let name = UserName::parse(&user.name)?;
        if matches!(claims.op, RootOperation::MoveOut { .. }) {
            return Err(AccountError::InvalidRequest("a move_out is sent to /api/v1/moves/export".into()));
        }
        if let Some(m) = store::move_in_flight(&mut tx, &user.id, now).await? {
            if !matches!(claims.op, RootOperation::MoveDone { .. } | RootOperation::MoveCancel { .. }) {
                return Err(AccountError::Conflict(format!(
                    "the account is moving to {}: finish the move (sichat move) before changing it",
                    m.peer_origin.unwrap_or_default()
                )));
            }
        }
        let did = self.node.user_did(name.as_str())?;
        let mut revoked = Vec::new();
        match &claims.op {
            RootOperation::AddDevice { certificate } => {
                let cert = DeviceCertificate::verify(certificate, &root)?;
                if cert.iss != did.as_str() {
                    return Err(AccountError::InvalidCertificate(format!("issued for {}, not for {did}", cert.iss)));
                }
                self.insert_device(&mut tx, &user.id, &cert, certificate, now).await?;
            }
            RootOperation::RevokeDevice { device_id, last_device } => {
                let active = store::active_devices(&mut tx, &user.id).await?;
                if !active.iter().any(|d| &d.id == device_id) {
                    return Err(AccountError::NotFound(format!("no active device {device_id} on this account")));
                }
                if active.len() == 1 && !last_device {
                    return Err(AccountError::LastDevice(device_id.clone()));
                }
                store::revoke_device(&mut tx, device_id, &user.id, now).await?;
                self.run_device_revoked(&mut tx, &user.id, device_id).await?;
                revoked.push(device_id.clone());
            }
            RootOperation::RenewDevices { certificates } => {
                if certificates.is_empty() || certificates.len() > MAX_RENEWALS {
                    return Err(AccountError::InvalidRequest(format!("renew 1 to {MAX_RENEWALS} certificates")));
                }
                let active = store::active_devices(&mut tx, &user.id).await?;
                let mut renewed = Vec::new();
                for token in certificates {
                    let cert = DeviceCertificate::verify(token, &root)?;
                    let known = active
                        .iter()
                        .find(|d| d.id == cert.sub && d.sign_key == cert.sign_key && d.agree_key == cert.agree_key);
                    let Some(device) = known.filter(|_| cert.iss == did.as_str()) else {
                        return Err(AccountError::InvalidCertificate(format!(
                            "{} is not an active device of {did} with these keys",
                            cert.sub
                        )));
                    };
                    if renewed.contains(&cert.sub) {
                        return Err(AccountError::InvalidRequest(format!("{} is renewed twice", cert.sub)));
                    }
                    if cert.exp * 1000 < device.cert_expires_at {
                        return Err(AccountError::InvalidCertificate(format!(
                            "the certificate of {} would end earlier than the one it holds",
                            cert.sub
                        )));
                    }
                    store::recertify_device(&mut tx, &cert.sub, token, cert.exp * 1000).await?;
                    renewed.push(cert.sub);
                }
            }
            RootOperation::SetRecoveryKey { recovery_key, guardians, history_key } => {
                let key = Ed25519Public::from_multibase(recovery_key)?;
                if key == root {
                    return Err(AccountError::InvalidRequest(
                        "the recovery key must be another key than the root key".into(),
                    ));
                }
                if let Some(g) = guardians {
                    g.check(did.as_str())?;
                }
                let guardians = guardians
                    .as_ref()
                    .map(serde_json::to_string)
                    .transpose()
                    .map_err(|e| AccountError::Internal(e.to_string()))?;
                store::set_recovery_key(&mut tx, &user.id, Some(recovery_key)).await?;
                store::set_guardians(&mut tx, &user.id, guardians.as_deref()).await?;
                if let Some(key) = history_key {
                    sichat_core::keys::X25519Public::from_multibase(key).map_err(|e| {
                        AccountError::InvalidRequest(format!("history_key must be an X25519 key, multibase: {e}"))
                    })?;
                }
                store::set_history_key(&mut tx, &user.id, history_key.as_deref()).await?;
                // The friends' shares rebuild the old key: no request for it can succeed.
                store::close_recovery_requests(&mut tx, &user.id, None, "void", None, now).await?;
            }
            RootOperation::SetDevicePolicy { devices_may_revoke } => {
                store::set_devices_may_revoke(&mut tx, &user.id, *devices_may_revoke).await?;
            }
            RootOperation::ReinstateDevice { certificate } => {
                let cert = DeviceCertificate::verify(certificate, &root)?;
                let device = store::device(&mut tx, &cert.sub).await?;
                let Some(device) = device.filter(|d| d.user_id == user.id && d.revoked_by.is_some()) else {
                    return Err(AccountError::NotFound(format!(
                        "no device {} of this account that another device revoked",
                        cert.sub
                    )));
                };
                if cert.iss != did.as_str() || device.sign_key != cert.sign_key || device.agree_key != cert.agree_key {
                    return Err(AccountError::InvalidCertificate(format!(
                        "not a certificate for {}'s keys, for {did}",
                        cert.sub
                    )));
                }
                store::reinstate_device(&mut tx, &cert.sub, certificate, cert.exp * 1000).await?;
            }
            RootOperation::SyncDidLog => {}
            RootOperation::RotateRoot { new_root_key, certificates } => {
                revoked =
                    self.replace_root(&mut tx, &user, &root, &did, new_root_key, certificates, false, now).await?;
            }
            RootOperation::CatchUp { certificates, did_log, .. } => {
                self.follow_lost_entries(&mut tx, &user.id, did_log, &signer, now).await?;
                let new_root_key = signer.to_multibase();
                revoked =
                    self.replace_root(&mut tx, &user, &root, &did, &new_root_key, certificates, true, now).await?;
                tracing::warn!(user = %name, "root key caught up after a restore");
            }
            // The devices may be new: the one recovering has lost every other.
            RootOperation::Recover { new_root_key, certificates } => {
                revoked = self.replace_root(&mut tx, &user, &root, &did, new_root_key, certificates, true, now).await?;
                store::close_recovery_requests(&mut tx, &user.id, None, "done", None, now).await?;
                tracing::warn!(user = %name, "account recovered with its recovery key: new root key");
            }
            RootOperation::UpgradeDid { entry } => self.upgrade_did(&mut tx, &user, entry, now).await?,
            RootOperation::MoveDone { to, did } => {
                self.move_done(&mut tx, &user, to, did, claims.did_log_entry.as_deref(), now).await?;
                tx.commit().await?;
                tracing::info!(user = %name, to = %to, did = %did, "account moved away");
                // What is left here: the old DID document, for its old DIDs.
                return Ok(Account {
                    did_document_url: self.node.url(&format!("users/{}/did.json", user.name)),
                    did: self.node.user_did(&user.name)?.to_string(),
                    node_did: self.node.did().to_string(),
                    quota_available: 0,
                    quota: user.quota,
                    name: user.name,
                    invited_by: user.invited_by,
                    created_at: user.created_at,
                });
            }
            RootOperation::MoveOut { .. } => {
                return Err(AccountError::InvalidRequest("a move_out is sent to /api/v1/moves/export".into()))
            }
            RootOperation::SetStandby { standby } => {
                if let Some(s) = standby {
                    Did::parse(&s.node_did)?;
                    let url = url::Url::parse(&s.endpoint)
                        .ok()
                        .filter(|u| matches!(u.scheme(), "https" | "http") && u.host_str().is_some())
                        .ok_or_else(|| {
                            AccountError::InvalidRequest("the standby endpoint must be an http(s) URL".into())
                        })?;
                    if s.node_did == self.node.did().as_str() || url.origin() == self.node.public_url().origin() {
                        return Err(AccountError::InvalidRequest("a standby is another node, not this one".into()));
                    }
                    let watcher = s.watcher.as_deref().map(url::Url::parse);
                    if watcher.is_some_and(|w| w.map_or(true, |w| w.origin() != url.origin())) {
                        return Err(AccountError::InvalidRequest(
                            "the standby's watcher must be a URL of the standby node".into(),
                        ));
                    }
                }
                let pair = standby.as_ref().map(|s| (s.node_did.as_str(), s.endpoint.as_str()));
                store::set_standby(&mut tx, &user.id, pair).await?;
            }
            RootOperation::ExportIssuingKeys { .. } => {
                return Err(AccountError::InvalidRequest(
                    "an export_issuing_keys is sent to /api/v1/account/issuing-keys".into(),
                ))
            }
            RootOperation::MoveCancel { to } => self.move_cancel(&mut tx, &user, to, now).await?,
            RootOperation::FollowHost { did } => {
                self.follow_host(&mut tx, &user, did, claims.did_log_entry.as_deref(), now).await?
            }
        }
        if !matches!(
            claims.op,
            RootOperation::UpgradeDid { .. }
                | RootOperation::FollowHost { .. }
                | RootOperation::MoveCancel { .. }
                | RootOperation::RenewDevices { .. }
                | RootOperation::SetDevicePolicy { .. }
        ) {
            self.append_did_entry(&mut tx, &user.id, claims.did_log_entry.as_deref(), now).await?;
        }
        tx.commit().await?;
        for device_id in &revoked {
            for hook in self.hooks() {
                hook.device_revoked_committed(Revocation { user_id: &user.id, device_id });
            }
        }
        tracing::info!(user = %name, op = op_name(&claims.op), "root operation");
        self.account(&user.id).await
    }
}

impl Accounts {
    /// `rotate_root` and `recover`: `new_root_key` in place of `root`, each device in
    /// `certificates` re-blessed by it (or, with `may_add`, added), every other device
    /// revoked. The devices revoked.
    #[allow(clippy::too_many_arguments)]
    async fn replace_root(
        &self,
        tx: &mut store::Conn,
        user: &store::UserRow,
        root: &Ed25519Public,
        did: &Did,
        new_root_key: &str,
        certificates: &[String],
        may_add: bool,
        now: i64,
    ) -> Result<Vec<String>, AccountError> {
        let new_root = Ed25519Public::from_multibase(new_root_key)?;
        if new_root == *root {
            return Err(AccountError::InvalidRequest("the new root key is the current one".into()));
        }
        if user.recovery_key.as_deref() == Some(new_root_key) {
            return Err(AccountError::InvalidRequest(
                "the new root key must be another key than the recovery key".into(),
            ));
        }
        let active = store::active_devices(tx, &user.id).await?;
        let mut kept = Vec::new();
        for token in certificates {
            let cert = DeviceCertificate::verify(token, &new_root)?;
            if cert.iss != did.as_str() {
                return Err(AccountError::InvalidCertificate(format!("issued for {}, not for {did}", cert.iss)));
            }
            if kept.contains(&cert.sub) {
                return Err(AccountError::InvalidRequest(format!("{} is named twice", cert.sub)));
            }
            let known = active
                .iter()
                .find(|d| d.id == cert.sub && d.sign_key == cert.sign_key && d.agree_key == cert.agree_key);
            match known {
                Some(_) => store::recertify_device(tx, &cert.sub, token, cert.exp * 1000).await?,
                None if may_add && store::device(tx, &cert.sub).await?.is_none() => {
                    self.insert_device(tx, &user.id, &cert, token, now).await?
                }
                None => {
                    return Err(AccountError::InvalidCertificate(format!(
                        "{} is not an active device of {did}",
                        cert.sub
                    )))
                }
            }
            kept.push(cert.sub);
        }
        if kept.is_empty() {
            return Err(AccountError::InvalidRequest(
                "keep at least one device, re-blessed by the new root key".into(),
            ));
        }
        let mut revoked = Vec::new();
        for d in active.iter().filter(|d| !kept.contains(&d.id)) {
            store::revoke_device(tx, &d.id, &user.id, now).await?;
            self.run_device_revoked(tx, &user.id, &d.id).await?;
            revoked.push(d.id.clone());
        }
        store::set_root_key(tx, &user.id, new_root_key).await?;
        Ok(revoked)
    }
}

fn op_name(op: &RootOperation) -> &'static str {
    match op {
        RootOperation::AddDevice { .. } => "add_device",
        RootOperation::RevokeDevice { .. } => "revoke_device",
        RootOperation::RenewDevices { .. } => "renew_devices",
        RootOperation::RotateRoot { .. } => "rotate_root",
        RootOperation::CatchUp { .. } => "catch_up",
        RootOperation::SetRecoveryKey { .. } => "set_recovery_key",
        RootOperation::SetDevicePolicy { .. } => "set_device_policy",
        RootOperation::ReinstateDevice { .. } => "reinstate_device",
        RootOperation::SyncDidLog => "sync_did_log",
        RootOperation::Recover { .. } => "recover",
        RootOperation::UpgradeDid { .. } => "upgrade_did",
        RootOperation::MoveOut { .. } => "move_out",
        RootOperation::ExportIssuingKeys { .. } => "export_issuing_keys",
        RootOperation::SetStandby { .. } => "set_standby",
        RootOperation::MoveDone { .. } => "move_done",
        RootOperation::FollowHost { .. } => "follow_host",
        RootOperation::MoveCancel { .. } => "move_cancel",
    }
}

/// The key a chain of rotations leads to from `root`, the key the node holds: each one
/// signed by the key before it, for `did`. Rotations before `root`'s are skipped (the node
/// had them); a chain that never starts at `root` is refused (another account's, or an
/// older one replayed).
fn follow_rotations(root: &Ed25519Public, did: &str, rotations: &[String]) -> Result<Ed25519Public, AccountError> {
    if rotations.is_empty() || rotations.len() > MAX_ROTATIONS {
        return Err(AccountError::InvalidRequest(format!("catch up with 1 to {MAX_ROTATIONS} rotations")));
    }
    let ours = root.to_multibase();
    let start = rotations
        .iter()
        .position(|r| jws::unverified_payload::<RootRotation>(r).is_ok_and(|r| r.prev == ours))
        .ok_or_else(|| {
            AccountError::Forbidden(format!(
                "none of these rotations starts at the root key this node holds ({ours}): nothing to catch up from"
            ))
        })?;
    let mut current = *root;
    for token in &rotations[start..] {
        let r: RootRotation =
            jws::verify(token, &current, TYP_ROOT_ROTATION).map_err(|_| AccountError::InvalidSignature)?;
        if r.iss != did || r.prev != current.to_multibase() {
            return Err(AccountError::InvalidRequest(format!("a rotation is for {}, or out of order", r.iss)));
        }
        current = Ed25519Public::from_multibase(&r.next)?;
    }
    Ok(current)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sichat_core::keys::Ed25519KeyPair;

    const DID: &str = "did:web:node.example:users:alice";

    fn rotation(from: &Ed25519KeyPair, to: &Ed25519KeyPair, did: &str) -> String {
        let r = RootRotation {
            iss: did.into(),
            prev: from.public().to_multibase(),
            next: to.public().to_multibase(),
            iat: 0,
        };
        jws::sign(from, TYP_ROOT_ROTATION, None, &r).expect("sign")
    }

    #[test]
    fn a_chain_leads_from_the_held_key_to_the_newest() {
        let k: Vec<Ed25519KeyPair> = (0..4).map(|_| Ed25519KeyPair::generate()).collect();
        let chain = vec![rotation(&k[0], &k[1], DID), rotation(&k[1], &k[2], DID), rotation(&k[2], &k[3], DID)];
        assert_eq!(follow_rotations(&k[0].public(), DID, &chain).unwrap(), k[3].public());
        // A node restored to k1 skips what it had.
        assert_eq!(follow_rotations(&k[1].public(), DID, &chain).unwrap(), k[3].public());
        // A node at k3 (or any key not in the chain): nothing to follow.
        assert!(follow_rotations(&k[3].public(), DID, &chain).is_err());
        assert!(follow_rotations(&Ed25519KeyPair::generate().public(), DID, &chain).is_err());
        // Out of order, forged, for another DID, empty: refused.
        let swapped = vec![chain[1].clone(), chain[0].clone()];
        assert_eq!(follow_rotations(&k[0].public(), DID, &swapped).unwrap(), k[1].public(), "only what follows k0");
        let forged = vec![chain[0].clone(), rotation(&k[3], &k[2], DID)];
        assert!(matches!(follow_rotations(&k[0].public(), DID, &forged), Err(AccountError::InvalidSignature)));
        let other = vec![rotation(&k[0], &k[1], "did:web:node.example:users:eve")];
        assert!(follow_rotations(&k[0].public(), DID, &other).is_err());
        assert!(follow_rotations(&k[0].public(), DID, &[]).is_err());
    }
}
