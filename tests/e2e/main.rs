//! End-to-end tests: a real node over HTTP, the real `sichat` and `sichatd` binaries,
//! SQLite and PostgreSQL. One binary, one link step.

mod account_end;
mod account_move;
mod account_move_large;
mod account_move_twice;
mod accounts;
mod bad_input;
mod browser;
mod connections;
mod crash;
mod device_renewal;
mod device_revoke;
mod di_interop;
mod group_commit;
mod holder;
mod hostile;
mod issuer;
mod mailbox;
mod mailbox_abuse;
mod messaging;
mod node_url_change;
mod oid4vci;
mod oidc;
mod oidc_clients;
mod oidc_interop;
mod oidc_logout;
mod pickup_end;
mod portable_did;
mod process;
mod proxies;
mod recovery;
mod schema;
mod signin;
mod signin_throttle;
mod verifier;
mod webvh_interop;
