//! A trust policy: which issuers are accepted for which credential types.

use serde::{Deserialize, Serialize};

/// Issuers accepted for a type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Issuers {
    /// Any issuer whose signature verifies.
    Any,
    /// Only these DIDs.
    Dids(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustRule {
    #[serde(rename = "type")]
    pub type_name: String,
    pub issuers: Issuers,
}

/// A credential is trusted when some rule names one of its types and accepts its issuer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustPolicy {
    pub rules: Vec<TrustRule>,
}

impl TrustPolicy {
    pub fn judge(&self, types: &[String], issuer: &str) -> Result<String, String> {
        let rules: Vec<&TrustRule> = self.rules.iter().filter(|r| types.contains(&r.type_name)).collect();
        if rules.is_empty() {
            let asked: Vec<&str> = self.rules.iter().map(|r| r.type_name.as_str()).collect();
            return Err(format!("the trust policy accepts no credential of this type (it takes {})", asked.join(", ")));
        }
        for r in &rules {
            match &r.issuers {
                Issuers::Any => return Ok(format!("{} is accepted from any issuer", r.type_name)),
                Issuers::Dids(d) if d.iter().any(|d| d == issuer) => {
                    return Ok(format!("{} from {issuer} is trusted", r.type_name))
                }
                Issuers::Dids(_) => {}
            }
        }
        Err(format!("{issuer} is not a trusted issuer of {}", rules[0].type_name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        let p = TrustPolicy {
            rules: vec![
                TrustRule { type_name: "FriendCredential".into(), issuers: Issuers::Dids(vec!["did:a".into()]) },
                TrustRule { type_name: "MembershipCredential".into(), issuers: Issuers::Any },
            ],
        };
        let t = |s: &str| vec!["VerifiableCredential".to_string(), s.to_string()];
        assert!(p.judge(&t("FriendCredential"), "did:a").is_ok());
        assert!(p.judge(&t("FriendCredential"), "did:b").unwrap_err().contains("not a trusted issuer"));
        assert!(p.judge(&t("MembershipCredential"), "did:z").is_ok());
        assert!(p.judge(&t("ClubCredential"), "did:a").unwrap_err().contains("accepts no credential"));
    }
}
