//! DCQL (OpenID4VP 1.0 §6, §7) on the wallet's side: one test per rule.

use serde_json::{json, Value};
use sichat_holder::dcql::{plan, select, Candidate, PathElement, Query};

fn vc(types: &[&str], subject: Value) -> Value {
    let mut t = vec!["VerifiableCredential"];
    t.extend_from_slice(types);
    json!({"type": t, "issuer": "did:key:z6Mkissuer", "credentialSubject": subject})
}

fn query(v: Value) -> Query {
    Query::parse(&v).unwrap_or_else(|e| panic!("{e}: {v}"))
}

fn cq(id: &str, t: &str) -> Value {
    json!({"id": id, "format": "jwt_vc_json", "meta": {"type_values": [[t]]}})
}

struct Wallet(Vec<(String, String, Value)>);

impl Wallet {
    fn candidates(&self) -> Vec<Candidate<'_>> {
        self.0.iter().map(|(id, format, vc)| Candidate { id, format, vc }).collect()
    }
}

fn wallet() -> Wallet {
    Wallet(vec![
        ("friend".into(), "vc+jwt".into(), vc(&["FriendCredential"], json!({"name": "Bob", "age": 30}))),
        ("member".into(), "vc+jwt".into(), vc(&["MembershipCredential"], json!({"node": "a.example"}))),
        ("friend-ldp".into(), "ldp_vc".into(), vc(&["FriendCredential"], json!({"name": "Bob"}))),
    ])
}

/// The ids answered, each with the ids of its candidates.
fn answered(q: &Query, w: &Wallet, selected: &[&str]) -> Result<Vec<(String, Vec<String>)>, String> {
    let held = w.candidates();
    let selected: Vec<String> = selected.iter().map(|s| s.to_string()).collect();
    plan(q, &held, &selected)
        .map(|p| {
            p.answers
                .into_iter()
                .map(|a| (a.query, a.candidates.iter().map(|&i| held[i].id.to_owned()).collect()))
                .collect()
        })
        .map_err(|e| e.to_string())
}

fn ans(pairs: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
    pairs.iter().map(|(q, c)| (q.to_string(), c.iter().map(|s| s.to_string()).collect())).collect()
}

/// §6.4.2: without credential_sets, every credential query must be answered, or nothing.
#[test]
fn without_credential_sets_every_query_is_required() {
    let w = wallet();
    let both = query(json!({"credentials": [cq("f", "FriendCredential"), cq("m", "MembershipCredential")]}));
    assert_eq!(answered(&both, &w, &[]), Ok(ans(&[("f", &["friend"]), ("m", &["member"])])));

    let one_missing = query(json!({"credentials": [cq("f", "FriendCredential"), cq("club", "ClubCredential")]}));
    let e = answered(&one_missing, &w, &[]).unwrap_err();
    assert!(e.contains("\"club\"") && e.contains("ClubCredential") && e.contains("presents nothing"), "{e}");
    assert!(!e.contains("\"f\""), "only the part that cannot be answered is named: {e}");
}

/// §6.2, §6.4.2: each required set is met by its first satisfiable option; optional sets
/// may be left out; a required set no option can meet fails the whole query.
#[test]
fn credential_sets_options_and_required() {
    let w = wallet();
    let q = query(json!({
        "credentials": [cq("club", "ClubCredential"), cq("f", "FriendCredential"), cq("m", "MembershipCredential")],
        "credential_sets": [
            {"options": [["club"], ["f"]]},
            {"options": [["m"]], "required": false},
        ],
    }));
    let held = w.candidates();
    let p = plan(&q, &held, &[]).expect("plan");
    assert_eq!(p.answers.iter().map(|a| a.query.as_str()).collect::<Vec<_>>(), ["f"]);
    assert_eq!(p.optional_left_out, ["m"]);

    // An option is met only when all of its queries are: ["club", "f"] is not.
    let q = query(json!({
        "credentials": [cq("club", "ClubCredential"), cq("f", "FriendCredential"), cq("m", "MembershipCredential")],
        "credential_sets": [{"options": [["club", "f"], ["f", "m"]]}],
    }));
    assert_eq!(answered(&q, &w, &[]), Ok(ans(&[("f", &["friend"]), ("m", &["member"])])));

    // Preference is the verifier's order: the first satisfiable option wins.
    let q = query(json!({
        "credentials": [cq("f", "FriendCredential"), cq("m", "MembershipCredential")],
        "credential_sets": [{"options": [["m"], ["f"]]}],
    }));
    assert_eq!(answered(&q, &w, &[]), Ok(ans(&[("m", &["member"])])));

    // `required` defaults to true.
    let q = query(json!({
        "credentials": [cq("club", "ClubCredential"), cq("f", "FriendCredential")],
        "credential_sets": [{"options": [["f"]]}, {"options": [["club"]]}],
    }));
    let e = answered(&q, &w, &[]).unwrap_err();
    assert!(e.contains("credential set 2") && e.contains("club"), "{e}");
}

