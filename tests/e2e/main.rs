//! End-to-end tests: a real node over HTTP, the real `sichat` and `sichatd` binaries,
//! SQLite and PostgreSQL. One binary, one link step.

mod accounts;
mod bad_input;
mod browser;
mod connections;
mod crash;
mod group_commit;
mod issuer;
mod mailbox;
mod messaging;
mod oid4vci;
mod oidc;
mod oidc_clients;
mod process;
mod proxies;
mod schema;
mod signin;
mod verifier;
