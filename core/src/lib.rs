//! Shared foundations of every Sichat crate.
//!
//! - [`keys`]: Ed25519 and X25519 key pairs and their multibase (Multikey) encodings.
//! - [`p256key`]: P-256 (ES256) keys, and the algorithm-generic `PublicKey` / `KeyPair`.
//! - [`did`]: `did:key` and `did:web` identifiers and DID documents.
//! - [`jwe`]: data sealed to an X25519 key (compact JWE, ECDH-ES and A256GCM).
//! - [`jws`]: compact JWS (EdDSA) signing and verification through `josekit`.
//! - [`seal`]: secrets sealed at rest with XChaCha20-Poly1305 under a master key.
//! - [`db`]: the storage pool (SQLite or PostgreSQL) and its migrations.
//! - [`group_commit`]: concurrent small writes sharing one transaction on SQLite.
//! - [`net`]: fetching under a network policy (HTTPS, no private addresses, limits, HTTP cache).
//! - [`resolver`]: DID resolution (`did:key`, `did:jwk`, `did:web`) to keys, with relationships.
//! - [`node`]: the node's own identity: its `did:web`, its sealed node key, its former URLs.
//! - [`http`]: the error body and the extractors every HTTP API shares.
//! - [`json`]: depth bounds on untrusted JSON, and serde errors without Rust type names.
//! - [`webvh`]: `did:webvh` logs: writing entries, verifying whole logs, the parallel `did:web`.
//! - [`ids`]: time-ordered ids, random tokens and clock helpers.
//! - [`progress`]: progress of long work on stderr (a bar at a terminal, lines otherwise).

pub mod db;
pub mod did;
mod error;
pub mod group_commit;
pub mod http;
pub mod ids;
pub mod json;
pub mod jwe;
pub mod jws;
pub mod keys;
pub mod net;
pub mod node;
pub mod p256key;
pub mod progress;
pub mod resolver;
pub mod seal;
pub mod webvh;

pub use error::CoreError;