/// The user's choice: it answers the query it matches, and its option is preferred.
#[test]
fn selection_is_honoured_and_must_be_used() {
    let w = wallet();
    let q = query(json!({
        "credentials": [cq("jwt", "FriendCredential"), {"id": "ldp", "format": "ldp_vc", "meta": {"type_values": [["FriendCredential"]]}}],
        "credential_sets": [{"options": [["jwt"], ["ldp"]]}],
    }));
    assert_eq!(answered(&q, &w, &[]), Ok(ans(&[("jwt", &["friend"])])));
    assert_eq!(answered(&q, &w, &["friend-ldp"]), Ok(ans(&[("ldp", &["friend-ldp"])])));
    let e = answered(&q, &w, &["member"]).unwrap_err();
    assert!(e.contains("member answers no part"), "{e}");
}

/// §B.1: the format must be the query's, and the credential must have every type of one
/// of the type_values alternatives (expanded IRIs match VCDM 2.0 terms).
#[test]
fn format_and_type_values() {
    let w = wallet();
    let ldp = query(
        json!({"credentials": [{"id": "x", "format": "ldp_vc", "meta": {"type_values": [["FriendCredential"]]}}]}),
    );
    assert_eq!(answered(&ldp, &w, &[]), Ok(ans(&[("x", &["friend-ldp"])])));
    let sd = query(json!({"credentials": [{"id": "x", "format": "dc+sd-jwt", "meta": {"vct_values": ["x"]}}]}));
    assert!(answered(&sd, &w, &[]).is_err());
    let alternatives = query(json!({"credentials": [{"id": "x", "format": "jwt_vc_json",
        "meta": {"type_values": [["ClubCredential"], ["https://www.w3.org/ns/credentials/examples#MembershipCredential"]]}}]}));
    assert_eq!(answered(&alternatives, &w, &[]), Ok(ans(&[("x", &["member"])])));
    let all_of = query(json!({"credentials": [{"id": "x", "format": "jwt_vc_json",
        "meta": {"type_values": [["FriendCredential", "MembershipCredential"]]}}]}));
    let e = answered(&all_of, &w, &[]).unwrap_err();
    assert!(e.contains("not matching") && e.contains("its type is"), "{e}");
}

/// §6.4.1: with claims and no claim_sets every claim must exist; `values` makes a claim
/// with another value count as absent; with claim_sets one set must be met.
#[test]
fn claims_values_and_claim_sets() {
    let w = wallet();
    let with_claims = |claims: Value, sets: Option<Value>| {
        let mut c = cq("f", "FriendCredential");
        c["claims"] = claims;
        if let Some(s) = sets {
            c["claim_sets"] = s;
        }
        query(json!({"credentials": [c]}))
    };
    let name = || json!({"id": "n", "path": ["credentialSubject", "name"]});
    let email = || json!({"id": "e", "path": ["credentialSubject", "email"]});
    assert!(answered(&with_claims(json!([name()]), None), &w, &[]).is_ok());
    let e = answered(&with_claims(json!([name(), email()]), None), &w, &[]).unwrap_err();
    assert!(e.contains("credentialSubject.email"), "{e}");
    assert!(answered(&with_claims(json!([name(), email()]), Some(json!([["e"], ["n"]]))), &w, &[]).is_ok());
    assert!(answered(&with_claims(json!([name(), email()]), Some(json!([["e", "n"]]))), &w, &[]).is_err());

    let bob = json!({"path": ["credentialSubject", "name"], "values": ["Alice", "Bob"]});
    assert!(answered(&with_claims(json!([bob]), None), &w, &[]).is_ok());
    let alice = json!({"path": ["credentialSubject", "name"], "values": ["Alice"]});
    assert!(answered(&with_claims(json!([alice]), None), &w, &[]).is_err());
    let age = json!({"path": ["credentialSubject", "age"], "values": [30]});
    assert!(answered(&with_claims(json!([age]), None), &w, &[]).is_ok());
    let age_text = json!({"path": ["credentialSubject", "age"], "values": ["30"]});
    assert!(answered(&with_claims(json!([age_text]), None), &w, &[]).is_err(), "values compare by JSON type");
    let issuer = json!({"path": ["issuer"], "values": ["did:key:z6Mkissuer"]});
    assert!(answered(&with_claims(json!([issuer]), None), &w, &[]).is_ok());
}

