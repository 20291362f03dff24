//! `sichat export` (1→0, the account leaves its node): the account's issuing keys go to the
//! root-key wallet, sealed to a key it just made, so that it can keep re-signing the status
//! lists of what it issued on a static web host. Only a request signed by the root (or
//! recovery) key gets them; nothing on the node changes.

use super::*;
use root_ops::RootOp;
use sichat_core::ids::b64url;
use sichat_core::jwe;
use sichat_core::keys::X25519Public;

impl Accounts {
    /// Every issuing key of the account, opened (for the wallet, or a move's bundle).
    pub(super) async fn opened_issuing_keys(
        &self,
        c: &mut store::Conn,
        user_id: &str,
    ) -> Result<Vec<ExportedIssuingKey>, AccountError> {
        let mut keys = Vec::new();
        for k in store::all_issuing_keys(c, user_id).await? {
            let secret = self.master.open(&k.sealed_secret, &format!("acct_issuing_keys:{}", k.id))?;
            keys.push(ExportedIssuingKey {
                id: k.id,
                algorithm: k.algorithm,
                public_key: k.public_key,
                secret: b64url(&secret),
                created_at: k.created_at,
            });
        }
        Ok(keys)
    }

    /// Root operation `export_issuing_keys`.
    pub async fn export_issuing_keys(&self, request: &str) -> Result<SealedIssuingKeys, AccountError> {
        let RootOp { mut tx, user, claims, .. } = self.begin_root_op(request).await?;
        let RootOperation::ExportIssuingKeys { recipient_key } = &claims.op else {
            return Err(AccountError::InvalidRequest("this endpoint takes only an export_issuing_keys".into()));
        };
        let recipient = X25519Public::from_jwk(recipient_key)
            .ok_or_else(|| AccountError::InvalidRequest("recipient_key must be a public X25519 JWK".into()))?;
        let keys = self.opened_issuing_keys(&mut tx, &user.id).await?;
        // The challenge the request used is spent.
        tx.commit().await?;
        let plain =
            zeroize::Zeroizing::new(serde_json::to_vec(&keys).map_err(|e| AccountError::Internal(e.to_string()))?);
        let sealed = jwe::seal(&recipient, TYP_ISSUING_KEYS, &plain)?;
        tracing::info!(user = %user.name, keys = keys.len(), "issuing keys exported to the root-key wallet");
        Ok(SealedIssuingKeys { sealed })
    }
}
