//! The Digital Credentials Query Language of OpenID4VP 1.0 (§6), on the wallet's side:
//! which held credentials answer each Credential Query, and which of them the wallet must
//! present so that the whole query is answered, or which part it cannot answer.
//!
//! The rules, as the specification gives them:
//! - Without `credential_sets`, every Credential Query in `credentials` must be answered
//!   (§6.4.2).
//! - With `credential_sets`, every set whose `required` is true or absent must be
//!   satisfied by one of its `options`, each option a list of Credential Query ids that
//!   must all be answered; sets with `required: false` may be left out (§6.2, §6.4.2). The
//!   order of `options` is the Verifier's preference: the first one the wallet can
//!   satisfy is used.
//! - A credential answers a Credential Query when its format is the query's, it has every
//!   type of one of `meta.type_values` (§B.1), and its claims satisfy `claims` and
//!   `claim_sets` (§6.4.1): without `claims`, any claims; with `claims` and no
//!   `claim_sets`, every claim listed; with both, the claims of one of the `claim_sets`.
//! - A claim exists when its claims path pointer (§7) selects at least one element; with
//!   `values`, a claim whose value matches none of them is treated as absent.
//! - If the wallet cannot answer every required part, it answers nothing: [`plan`]
//!   returns [`Unanswerable`], naming each part and why.
//!
//! This wallet presents W3C credentials only (`jwt_vc_json`, also spelled `vc+jwt`, and
//! `ldp_vc`) and presents each credential whole. It does not evaluate
//! `trusted_authorities` (none of its kinds names a DID issuer), so a query that has them
//! is answered by no credential. One credential is presented per Credential Query, also
//! when `multiple` allows more.

use serde_json::Value;
use thiserror::Error;

/// A malformed DCQL query: what is wrong and where.
#[derive(Debug, Clone, Error, PartialEq)]
#[error("the verifier's DCQL query is malformed: {0}")]
pub struct DcqlError(String);

fn bad<T>(why: impl Into<String>) -> Result<T, DcqlError> {
    Err(DcqlError(why.into()))
}

/// A DCQL query (§6.1).
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub credentials: Vec<CredentialQuery>,
    pub credential_sets: Option<Vec<CredentialSet>>,
}

/// One Credential Query (§6.1).
#[derive(Debug, Clone, PartialEq)]
pub struct CredentialQuery {
    pub id: String,
    pub format: String,
    pub multiple: bool,
    /// `meta.type_values`: alternatives, each a list of types the credential must all have.
    pub type_values: Vec<Vec<String>>,
    pub trusted_authorities: bool,
    pub claims: Option<Vec<ClaimQuery>>,
    pub claim_sets: Option<Vec<Vec<String>>>,
}

/// One Claims Query (§6.3).
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimQuery {
    pub id: Option<String>,
    pub path: Vec<PathElement>,
    pub values: Option<Vec<Value>>,
}

/// One component of a claims path pointer (§7).
#[derive(Debug, Clone, PartialEq)]
pub enum PathElement {
    /// A key of an object.
    Key(String),
    /// Every element of an array (`null`).
    All,
    /// One element of an array.
    Index(usize),
}

/// One Credential Set Query (§6.2).
#[derive(Debug, Clone, PartialEq)]
pub struct CredentialSet {
    pub options: Vec<Vec<String>>,
    pub required: bool,
}

/// An identifier as DCQL allows it: non-empty, alphanumeric, underscore or hyphen.
fn identifier(v: Option<&Value>, what: &str) -> Result<String, DcqlError> {
    match v.and_then(Value::as_str) {
        Some(s) if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') => {
            Ok(s.to_owned())
        }
        Some(s) => bad(format!("{what} {s:?} must be alphanumeric, underscores or hyphens")),
        None => bad(format!("{what} is missing or not a string")),
    }
}

/// A non-empty array, or an error naming `what`.
fn non_empty<'a>(v: &'a Value, what: &str) -> Result<&'a Vec<Value>, DcqlError> {
    match v.as_array() {
        Some(a) if !a.is_empty() => Ok(a),
        _ => bad(format!("{what} must be a non-empty array")),
    }
}

fn strings(v: &Value, what: &str) -> Result<Vec<String>, DcqlError> {
    non_empty(v, what)?
        .iter()
        .map(|s| s.as_str().map(str::to_owned).ok_or_else(|| DcqlError(format!("{what} must hold strings"))))
        .collect()
}

fn is_w3c(format: &str) -> bool {
    matches!(format, "jwt_vc_json" | "vc+jwt" | "ldp_vc")
}

