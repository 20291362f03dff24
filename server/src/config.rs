//! Configuration: defaults that run out of the box, then a TOML file, then `SICHAT_*`
//! environment variables, then command-line flags. Unknown keys in the file are errors.

use crate::proxy::{Cidr, ProxyHeader, TrustedProxies};
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use sichat_oidc::clients::{Registration, RegistrationPolicy};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use url::Url;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the node keeps its SQLite database and master key.
    pub data_dir: PathBuf,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The external base URL. Its host (and port) make the node's `did:web`.
    pub public_url: Option<Url>,
    /// `postgres://…` for PostgreSQL. Default: SQLite in the data directory.
    pub database_url: Option<String>,
    pub log_format: LogFormat,
    /// Largest request body accepted.
    pub body_limit_bytes: usize,
    /// Largest body of the account-move routes (`/api/v1/moves/…`), whose sealed bundle
    /// holds a whole account.
    pub move_body_limit_bytes: usize,
    pub request_timeout_secs: u64,
    /// How long a connection may take to send a request's head, counted from when it is
    /// opened or has had its last response (so also how long an idle keep-alive lasts).
    pub header_read_timeout_secs: u64,
    /// A connection that moves no byte either way for this long is closed. Longer than
    /// `request_timeout_secs`.
    pub idle_timeout_secs: u64,
    /// Open connections one client address may hold (trusted proxies are not capped).
    pub max_connections_per_address: usize,
    /// Reverse proxies (addresses or networks, `["10.0.0.0/8", "::1"]`) whose
    /// `proxy_header` names the client. Every per-address limit keys on that client
    /// address; from any other peer the header is ignored.
    pub trusted_proxies: Vec<Cidr>,
    /// The header those proxies write: `x-forwarded-for` (default) or `forwarded` (RFC 7239).
    pub proxy_header: ProxyHeader,
    /// Requests per second per client address, and the burst allowed above it.
    pub rate_limit_per_second: u32,
    pub rate_limit_burst: u32,
    pub session_ttl_secs: i64,
    pub invite_ttl_hours: i64,
    /// How long a node keeps answering for an account that moved away: its DID log and old
    /// `did:web` document, redirects of its other URLs, and `recipient_moved` to senders.
    pub moved_account_days: i64,
    /// Quota of the owner invite printed at first start.
    pub owner_quota: i64,
    /// Let the verifier reach loopback and private addresses (and plain HTTP there) when
    /// resolving DIDs and fetching status lists. Default: only when the node's own public
    /// URL is on loopback (a development node).
    pub allow_local_network: Option<bool>,
    /// How long a resolved DID document is used before it is fetched again.
    pub did_cache_secs: u64,
    /// Who may register OpenID clients: `open` (default), `off`, `invite-only` (initial
    /// access tokens from `sichatd admin client-token`) or `allow-list`.
    pub oidc_registration: RegistrationPolicy,
    /// Under `allow-list`: the hosts clients' redirect URIs may use.
    pub oidc_allowed_hosts: Vec<String>,
    /// `pairwise` (default: sites cannot correlate a user) or `public`, for clients that do
    /// not choose.
    pub oidc_subject_type: String,
    /// Replace the ID token signing keys after this many days; 0 never rotates on its own.
    pub oidc_key_rotation_days: u32,
    /// Largest message (forward with its envelope) a node takes, from devices and nodes.
    pub msg_max_bytes: usize,
    /// Most keys one message may be encrypted to.
    pub msg_max_recipient_keys: usize,
    /// Bytes each user's mailbox may hold; the oldest messages are dropped first.
    pub msg_quota_bytes: u64,
    /// Messages not picked up after this many days are dropped.
    pub msg_max_age_days: u32,
    /// How long the outbox keeps retrying a node that does not answer.
    pub msg_retry_days: u32,
    /// Messages per second (burst: four times as many) that one device may send, one
    /// other node may deliver, and one sender may have delivered.
    pub msg_send_per_second: u32,
    pub msg_node_per_second: u32,
    pub msg_sender_per_second: u32,
    /// Requests per second to the messaging endpoints per client address, before any
    /// signature or session is checked.
    pub msg_ip_per_second: u32,
    /// Messages a stranger may leave in a user's requests folder per day, and all
    /// strangers together.
    pub msg_requests_per_sender_per_day: u32,
    pub msg_requests_per_day: u32,
    /// How often a device's live connection re-checks its session and its queue.
    pub msg_pickup_recheck_secs: u64,
    /// How often the nodes this one delivered to (in the last 6 days) are asked whether they
    /// were restored from a backup since; what they lost is delivered again.
    pub msg_peer_check_secs: u64,
    /// How often this node, as a standby for accounts of other nodes, hands over what it
    /// kept for them while their node was down.
    pub msg_standby_handover_secs: u64,
    /// Deliveries in flight to one other node at once: keep it under that node's
    /// `max_connections_per_address` (64 by default).
    pub msg_deliveries_per_node: u32,
    /// Of `msg_quota_bytes`, what the requests folder (strangers) may hold (at most the
    /// whole quota); requests are dropped first and never make room by dropping the inbox.
    pub msg_requests_quota_bytes: u64,
    /// Live pickup WebSockets one device, and one account, may hold open at once (counted
    /// per process: with N replicas up to N times as many).
    pub msg_pickup_sessions_per_device: u32,
    pub msg_pickup_sessions_per_account: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./sichat-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            database_url: None,
            log_format: LogFormat::Text,
            body_limit_bytes: 64 * 1024,
            move_body_limit_bytes: 64 * 1024 * 1024,
            request_timeout_secs: 30,
            header_read_timeout_secs: 15,
            idle_timeout_secs: 60,
            max_connections_per_address: 64,
            trusted_proxies: Vec::new(),
            proxy_header: ProxyHeader::XForwardedFor,
            rate_limit_per_second: 20,
            rate_limit_burst: 60,
            session_ttl_secs: 15 * 60,
            invite_ttl_hours: 7 * 24,
            moved_account_days: 180,
            owner_quota: 50,
            allow_local_network: None,
            did_cache_secs: 300,
            oidc_registration: RegistrationPolicy::Open,
            oidc_allowed_hosts: Vec::new(),
            oidc_subject_type: "pairwise".into(),
            oidc_key_rotation_days: 90,
            msg_max_bytes: 256 * 1024,
            msg_max_recipient_keys: 64,
            msg_quota_bytes: 64 * 1024 * 1024,
            msg_max_age_days: 30,
            msg_retry_days: 3,
            msg_send_per_second: 50,
            msg_node_per_second: 200,
            msg_sender_per_second: 20,
            msg_ip_per_second: 500,
            msg_requests_per_sender_per_day: 5,
            msg_requests_per_day: 200,
            msg_pickup_recheck_secs: 5,
            msg_peer_check_secs: 600,
            msg_standby_handover_secs: 30,
            msg_deliveries_per_node: 48,
            msg_requests_quota_bytes: 16 * 1024 * 1024,
            msg_pickup_sessions_per_device: 4,
            msg_pickup_sessions_per_account: 16,
        }
    }
}

