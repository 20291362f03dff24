//! End-to-end tests: a real node over HTTP, the real `sichat` and `sichatd` binaries,
//! SQLite and PostgreSQL. One binary, one link step.

mod accounts;
mod bad_input;
mod browser;
mod crash;
mod group_commit;
mod issuer;
mod mailbox;
mod mailbox_abuse;
mod messaging;
mod oid4vci;
mod oidc;
mod oidc_clients;
mod process;
mod signin;
mod verifier;
