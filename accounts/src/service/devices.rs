//! The account's devices as its sessions see them: the list, and a device revoking another
//! when the root key allowed it (`set_device_policy`). The root key's own operations on
//! devices are in `root_ops`.

use super::*;

impl Accounts {
    /// The account's active devices; with `revoked`, those another device revoked instead
    /// (which the root key may reinstate).
    pub async fn devices(&self, me: &AuthDevice, revoked: bool) -> Result<Vec<Device>, AccountError> {
        let mut conn = self.conn().await?;
        let rows = match revoked {
            false => store::active_devices(&mut conn, &me.user_id).await?,
            true => store::revoked_by_devices(&mut conn, &me.user_id).await?,
        };
        Ok(rows
            .into_iter()
            .map(|d| Device {
                id: d.id,
                name: d.name,
                sign_key: d.sign_key,
                agree_key: d.agree_key,
                created_at: d.created_at,
                cert_expires_at: d.cert_expires_at,
                revoked_at: d.revoked_at,
                revoked_by: d.revoked_by,
            })
            .collect())
    }

    /// `me` revokes another device of its account, as the root key would, when the account
    /// allows its devices to (`set_device_policy`). Its keys leave the `did:web` document
    /// at once; the did:webvh log follows when the root key next signs (`sync_did_log`).
    pub async fn revoke_by_device(&self, me: &AuthDevice, device_id: &str) -> Result<(), AccountError> {
        if device_id == me.device_id {
            return Err(AccountError::InvalidRequest(
                "a device cannot revoke itself this way: revoke another device, or use the root key".into(),
            ));
        }
        let now = now_ms();
        let mut tx = self.db.pool().begin().await?;
        let user = store::user_by_id(&mut tx, &me.user_id).await?.ok_or(AccountError::Unauthorized)?;
        self.check_active(&mut tx, &user).await?;
        store::lock_user(&mut tx, &user.id, self.db.backend() == Backend::Postgres).await?;
        if !user.devices_may_revoke {
            return Err(AccountError::Forbidden(
                "this account's devices may not revoke each other: allow it from the wallet that holds the root key \
                 (sichat device policy --devices-may-revoke on), or revoke from there"
                    .into(),
            ));
        }
        if store::move_in_flight(&mut tx, &user.id, now).await?.is_some() {
            return Err(AccountError::Conflict("the account is moving: finish the move first".into()));
        }
        let active = store::active_devices(&mut tx, &user.id).await?;
        if !active.iter().any(|d| d.id == device_id) {
            return Err(AccountError::NotFound(format!("no active device {device_id} on this account")));
        }
        store::revoke_device(&mut tx, device_id, &user.id, now).await?;
        store::set_revoked_by(&mut tx, device_id, &me.device_id).await?;
        self.run_device_revoked(&mut tx, &user.id, device_id).await?;
        tx.commit().await?;
        for hook in self.hooks() {
            hook.device_revoked_committed(Revocation { user_id: &user.id, device_id });
        }
        tracing::warn!(user = %user.name, device = device_id, by = %me.device_id, "device revoked by another device");
        Ok(())
    }
}