/// Keys read from `SICHAT_<KEY>`. Other `SICHAT_*` variables belong to other tools
/// (the wallet's `SICHAT_PASSPHRASE`, the secret `SICHAT_MASTER_KEY`) and are not config.
const ENV_KEYS: &[&str] = &[
    "data_dir",
    "listen",
    "public_url",
    "database_url",
    "log_format",
    "body_limit_bytes",
    "move_body_limit_bytes",
    "request_timeout_secs",
    "header_read_timeout_secs",
    "idle_timeout_secs",
    "max_connections_per_address",
    "trusted_proxies",
    "proxy_header",
    "rate_limit_per_second",
    "rate_limit_burst",
    "session_ttl_secs",
    "invite_ttl_hours",
    "moved_account_days",
    "owner_quota",
    "allow_local_network",
    "did_cache_secs",
    "oidc_registration",
    "oidc_allowed_hosts",
    "oidc_subject_type",
    "oidc_key_rotation_days",
    "msg_max_bytes",
    "msg_max_recipient_keys",
    "msg_quota_bytes",
    "msg_max_age_days",
    "msg_retry_days",
    "msg_send_per_second",
    "msg_node_per_second",
    "msg_sender_per_second",
    "msg_ip_per_second",
    "msg_requests_per_sender_per_day",
    "msg_requests_per_day",
    "msg_pickup_recheck_secs",
    "msg_requests_quota_bytes",
    "msg_pickup_sessions_per_device",
    "msg_pickup_sessions_per_account",
    "msg_peer_check_secs",
    "msg_standby_handover_secs",
    "msg_deliveries_per_node",
];

/// Flags given on the command line; `None` leaves the lower layers alone.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_url: Option<Url>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
}

