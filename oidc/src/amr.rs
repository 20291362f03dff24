//! How a user signed in, as the `amr` claim of ID tokens: Authentication Method Reference
//! values from RFC 8176 (IANA's registry).
//!
//! The values are recorded on the browser session when the user signs in, copied to each
//! code issued in that session and to the tokens the code (or a refresh) gives, so a
//! refreshed ID token still says how the user originally signed in (OIDC Core §12.2).

use webauthn_rs::prelude::AuthenticationResult;

/// A way of signing in, with what the node could see of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignIn {
    /// User name and password (argon2id).
    Password,
    /// A passkey (WebAuthn assertion) with the flags the authenticator signed.
    Passkey {
        /// UV: the authenticator checked a PIN or biometric, not only presence.
        user_verified: bool,
        /// BE: the credential may be synced off the device (a "synced passkey").
        backup_eligible: bool,
    },
    /// `sichat login approve`: a JWS by a device key of the user's wallet, sent by the wallet
    /// to the node while the browser waited.
    WalletApproval,
}

impl SignIn {
    /// A passkey sign-in as webauthn-rs verified it.
    pub fn passkey(result: &AuthenticationResult) -> Self {
        SignIn::Passkey { user_verified: result.user_verified(), backup_eligible: result.backup_eligible() }
    }

    /// The `amr` values, most telling first.
    ///
    /// - password: `pwd`.
    /// - passkey: a proof of possession of a key, `hwk` when the authenticator says the key
    ///   cannot leave it (not backup eligible: a security key, a platform TPM or secure
    ///   enclave) and `swk` when it may be synced (a passkey kept by a password manager or a
    ///   cloud keychain); `user` (WebAuthn always tests presence); and `mfa` when the
    ///   authenticator also verified the user (PIN or biometric) — something held plus
    ///   something known or inherent. Which PIN or biometric is not signed, so neither `pin`
    ///   nor `fpt` is claimed. We ask for no attestation, so these are the authenticator's
    ///   own (signed) flags, not a vendor's certification.
    /// - wallet approval: `swk` (the device key lives in the wallet file, sealed by a
    ///   passphrase: software) and `mca` (it came over a second channel, the wallet's own
    ///   request to the node, not the browser). Both `hwk` and `swk` are proofs of
    ///   possession, so the generic `pop` would add nothing. The passphrase is checked by
    ///   the wallet, not the node, so no `mfa`.
    pub fn amr(&self) -> Vec<&'static str> {
        match *self {
            SignIn::Password => vec!["pwd"],
            SignIn::Passkey { user_verified, backup_eligible } => {
                let mut v = vec![if backup_eligible { "swk" } else { "hwk" }, "user"];
                if user_verified {
                    v.push("mfa");
                }
                v
            }
            SignIn::WalletApproval => vec!["swk", "mca"],
        }
    }

    /// How the values are stored: space-separated.
    pub fn stored(&self) -> String {
        self.amr().join(" ")
    }
}

/// How a user signed in, in words, from `amr` values.
pub fn describe(amr: &[String]) -> String {
    let has = |v: &str| amr.iter().any(|a| a == v);
    match () {
        _ if has("pwd") => "password".into(),
        _ if has("mca") => "wallet approval".into(),
        _ if has("hwk") || has("user") => "passkey".into(),
        _ if amr.is_empty() => "-".into(),
        _ => amr.join(" "),
    }
}

/// The `amr` claim from a stored value; empty (no claim) for rows from before it was kept.
pub fn from_stored(stored: Option<&str>) -> Vec<String> {
    stored.map(|s| s.split_whitespace().map(str::to_owned).collect()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_way_in_has_its_rfc_8176_values() {
        assert_eq!(SignIn::Password.amr(), ["pwd"]);
        let bound = SignIn::Passkey { user_verified: true, backup_eligible: false };
        assert_eq!(bound.amr(), ["hwk", "user", "mfa"]);
        let synced = SignIn::Passkey { user_verified: true, backup_eligible: true };
        assert_eq!(synced.amr(), ["swk", "user", "mfa"]);
        let presence_only = SignIn::Passkey { user_verified: false, backup_eligible: false };
        assert_eq!(presence_only.amr(), ["hwk", "user"]);
        assert_eq!(SignIn::WalletApproval.amr(), ["swk", "mca"]);
    }

    #[test]
    fn stored_values_come_back() {
        let s = SignIn::Passkey { user_verified: true, backup_eligible: true }.stored();
        assert_eq!(from_stored(Some(&s)), ["swk", "user", "mfa"]);
        assert!(from_stored(None).is_empty(), "rows from before claim nothing");
    }
}
