//! A standby as a did:webvh watcher (did:webvh §3.7.9, watcher API v1.0): it mirrors the
//! DID logs of the accounts it stands by for, their status lists and schemas, so that verifiers
//! still resolve them and read their status while the account's node is down. The log's
//! `watchers` parameter names it; resolvers that saw that version turn to it
//! (`sichat_core::resolver`).
//!
//! - Every standby round it fetches each log from the DID's host, verifies all of it, and
//!   keeps it unless it holds a longer one (a host cannot roll it back); then the status
//!   lists and schemas the account's node lists (`<DID base>/resources`), those under the
//!   DID's own URL.
//! - `GET /webvh-watcher/log?scid=` serves the log, `GET /webvh-watcher/resource?scid=&path=`
//!   a resource by its path under the DID's URL, and `POST /webvh-watcher/log?did=` (the
//!   notification) mirrors that DID again now.
//!
//! A mirror cannot forge: the log verifies against its SCID and the lists against the
//! issuer's keys, wherever they are read from.

use super::store;
use crate::{Messaging, MessagingError};
use serde::Deserialize;
use sichat_core::ids::now_ms;

/// Where this node's watcher API is, under its public URL.
pub const WATCHER_PATH: &str = "webvh-watcher";
/// Resources mirrored per log, at most.
const MAX_FILES: usize = 64;
/// Largest resource mirrored (a signed 131,072-bit status list is about 25 KB).
const MAX_FILE_BYTES: usize = 256 * 1024;

/// What the account's node says it publishes under the DID (`GET <DID base>/resources`).
#[derive(Deserialize)]
struct Resources {
    status_lists: Vec<String>,
    schemas: Vec<String>,
}

impl Messaging {
    /// This node's watcher URL, as the log's `watchers` parameter names it.
    pub fn watcher_url(&self) -> String {
        self.node().url(WATCHER_PATH)
    }

    /// Mirror every account this node stands by for, and forget those it no longer does.
    pub(crate) async fn refresh_mirrors(&self) -> Result<(), MessagingError> {
        let mut c = self.db.pool().acquire().await?;
        store::forget_unmirrored(&mut c).await?;
        let dids = store::mirrored_dids(&mut c).await?;
        drop(c);
        for (did, account) in dids {
            if let Err(why) = self.mirror(&did, &account).await {
                tracing::debug!(%did, %why, "could not mirror the DID log now");
            }
        }
        Ok(())
    }

    /// `POST /webvh-watcher/log?did=`: mirror that DID again now, if this node stands by
    /// for it.
    pub async fn watcher_notified(&self, did: &str) -> Result<(), MessagingError> {
        let account = store::mirrors_did(&mut *self.db.pool().acquire().await?, did)
            .await?
            .filter(|_| did.starts_with("did:webvh:"))
            .ok_or_else(|| MessagingError::NotFound(format!("this watcher does not mirror {did}")))?;
        self.mirror(did, &account).await.map_err(MessagingError::Invalid)
    }

    /// `GET /webvh-watcher/log?scid=`.
    pub async fn mirrored_log(&self, scid: &str) -> Result<String, MessagingError> {
        store::mirrored_log(&mut *self.db.pool().acquire().await?, scid)
            .await?
            .ok_or_else(|| MessagingError::NotFound("this watcher mirrors no DID with that SCID".into()))
    }

    /// `GET /webvh-watcher/resource?scid=&path=`: content type and body.
    pub async fn mirrored_resource(&self, scid: &str, path: &str) -> Result<(String, Vec<u8>), MessagingError> {
        store::mirrored_file(&mut *self.db.pool().acquire().await?, scid, path.trim_start_matches('/'))
            .await?
            .ok_or_else(|| MessagingError::NotFound("this watcher mirrors no such resource".into()))
    }

    async fn mirror(&self, did: &str, account: &str) -> Result<(), String> {
        let resolver = self.resolver();
        let url = resolver.webvh_log_url(did).map_err(|e| e.to_string())?;
        let (log, raw) = resolver.verified_log(did, &url).await.map_err(|e| e.to_string())?;
        let db = |e: sqlx::Error| e.to_string();
        let mut c = self.db.pool().acquire().await.map_err(db)?;
        let held = store::mirror_entries(&mut c, &log.scid).await.map_err(db)?.unwrap_or(0);
        if held > log.entries as i64 {
            tracing::warn!(%did, held, served = log.entries, "the DID's host serves an older log than this mirror: kept");
            return Err("the host serves an older log".into());
        }
        let entry =
            store::MirroredLog { scid: &log.scid, did, account, log: &raw, entries: log.entries as i64, now: now_ms() };
        store::put_mirror(&mut c, entry).await.map_err(db)?;
        drop(c);

        let base = resolver.webvh_base_url(did).map_err(|e| e.to_string())?;
        let fetcher = resolver.fetcher();
        let published: Resources = match fetcher.get_json(&format!("{base}resources")).await {
            Ok(v) => serde_json::from_value(v).map_err(|e| format!("the resources index: {e}"))?,
            Err(e) => return Err(format!("the resources index: {e}")),
        };
        let lists = published.status_lists.iter().map(|u| (u, "application/vc+jwt"));
        let schemas = published.schemas.iter().map(|u| (u, "application/schema+json"));
        for (url, accept) in lists.chain(schemas).take(MAX_FILES) {
            let Some(path) = url.strip_prefix(&base).filter(|p| !p.is_empty() && !p.contains(['?', '#'])) else {
                continue;
            };
            let body = fetcher.get_limited(url, accept, MAX_FILE_BYTES).await.map_err(|e| e.to_string())?;
            let content_type = match (accept, body.first()) {
                ("application/vc+jwt", Some(b'{')) => "application/vc",
                _ => accept,
            };
            let mut c = self.db.pool().acquire().await.map_err(db)?;
            store::put_mirror_file(&mut c, &log.scid, path, content_type, &body, now_ms()).await.map_err(db)?;
        }
        Ok(())
    }
}
