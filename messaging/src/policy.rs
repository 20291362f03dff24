//! Each user's inbound policy: whom their node accepts messages from, and into which folder.

use crate::MessagingError;
use serde::{Deserialize, Serialize};
use sichat_core::did::Did;

/// Where an accepted message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Folder {
    Inbox,
    Requests,
}

impl Folder {
    pub fn as_str(self) -> &'static str {
        match self {
            Folder::Inbox => "inbox",
            Folder::Requests => "requests",
        }
    }

    pub fn parse(s: &str) -> Folder {
        if s == "inbox" {
            Folder::Inbox
        } else {
            Folder::Requests
        }
    }
}

/// A user's inbound policy (`GET`/`PUT /api/v1/messages/policy`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Senders hosted on this same node go to the inbox.
    pub accept_members: bool,
    /// A sender holding an in-force credential of one of these types, issued by this
    /// user, goes to the inbox.
    pub accept_credentials: Vec<String>,
    /// Everyone else goes to the rate-limited `requests` folder; false refuses them.
    pub requests: bool,
    /// DIDs, or node hosts (`example.com`, `localhost:8080`) whose every DID is refused.
    pub blocked: Vec<String>,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            accept_members: true,
            accept_credentials: vec!["FriendCredential".into()],
            requests: true,
            blocked: vec![],
        }
    }
}

/// At most this many blocked entries and credential types per policy.
const MAX_ENTRIES: usize = 1000;

impl Policy {
    /// Check a policy a user asked for, normalising what can be normalised.
    pub fn validated(mut self) -> Result<Self, MessagingError> {
        if self.blocked.len() > MAX_ENTRIES || self.accept_credentials.len() > MAX_ENTRIES {
            return Err(MessagingError::Invalid(format!("a policy holds at most {MAX_ENTRIES} entries per list")));
        }
        for t in &self.accept_credentials {
            if t.is_empty() || t.len() > 64 || !t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                return Err(MessagingError::Invalid(format!("`{t}` is not a credential type name")));
            }
        }
        for entry in &mut self.blocked {
            if entry.starts_with("did:") {
                Did::parse(entry).map_err(|e| MessagingError::Invalid(format!("blocked entry {entry}: {e}")))?;
            } else {
                *entry = entry.to_ascii_lowercase();
                if !is_host(entry) {
                    return Err(MessagingError::Invalid(format!(
                        "blocked entry `{entry}` is neither a DID nor a host name (like example.com or localhost:8080)"
                    )));
                }
            }
        }
        self.blocked.sort();
        self.blocked.dedup();
        self.accept_credentials.sort();
        self.accept_credentials.dedup();
        Ok(self)
    }

    /// Whether `sender` is blocked, by its DID or by its node's host.
    pub fn blocks(&self, sender: &Did) -> bool {
        let host = web_host(sender);
        self.blocked.iter().any(|b| b == sender.as_str() || host.as_deref() == Some(b.as_str()))
    }
}

/// The host (with port) of a `did:web`, as written in a URL: `did:web:localhost%3A8080:users:bob`
/// → `localhost:8080`.
pub fn web_host(did: &Did) -> Option<String> {
    let rest = did.as_str().strip_prefix("did:web:")?;
    let host = rest.split(':').next()?;
    Some(host.replace("%3A", ":").replace("%3a", ":").to_ascii_lowercase())
}

fn is_host(s: &str) -> bool {
    let (name, port) = match s.rsplit_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (s, None),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 253
        && name
            .split('.')
            .all(|l| !l.is_empty() && l.len() <= 63 && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    name_ok && port.is_none_or(|p| p.parse::<u16>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn did(s: &str) -> Did {
        Did::parse(s).unwrap()
    }

    #[test]
    fn blocks_by_did_and_by_host() {
        let p =
            Policy { blocked: vec!["EVIL.example".into(), "did:web:a.example:users:eve".into()], ..Policy::default() }
                .validated()
                .unwrap();
        assert!(p.blocks(&did("did:web:evil.example:users:x")));
        assert!(p.blocks(&did("did:web:a.example:users:eve")));
        assert!(!p.blocks(&did("did:web:a.example:users:bob")));
        assert!(!p.blocks(&did("did:web:evil.example.org:users:x")));
        let p = Policy { blocked: vec!["localhost:8081".into()], ..Policy::default() }.validated().unwrap();
        assert!(p.blocks(&did("did:web:localhost%3A8081:users:x")));
        assert!(!p.blocks(&did("did:web:localhost%3A8080:users:x")));
    }

    #[test]
    fn refuses_nonsense() {
        for bad in ["", "not a host", "did:nope", "host:99999"] {
            let p = Policy { blocked: vec![bad.into()], ..Policy::default() };
            assert!(p.validated().is_err(), "{bad} should be refused");
        }
        let p = Policy { accept_credentials: vec!["Friend Credential".into()], ..Policy::default() };
        assert!(p.validated().is_err());
    }
}