/// §7: claims path pointers: keys, null for every element, indices; a key on a
/// non-object aborts (the claim does not exist).
#[test]
fn claims_path_pointers() {
    let doc = json!({"a": {"b": [{"c": 1}, {"c": 2}, {"d": 3}]}, "s": "text"});
    let k = |s: &str| PathElement::Key(s.into());
    let values = |p: &[PathElement]| select(p, &doc).map(|v| v.into_iter().cloned().collect::<Vec<_>>());
    assert_eq!(values(&[k("a"), k("b"), PathElement::All, k("c")]), Some(vec![json!(1), json!(2)]));
    assert_eq!(values(&[k("a"), k("b"), PathElement::Index(2), k("d")]), Some(vec![json!(3)]));
    assert_eq!(values(&[k("a"), k("b"), PathElement::Index(7)]), Some(vec![]));
    assert_eq!(values(&[k("missing")]), Some(vec![]));
    assert_eq!(values(&[k("s"), k("x")]), None);
    assert_eq!(values(&[k("a"), PathElement::All]), None);
}

/// A restriction the wallet cannot evaluate is not taken as met.
#[test]
fn trusted_authorities_are_not_assumed() {
    let mut c = cq("f", "FriendCredential");
    c["trusted_authorities"] = json!([{"type": "aki", "values": ["s9tIpPmhxdiuNkHMEWNpYim8S8Y"]}]);
    assert!(answered(&query(json!({"credentials": [c]})), &wallet(), &[]).is_err());
}

/// Malformed queries are refused with what is wrong, before anything is presented.
#[test]
fn malformed_queries_are_refused() {
    let f = || cq("f", "FriendCredential");
    for (bad, says) in [
        (json!({}), "credentials"),
        (json!({"credentials": []}), "credentials"),
        (json!({"credentials": [f(), f()]}), "two credential queries"),
        (json!({"credentials": [cq("a b", "X")]}), "alphanumeric"),
        (json!({"credentials": [{"id": "x", "format": "jwt_vc_json", "meta": {}}]}), "type_values"),
        (json!({"credentials": [{"id": "x", "format": "jwt_vc_json"}]}), "meta"),
        (json!({"credentials": [f()], "credential_sets": []}), "credential_sets"),
        (json!({"credentials": [f()], "credential_sets": [{"options": [["g"]]}]}), "no credential query"),
        (json!({"credentials": [f()], "credential_sets": [{"options": [["f"]], "required": "yes"}]}), "required"),
        (
            json!({"credentials": [{"id": "x", "format": "ldp_vc", "meta": {"type_values": [["T"]]}, "claim_sets": [["a"]]}]}),
            "claim_sets but no claims",
        ),
        (
            json!({"credentials": [{"id": "x", "format": "ldp_vc", "meta": {"type_values": [["T"]]},
                "claims": [{"path": ["a"]}], "claim_sets": [["a"]]}]}),
            "every claim needs an id",
        ),
        (
            json!({"credentials": [{"id": "x", "format": "ldp_vc", "meta": {"type_values": [["T"]]}, "claims": [{"path": []}]}]}),
            "path",
        ),
        (
            json!({"credentials": [{"id": "x", "format": "ldp_vc", "meta": {"type_values": [["T"]]}, "claims": [{"path": [-1]}]}]}),
            "non-negative",
        ),
        (
            json!({"credentials": [{"id": "x", "format": "ldp_vc", "meta": {"type_values": [["T"]]},
                "claims": [{"path": ["a"], "values": [{"x": 1}]}]}]}),
            "values",
        ),
    ] {
        let e = Query::parse(&bad).expect_err(&bad.to_string()).to_string();
        assert!(e.contains(says), "{bad}: {e}");
    }
}
