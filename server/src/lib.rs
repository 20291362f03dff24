//! `sichatd`, the Sichat node: configuration, startup, the composed HTTP app, admin
//! commands and metrics.
//!
//! - [`config`]: layered configuration (defaults, TOML, `SICHAT_*`, flags).
//! - [`startup`]: opening a node (data directory, master key, database, keys).
//! - [`app`]: the axum app with its limits.
//! - [`proxy`]: the client's address, behind trusted reverse proxies.
//! - [`conn`]: accepting connections, with timeouts and a cap per address.
//! - [`serve`]: running it until SIGTERM or Ctrl-C.

pub mod app;
pub mod config;
pub mod conn;
mod metrics;
pub mod proxy;
pub mod restore;
pub mod serve;
pub mod startup;

pub use config::Config;
pub use startup::Node;