impl Query {
    /// Parse and check a `dcql_query` object.
    pub fn parse(v: &Value) -> Result<Self, DcqlError> {
        if !v.is_object() {
            return bad("dcql_query must be an object");
        }
        let mut credentials = Vec::new();
        for (i, c) in non_empty(&v["credentials"], "credentials")?.iter().enumerate() {
            let q = CredentialQuery::parse(c, i)?;
            if credentials.iter().any(|o: &CredentialQuery| o.id == q.id) {
                return bad(format!("two credential queries have the id {:?}", q.id));
            }
            credentials.push(q);
        }
        let credential_sets = match v.get("credential_sets") {
            None | Some(Value::Null) => None,
            Some(sets) => {
                let mut out = Vec::new();
                for (i, s) in non_empty(sets, "credential_sets")?.iter().enumerate() {
                    let what = format!("credential_sets[{i}]");
                    if !s.is_object() {
                        return bad(format!("{what} must be an object"));
                    }
                    let mut options = Vec::new();
                    for (j, o) in non_empty(&s["options"], &format!("{what}.options"))?.iter().enumerate() {
                        let ids = strings(o, &format!("{what}.options[{j}]"))?;
                        if let Some(unknown) = ids.iter().find(|id| !credentials.iter().any(|c| &&c.id == id)) {
                            return bad(format!(
                                "{what}.options[{j}] names {unknown:?}, which no credential query has"
                            ));
                        }
                        options.push(ids);
                    }
                    let required = match s.get("required") {
                        None => true,
                        Some(Value::Bool(b)) => *b,
                        Some(_) => return bad(format!("{what}.required must be a boolean")),
                    };
                    out.push(CredentialSet { options, required });
                }
                Some(out)
            }
        };
        Ok(Query { credentials, credential_sets })
    }
}

impl CredentialQuery {
    fn parse(v: &Value, i: usize) -> Result<Self, DcqlError> {
        let at = format!("credentials[{i}]");
        if !v.is_object() {
            return bad(format!("{at} must be an object"));
        }
        let id = identifier(v.get("id"), &format!("{at}.id"))?;
        let at = format!("credential query {id:?}");
        let format = v["format"].as_str().ok_or_else(|| DcqlError(format!("{at} has no format")))?.to_owned();
        let multiple = match v.get("multiple") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return bad(format!("{at}: multiple must be a boolean")),
        };
        let meta = &v["meta"];
        if !meta.is_object() {
            return bad(format!("{at} has no meta object"));
        }
        let type_values = match meta.get("type_values") {
            Some(tv) => non_empty(tv, &format!("{at}: meta.type_values"))?
                .iter()
                .map(|alt| strings(alt, &format!("{at}: each of meta.type_values")))
                .collect::<Result<Vec<_>, _>>()?,
            None if is_w3c(&format) => return bad(format!("{at} ({format}) needs meta.type_values")),
            None => Vec::new(),
        };
        let trusted_authorities = match v.get("trusted_authorities") {
            None => false,
            Some(t) => {
                non_empty(t, &format!("{at}: trusted_authorities"))?;
                true
            }
        };
        let claims = match v.get("claims") {
            None => None,
            Some(cs) => {
                let mut out: Vec<ClaimQuery> = Vec::new();
                for (j, c) in non_empty(cs, &format!("{at}: claims"))?.iter().enumerate() {
                    let claim = ClaimQuery::parse(c, &format!("{at}: claims[{j}]"))?;
                    if claim.id.is_some() && out.iter().any(|o| o.id == claim.id) {
                        return bad(format!("{at}: two claims have the id {:?}", claim.id.unwrap_or_default()));
                    }
                    out.push(claim);
                }
                Some(out)
            }
        };
        let claim_sets = match (v.get("claim_sets"), &claims) {
            (None, _) => None,
            (Some(_), None) => return bad(format!("{at} has claim_sets but no claims")),
            (Some(sets), Some(claims)) => {
                if claims.iter().any(|c| c.id.is_none()) {
                    return bad(format!("{at}: with claim_sets, every claim needs an id"));
                }
                let mut out = Vec::new();
                for (j, s) in non_empty(sets, &format!("{at}: claim_sets"))?.iter().enumerate() {
                    let ids = strings(s, &format!("{at}: claim_sets[{j}]"))?;
                    if let Some(unknown) = ids.iter().find(|id| !claims.iter().any(|c| c.id.as_ref() == Some(*id))) {
                        return bad(format!("{at}: claim_sets[{j}] names {unknown:?}, which no claim has"));
                    }
                    out.push(ids);
                }
                Some(out)
            }
        };
        Ok(CredentialQuery { id, format, multiple, type_values, trusted_authorities, claims, claim_sets })
    }

    /// The types this query asks for, for messages: the first alternative.
    pub fn wanted(&self) -> String {
        let t = self.type_values.first().map(|alt| alt.join("+")).unwrap_or_else(|| "credential".into());
        format!("{t} ({})", self.format)
    }

    /// Why `c` does not answer this query, or `None` when it does.
    pub fn mismatch(&self, c: &Candidate<'_>) -> Option<String> {
        let format_ok = match self.format.as_str() {
            "jwt_vc_json" | "vc+jwt" => c.format == "vc+jwt",
            "ldp_vc" => c.format == "ldp_vc",
            _ => false,
        };
        if !format_ok {
            return Some(format!("it is {}, not {}", c.format, self.format));
        }
        let types: Vec<&str> = c.vc["type"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        // The types are expanded IRIs; a credential names them by their VCDM 2.0 terms.
        let has = |t: &String| types.iter().any(|x| x == t || t.rsplit(['#', '/']).next() == Some(x));
        if !self.type_values.iter().any(|alt| alt.iter().all(has)) {
            return Some(format!("its type is {}", types.join(", ")));
        }
        if self.trusted_authorities {
            return Some("the query restricts trusted authorities, which this wallet cannot evaluate".into());
        }
        let Some(claims) = &self.claims else { return None };
        let missing = |c_: &ClaimQuery| !c_.exists_in(c.vc);
        match &self.claim_sets {
            None => claims.iter().find(|&q| missing(q)).map(|q| format!("it has no claim {}", q.describe())),
            Some(sets) => {
                let satisfied = sets.iter().any(|set| {
                    set.iter().all(|id| claims.iter().find(|q| q.id.as_ref() == Some(id)).is_some_and(|q| !missing(q)))
                });
                (!satisfied).then(|| "it satisfies none of the query's claim_sets".into())
            }
        }
    }
}

