//! Credential types: a name, a display name, and a JSON Schema for the claims of the
//! `credentialSubject`. The issuer adds the subject's `id` (the holder's DID).

use crate::IssuerError;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CredentialType {
    pub name: String,
    pub display_name: String,
    /// JSON Schema (2020-12) of the subject's claims.
    pub schema: Value,
    pub builtin: bool,
    /// JWS algorithm its credentials are signed with: `EdDSA` or `ES256`.
    #[serde(default = "eddsa")]
    pub alg: String,
}

fn eddsa() -> String {
    "EdDSA".into()
}

/// The signing algorithms a type may choose.
pub const ALGORITHMS: &[&str] = &["EdDSA", "ES256"];

/// The types every user starts with.
pub fn builtin() -> Vec<CredentialType> {
    vec![
        CredentialType {
            name: "FriendCredential".into(),
            display_name: "Friend".into(),
            schema: json!({
                "type": "object",
                "properties": {
                    "name": {"type": "string", "minLength": 1, "maxLength": 200},
                    "note": {"type": "string", "maxLength": 1000},
                    "since": {"type": "string", "format": "date"}
                },
                "required": ["name"],
                "additionalProperties": false
            }),
            builtin: true,
            alg: eddsa(),
        },
        CredentialType {
            name: "ProfileCredential".into(),
            display_name: "Profile".into(),
            schema: json!({
                "type": "object",
                "properties": {
                    "name": {"type": "string", "minLength": 1, "maxLength": 200},
                    "email": {"type": "string", "format": "email", "maxLength": 320},
                    "picture": {"type": "string", "format": "uri", "maxLength": 2048}
                },
                "minProperties": 1,
                "additionalProperties": false
            }),
            builtin: true,
            alg: eddsa(),
        },
    ]
}

/// A type name: 2–64 ASCII letters and digits, starting with a capital letter.
pub fn check_name(name: &str) -> Result<(), IssuerError> {
    let ok = (2..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_uppercase())
        && name.bytes().all(|b| b.is_ascii_alphanumeric());
    if !ok || name == "VerifiableCredential" {
        return Err(IssuerError::InvalidType(format!(
            "{name:?}: a type name is 2-64 letters and digits starting with a capital, e.g. BookClubCredential"
        )));
    }
    Ok(())
}

/// The schema of a whole `credentialSubject`: the claims' schema plus the holder's `id`.
pub fn subject_schema(claims_schema: &Value) -> Result<Value, IssuerError> {
    let bad = |why: &str| IssuerError::InvalidType(format!("schema: {why}"));
    let mut schema = claims_schema.clone();
    let obj = schema.as_object_mut().ok_or_else(|| bad("must be a JSON object"))?;
    if obj.get("type") != Some(&json!("object")) {
        return Err(bad("must describe an object (\"type\": \"object\")"));
    }
    if obj.contains_key("$ref") || obj.contains_key("$dynamicRef") {
        return Err(bad("$ref at the top level is not supported; inline the definition"));
    }
    let props = obj.entry("properties").or_insert_with(|| json!({}));
    let props = props.as_object_mut().ok_or_else(|| bad("\"properties\" must be an object"))?;
    if props.contains_key("id") {
        return Err(bad("\"id\" is the holder's DID, added by the issuer: do not define it"));
    }
    props.insert("id".into(), json!({"type": "string", "pattern": "^did:[a-z0-9]+:"}));
    let required = obj.entry("required").or_insert_with(|| json!([]));
    let required = required.as_array_mut().ok_or_else(|| bad("\"required\" must be an array"))?;
    required.push(json!("id"));
    obj.insert("$schema".into(), json!("https://json-schema.org/draft/2020-12/schema"));
    compile(&schema)?;
    Ok(schema)
}

/// The schema a credential's `credentialSchema` points at: it validates the whole
/// credential (VC JSON Schema), constraining its `credentialSubject`.
pub fn credential_schema(id: &str, t: &CredentialType) -> Result<Value, IssuerError> {
    let mut subject = subject_schema(&t.schema)?;
    if let Some(o) = subject.as_object_mut() {
        o.remove("$schema");
    }
    Ok(json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": id,
        "title": t.display_name,
        "type": "object",
        "properties": {
            "type": {"type": "array", "contains": {"const": t.name}},
            "credentialSubject": subject
        },
        "required": ["type", "credentialSubject"]
    }))
}

fn compile(schema: &Value) -> Result<jsonschema::Validator, IssuerError> {
    jsonschema::options()
        .should_validate_formats(true)
        .build(schema)
        .map_err(|e| IssuerError::InvalidType(format!("schema is not valid JSON Schema: {e}")))
}

/// Check a credential subject against its type. The error names the failing path.
pub fn check_subject(t: &CredentialType, subject: &Value) -> Result<(), IssuerError> {
    let validator = compile(&subject_schema(&t.schema)?)?;
    let errors: Vec<String> = validator
        .iter_errors(subject)
        .take(5)
        .map(|e| {
            let path = e.instance_path().to_string();
            format!("{}: {e}", if path.is_empty() { "/".to_string() } else { path })
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(IssuerError::SchemaViolation(format!("{} does not match its schema: {}", t.name, errors.join("; "))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn friend() -> CredentialType {
        builtin().remove(0)
    }

    #[test]
    fn good_claims_pass_and_bad_ones_name_their_path() {
        let ok = json!({"id": "did:key:z6Mkabc", "name": "Bob", "since": "2024-02-29"});
        check_subject(&friend(), &ok).unwrap();
        let err = check_subject(&friend(), &json!({"id": "did:key:z6Mkabc", "name": 7})).unwrap_err().to_string();
        assert!(err.contains("/name"), "{err}");
        let err =
            check_subject(&friend(), &json!({"id": "did:key:z6Mkabc", "name": "B", "age": 3})).unwrap_err().to_string();
        assert!(err.contains("age"), "{err}");
        let err =
            check_subject(&friend(), &json!({"id": "did:key:z6Mkabc", "name": "B", "since": "yesterday"})).unwrap_err();
        assert!(err.to_string().contains("/since"), "formats are checked: {err}");
        assert!(check_subject(&friend(), &json!({"name": "B"})).is_err(), "the holder id is required");
    }

    #[test]
    fn user_schemas_are_checked_when_added() {
        assert!(subject_schema(&json!({"type": "object", "properties": {"club": {"type": "string"}}})).is_ok());
        assert!(subject_schema(&json!({"type": "array"})).is_err());
        assert!(subject_schema(&json!({"type": "object", "properties": {"id": {}}})).is_err());
        assert!(subject_schema(&json!({"type": "object", "properties": {"x": {"type": "nonsense"}}})).is_err());
        assert!(subject_schema(&json!("string")).is_err());
    }

    #[test]
    fn type_names() {
        assert!(check_name("BookClubCredential").is_ok());
        for bad in ["", "x", "lowercase", "Has Space", "VerifiableCredential", "Dash-Name"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