impl Config {
    /// Layer defaults, `file`, the environment and `flags`.
    pub fn load(file: Option<&Path>, flags: &Overrides) -> Result<Self, String> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(format!("config file {} does not exist", path.display()));
            }
            fig = fig.merge(Toml::file_exact(path));
        }
        fig = fig.merge(Env::prefixed("SICHAT_").only(ENV_KEYS)).merge(Serialized::defaults(flags));
        let config: Config = fig.extract().map_err(|e| format!("configuration error: {e}"))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        if let Some(url) = &self.public_url {
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(format!("public_url {url} must be an http(s) URL with a host"));
            }
            if url.query().is_some() || url.fragment().is_some() {
                return Err("public_url may not have a query or fragment".into());
            }
        }
        if self.body_limit_bytes < 1024 {
            return Err("body_limit_bytes must be at least 1024".into());
        }
        if self.header_read_timeout_secs == 0 || self.max_connections_per_address == 0 {
            return Err("header_read_timeout_secs and max_connections_per_address must be at least 1".into());
        }
        if self.idle_timeout_secs <= self.request_timeout_secs {
            return Err("idle_timeout_secs must be longer than request_timeout_secs".into());
        }
        if self.rate_limit_per_second == 0 || self.rate_limit_burst == 0 {
            return Err("rate_limit_per_second and rate_limit_burst must be at least 1".into());
        }
        if self.moved_account_days < 1 {
            return Err("moved_account_days must be at least 1".into());
        }
        if self.owner_quota < 1 || self.session_ttl_secs < 60 || self.invite_ttl_hours < 1 {
            return Err("owner_quota ≥ 1, session_ttl_secs ≥ 60 and invite_ttl_hours ≥ 1 are required".into());
        }
        if !["pairwise", "public"].contains(&self.oidc_subject_type.as_str()) {
            return Err("oidc_subject_type must be pairwise or public".into());
        }
        if self.oidc_registration == RegistrationPolicy::AllowList && self.oidc_allowed_hosts.is_empty() {
            return Err("oidc_registration = \"allow-list\" needs oidc_allowed_hosts".into());
        }
        if self.msg_max_bytes < 1024 || self.msg_max_bytes > 64 * 1024 * 1024 {
            return Err("msg_max_bytes must be between 1 KiB and 64 MiB".into());
        }
        if self.msg_quota_bytes < self.msg_max_bytes as u64 {
            return Err("msg_quota_bytes must hold at least one message of msg_max_bytes".into());
        }
        if self.msg_pickup_sessions_per_device == 0 || self.msg_pickup_sessions_per_account == 0 {
            return Err("msg_pickup_sessions_per_device and msg_pickup_sessions_per_account must be at least 1".into());
        }
        let rates =
            [self.msg_send_per_second, self.msg_node_per_second, self.msg_sender_per_second, self.msg_ip_per_second];
        if self.msg_max_recipient_keys == 0 || self.msg_max_age_days == 0 || rates.contains(&0) {
            return Err(
                "msg_max_recipient_keys, msg_max_age_days and the msg_*_per_second rates must be at least 1".into()
            );
        }
        Ok(())
    }

    /// The reverse proxies whose forwarding header names the client.
    pub fn trusted_proxies(&self) -> TrustedProxies {
        TrustedProxies::new(&self.trusted_proxies, self.proxy_header)
    }

    /// The OpenID Provider's part of the configuration.
    pub fn oidc_settings(&self) -> sichat_oidc::Settings {
        let days = i64::from(self.oidc_key_rotation_days);
        sichat_oidc::Settings {
            registration: Registration {
                policy: self.oidc_registration,
                allowed_hosts: self.oidc_allowed_hosts.clone(),
                default_subject_type: self.oidc_subject_type.clone(),
            },
            key_rotation_ms: (days > 0).then_some(days * 24 * 3_600_000),
        }
    }

    /// The messaging part of the configuration.
    pub fn messaging_settings(&self) -> sichat_messaging::Settings {
        let day_ms = 24 * 3_600_000i64;
        let rate = |per_second: u32| (per_second, per_second.saturating_mul(4));
        sichat_messaging::Settings {
            max_message_bytes: self.msg_max_bytes,
            max_recipient_keys: self.msg_max_recipient_keys,
            quota_bytes: i64::try_from(self.msg_quota_bytes).unwrap_or(i64::MAX),
            max_age_ms: i64::from(self.msg_max_age_days) * day_ms,
            retry_window_ms: i64::from(self.msg_retry_days) * day_ms,
            send_rate: rate(self.msg_send_per_second),
            node_rate: rate(self.msg_node_per_second),
            sender_rate: rate(self.msg_sender_per_second),
            requests_per_sender_per_day: i64::from(self.msg_requests_per_sender_per_day),
            requests_per_day: i64::from(self.msg_requests_per_day),
            pickup_recheck: std::time::Duration::from_secs(self.msg_pickup_recheck_secs.max(1)),
            peer_check: std::time::Duration::from_secs(self.msg_peer_check_secs.max(1)),
            standby_handover: std::time::Duration::from_secs(self.msg_standby_handover_secs.max(1)),
            deliveries_per_node: self.msg_deliveries_per_node.max(1) as usize,
            requests_quota_bytes: i64::try_from(self.msg_requests_quota_bytes.min(self.msg_quota_bytes))
                .unwrap_or(i64::MAX),
            pickup_sessions_per_device: self.msg_pickup_sessions_per_device as usize,
            pickup_sessions_per_account: self.msg_pickup_sessions_per_account as usize,
        }
    }

    /// The database URL, defaulting to `sichat.db` in the data directory.
    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| sichat_core::db::Db::sqlite_url(&self.data_dir.join("sichat.db")))
    }

    /// The public URL: configured, or made from the address actually bound.
    pub fn public_url_for(&self, bound: SocketAddr) -> Url {
        if let Some(url) = &self.public_url {
            return url.clone();
        }
        // Loopback becomes `localhost`: did:web resolvers (ssi's among them) fetch
        // `did:web:localhost…` over plain HTTP, and every other host over HTTPS only.
        let ip = bound.ip();
        let host = if ip.is_loopback() || ip.is_unspecified() {
            "localhost".to_string()
        } else if bound.is_ipv6() {
            format!("[{ip}]")
        } else {
            ip.to_string()
        };
        Url::parse(&format!("http://{host}:{}", bound.port())).expect("a socket address makes a valid URL")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_in_the_file_are_errors() {
        let dir = std::env::temp_dir().join(format!("sichat-cfg-{}", sichat_core::ids::new_id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("sichat.toml");
        std::fs::write(&file, "listen = \"127.0.0.1:9000\"\nlisten_adress = \"x\"\n").unwrap();
        let err = Config::load(Some(&file), &Overrides::default()).unwrap_err();
        assert!(err.contains("listen_adress"), "{err}");
        std::fs::write(&file, "listen = \"127.0.0.1:9000\"\npublic_url = \"https://id.example.org\"\n").unwrap();
        let c = Config::load(Some(&file), &Overrides::default()).unwrap();
        assert_eq!(c.listen.port(), 9000);
        let flags = Overrides { listen: Some("127.0.0.1:9001".parse().unwrap()), ..Default::default() };
        assert_eq!(Config::load(Some(&file), &flags).unwrap().listen.port(), 9001, "flags win over the file");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn trusted_proxies_are_networks_from_the_file() {
        let dir = std::env::temp_dir().join(format!("sichat-cfg-{}", sichat_core::ids::new_id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("sichat.toml");
        std::fs::write(&file, "trusted_proxies = [\"10.0.0.0/8\", \"::1\"]\nproxy_header = \"forwarded\"\n").unwrap();
        let c = Config::load(Some(&file), &Overrides::default()).unwrap();
        assert_eq!(c.trusted_proxies.len(), 2);
        assert_eq!(c.proxy_header, ProxyHeader::Forwarded);
        assert!(c.trusted_proxies().is_trusted("10.9.8.7".parse().unwrap()));
        std::fs::write(&file, "trusted_proxies = [\"proxy.example\"]\n").unwrap();
        let err = Config::load(Some(&file), &Overrides::default()).unwrap_err();
        assert!(err.contains("proxy.example"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn public_url_defaults_to_the_bound_address() {
        let c = Config::default();
        assert_eq!(c.public_url_for("127.0.0.1:8080".parse().unwrap()).as_str(), "http://localhost:8080/");
        assert_eq!(c.public_url_for("192.0.2.7:8080".parse().unwrap()).as_str(), "http://192.0.2.7:8080/");
        assert_eq!(c.public_url_for("0.0.0.0:80".parse().unwrap()).as_str(), "http://localhost/");
    }
}