impl ClaimQuery {
    fn parse(v: &Value, at: &str) -> Result<Self, DcqlError> {
        if !v.is_object() {
            return bad(format!("{at} must be an object"));
        }
        let id = match v.get("id") {
            None => None,
            Some(i) => Some(identifier(Some(i), &format!("{at}.id"))?),
        };
        let mut path = Vec::new();
        for p in non_empty(&v["path"], &format!("{at}.path"))? {
            path.push(match p {
                Value::String(s) => PathElement::Key(s.clone()),
                Value::Null => PathElement::All,
                Value::Number(n) => match n.as_u64().and_then(|n| usize::try_from(n).ok()) {
                    Some(i) => PathElement::Index(i),
                    None => return bad(format!("{at}.path: an index must be a non-negative integer")),
                },
                _ => return bad(format!("{at}.path holds only strings, null and non-negative integers")),
            });
        }
        let values = match v.get("values") {
            None => None,
            Some(vs) => {
                let vs = non_empty(vs, &format!("{at}.values"))?;
                if !vs.iter().all(|x| x.is_string() || x.is_boolean() || x.as_i64().is_some() || x.as_u64().is_some()) {
                    return bad(format!("{at}.values holds only strings, integers and booleans"));
                }
                Some(vs.clone())
            }
        };
        Ok(ClaimQuery { id, path, values })
    }

    fn describe(&self) -> String {
        let path: Vec<String> = self
            .path
            .iter()
            .map(|p| match p {
                PathElement::Key(k) => k.clone(),
                PathElement::All => "[*]".into(),
                PathElement::Index(i) => format!("[{i}]"),
            })
            .collect();
        match &self.values {
            Some(vs) => format!("{} equal to one of {}", path.join("."), Value::Array(vs.clone())),
            None => path.join("."),
        }
    }

    /// Whether the claim exists in `vc`: its path selects an element, and with `values`,
    /// one that matches.
    pub fn exists_in(&self, vc: &Value) -> bool {
        let Some(selected) = select(&self.path, vc) else { return false };
        match &self.values {
            None => !selected.is_empty(),
            Some(allowed) => selected.iter().any(|v| allowed.contains(v)),
        }
    }
}

/// The elements a claims path pointer selects (§7.2), or `None` when processing aborts
/// (a key applied to a non-object, an index or `null` to a non-array).
pub fn select<'a>(path: &[PathElement], root: &'a Value) -> Option<Vec<&'a Value>> {
    let mut selected = vec![root];
    for p in path {
        let mut next = Vec::new();
        for v in selected {
            match (p, v) {
                (PathElement::Key(k), Value::Object(o)) => next.extend(o.get(k)),
                (PathElement::All, Value::Array(a)) => next.extend(a.iter()),
                (PathElement::Index(i), Value::Array(a)) => next.extend(a.get(*i)),
                _ => return None,
            }
        }
        selected = next;
    }
    Some(selected)
}

/// A held credential the wallet may present: its id, format (`vc+jwt` or `ldp_vc`) and
/// content.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub id: &'a str,
    pub format: &'a str,
    pub vc: &'a Value,
}

/// What to present: for each Credential Query to answer, the indices (into the
/// candidates) of the credentials that answer it, one of which is presented.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub answers: Vec<Answer>,
    /// Credential Query ids of optional credential sets left out (`required: false`).
    pub optional_left_out: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub query: String,
    pub candidates: Vec<usize>,
}

