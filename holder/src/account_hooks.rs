//! What the holder does for its own tables when something ends for an account
//! ([`sichat_accounts::hooks`]): the node's copies of the credentials the account held go
//! when it is removed, and travel with it when it moves to another node. Runs on the
//! accounts service's transaction.

use crate::store::{self, HolderPart};
use serde_json::Value;
use sichat_accounts::hooks::{AccountHooks, Arrival, ExportFuture, HookFuture, ImportError, ImportFuture, Removal};
use sqlx::AnyConnection;

/// The holder's [`AccountHooks`]; registered by the server at startup.
pub struct HolderAccountHooks;

impl AccountHooks for HolderAccountHooks {
    fn name(&self) -> &'static str {
        "holder"
    }

    fn account_removed<'a>(&'a self, c: &'a mut AnyConnection, removal: Removal<'a>) -> HookFuture<'a> {
        Box::pin(async move {
            sqlx::query("DELETE FROM holder_credentials WHERE user_id = $1")
                .bind(removal.user_id)
                .execute(&mut *c)
                .await?;
            Ok(())
        })
    }

    /// The credentials the node keeps for the account (`null`: none).
    fn export_account<'a>(&'a self, c: &'a mut AnyConnection, user_id: &'a str) -> ExportFuture<'a> {
        Box::pin(async move {
            let credentials = store::credentials_of(c, user_id).await?;
            if credentials.is_empty() {
                return Ok(Value::Null);
            }
            serde_json::to_value(HolderPart { credentials }).map_err(|e| sqlx::Error::Encode(Box::new(e)))
        })
    }

    /// Keep the arriving account's credentials, each checked as the node checks one it is
    /// given, before any is written.
    fn import_account<'a>(&'a self, c: &'a mut AnyConnection, arrival: Arrival<'a>, part: Value) -> ImportFuture<'a> {
        Box::pin(async move {
            if part.is_null() {
                return Ok(());
            }
            let invalid = |why: String| ImportError::Invalid(format!("holder part: {why}"));
            let part: HolderPart = serde_path_to_error::deserialize(part).map_err(|e| invalid(e.to_string()))?;
            part.check().map_err(invalid)?;
            let ids: Vec<&str> = part.credentials.iter().map(|m| m.id.as_str()).collect();
            if let Some(id) = store::kept_ids(c, arrival.user_id, &ids).await?.first() {
                return Err(invalid(format!("credential {id} is already kept for this account")));
            }
            for m in &part.credentials {
                store::insert_moved(c, arrival.user_id, m).await?;
            }
            Ok(())
        })
    }
}