/// Why the whole query cannot be answered: each required part and why.
#[derive(Debug, Clone, PartialEq, Error)]
#[error("this wallet cannot answer the whole request, so it presents nothing: {}", parts.join("; "))]
pub struct Unanswerable {
    pub parts: Vec<String>,
}

/// Which credentials answer `query`, given what the wallet holds. `selected` are the
/// credential ids the user chose: a query that one of them answers is answered by it
/// alone, and an option holding a chosen credential is preferred to the others.
pub fn plan(query: &Query, held: &[Candidate<'_>], selected: &[String]) -> Result<Plan, Unanswerable> {
    let matching = |q: &CredentialQuery| -> Vec<usize> {
        let all: Vec<usize> = (0..held.len()).filter(|&i| q.mismatch(&held[i]).is_none()).collect();
        let chosen: Vec<usize> = all.iter().copied().filter(|&i| selected.iter().any(|s| s == held[i].id)).collect();
        if chosen.is_empty() {
            all
        } else {
            chosen
        }
    };
    let by_id = |id: &str| query.credentials.iter().find(|q| q.id == id);
    let why_not = |q: &CredentialQuery| -> String {
        let mut s = format!("credential query {:?} asks for a {}, and this wallet holds none", q.id, q.wanted());
        let near: Vec<String> = held
            .iter()
            .filter(|c| family(q.format.as_str()) == family(c.format))
            .filter_map(|c| q.mismatch(c).map(|why| format!("{}: {why}", c.id)))
            .take(3)
            .collect();
        if !near.is_empty() {
            s.push_str(&format!(" (not matching: {})", near.join(", ")));
        }
        s
    };
    let answer = |ids: &[String]| -> Option<Vec<Answer>> {
        ids.iter()
            .map(|id| {
                let q = by_id(id)?;
                let candidates = matching(q);
                (!candidates.is_empty()).then(|| Answer { query: q.id.clone(), candidates })
            })
            .collect()
    };
    let uses_selection =
        |a: &[Answer]| a.iter().any(|x| x.candidates.iter().any(|&i| selected.iter().any(|s| s == held[i].id)));

    let mut answers: Vec<Answer> = Vec::new();
    let mut parts = Vec::new();
    let mut optional_left_out = Vec::new();
    match &query.credential_sets {
        None => {
            for q in &query.credentials {
                match answer(std::slice::from_ref(&q.id)) {
                    Some(a) => answers.extend(a),
                    None => parts.push(why_not(q)),
                }
            }
        }
        Some(sets) => {
            for (n, set) in sets.iter().enumerate() {
                if !set.required {
                    optional_left_out.extend(set.options.iter().flatten().cloned());
                    continue;
                }
                let satisfiable: Vec<Vec<Answer>> = set.options.iter().filter_map(|o| answer(o.as_slice())).collect();
                let pick =
                    satisfiable.iter().find(|a| uses_selection(a.as_slice())).or_else(|| satisfiable.first()).cloned();
                match pick {
                    Some(a) => {
                        for x in a {
                            if !answers.iter().any(|y| y.query == x.query) {
                                answers.push(x);
                            }
                        }
                    }
                    None => {
                        let options: Vec<String> = set.options.iter().map(|o| o.join(" + ")).collect();
                        let missing: Vec<String> = set
                            .options
                            .iter()
                            .flatten()
                            .filter_map(|id| by_id(id.as_str()))
                            .filter(|&q| matching(q).is_empty())
                            .map(&why_not)
                            .collect();
                        parts.push(format!(
                            "credential set {} needs one of [{}], and no option can be met ({})",
                            n + 1,
                            options.join(" | "),
                            missing.join("; ")
                        ));
                    }
                }
            }
            let mut seen = Vec::new();
            optional_left_out.retain(|id| {
                let keep = !answers.iter().any(|a| &a.query == id) && !seen.contains(id);
                seen.push(id.clone());
                keep
            });
        }
    }
    if !parts.is_empty() {
        return Err(Unanswerable { parts });
    }
    let unused: Vec<&String> = selected
        .iter()
        .filter(|s| !answers.iter().any(|a| a.candidates.iter().any(|&i| held[i].id == s.as_str())))
        .collect();
    if let Some(s) = unused.first() {
        return Err(Unanswerable { parts: vec![format!("credential {s} answers no part of it")] });
    }
    Ok(Plan { answers, optional_left_out })
}

/// `jwt` or `ldp`: the family of a held format or a query format.
fn family(format: &str) -> &'static str {
    match format {
        "vc+jwt" | "jwt_vc_json" => "jwt",
        "ldp_vc" => "ldp",
        _ => "other",
    }
}
