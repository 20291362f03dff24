//! Bounds on untrusted JSON, checked before it reaches a recursive parser or library.
//!
//! `serde_json` stops at 128 levels, but what a document then meets may recurse much
//! deeper per level (JSON-LD expansion overflowed a worker's stack at about 114 levels).
//! Nesting is counted here iteratively, so counting it can never overflow a stack itself.
//! Deserialisation errors are also reworded here so that no message names a Rust type.

use serde::de::DeserializeOwned;
use serde_json::Value;

/// The deepest nesting any JSON body of the HTTP APIs may have (objects and arrays).
pub const MAX_DEPTH: usize = 64;

/// Why a JSON document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    /// Not JSON at all (syntax, truncation, not UTF-8).
    #[error("{0}")]
    Malformed(String),
    /// JSON, but not of the expected shape.
    #[error("{0}")]
    Invalid(String),
    #[error("the JSON document nests deeper than {0} levels")]
    TooDeep(usize),
}

/// The deepest nesting of objects and arrays in `text`, found without parsing it: brackets
/// inside strings do not count. On malformed text the result is still a bound of what a
/// parser would meet before failing.
pub fn nesting_depth(text: &[u8]) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in text {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// The deepest nesting of objects and arrays in a parsed value (a scalar is 0), counted
/// with an explicit stack.
pub fn value_depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 0usize)];
    while let Some((v, d)) = stack.pop() {
        match v {
            Value::Object(o) => {
                deepest = deepest.max(d + 1);
                stack.extend(o.values().map(|c| (c, d + 1)));
            }
            Value::Array(a) => {
                deepest = deepest.max(d + 1);
                stack.extend(a.iter().map(|c| (c, d + 1)));
            }
            _ => {}
        }
    }
    deepest
}

/// The number of values (objects, arrays, scalars) in a parsed value.
pub fn value_count(value: &Value) -> usize {
    let mut count = 0;
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        count += 1;
        match v {
            Value::Object(o) => stack.extend(o.values()),
            Value::Array(a) => stack.extend(a.iter()),
            _ => {}
        }
    }
    count
}

/// Parse `text` as `T`, refusing anything nested deeper than `max_depth` before parsing.
pub fn from_slice_bounded<T: DeserializeOwned>(text: &[u8], max_depth: usize) -> Result<T, JsonError> {
    if nesting_depth(text) > max_depth {
        return Err(JsonError::TooDeep(max_depth));
    }
    serde_json::from_slice(text).map_err(|e| {
        let out_of_range = e.to_string().contains("number out of range");
        match describe(e) {
            JsonError::Malformed(m) if out_of_range => {
                JsonError::Invalid(m.replace("malformed JSON", "a number out of range"))
            }
            // serde_json reports some wrong types (a number where an enum goes) as syntax errors.
            JsonError::Malformed(m) if serde_json::from_slice::<serde::de::IgnoredAny>(text).is_ok() => {
                JsonError::Invalid(m.replace("malformed JSON", "a value does not have the expected type"))
            }
            other => other,
        }
    })
}

/// [`from_slice_bounded`] for text.
pub fn from_str_bounded<T: DeserializeOwned>(text: &str, max_depth: usize) -> Result<T, JsonError> {
    from_slice_bounded(text.as_bytes(), max_depth)
}

/// A `serde_json` error as a message for the sender: where and what, with no Rust type names.
pub fn describe(e: serde_json::Error) -> JsonError {
    use serde_json::error::Category;
    let at = if e.line() > 0 { format!(" at line {} column {}", e.line(), e.column()) } else { String::new() };
    match e.classify() {
        Category::Data => JsonError::Invalid(format!("{}{at}", plain_words(&strip_position(&e.to_string())))),
        Category::Eof => JsonError::Malformed(format!("the JSON document ends too early{at}")),
        Category::Syntax if e.to_string().contains("recursion limit") => JsonError::TooDeep(MAX_DEPTH),
        Category::Syntax => JsonError::Malformed(format!("malformed JSON{at}")),
        Category::Io => JsonError::Malformed("the JSON document could not be read".into()),
    }
}

fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

/// Serde's "expected …" wording names Rust types (`expected struct Foo`, `expected u64`);
/// say what JSON was expected instead. Field names and variants (the wire format) stay.
pub fn plain_words(msg: &str) -> String {
    // (Rust wording, does a type name follow, plain wording)
    const WORDS: &[(&str, bool, &str)] = &[
        ("tuple struct ", true, "a JSON array"),
        ("unit struct ", true, "null"),
        ("struct variant ", true, "a JSON object"),
        ("tuple variant ", true, "a JSON array"),
        ("struct ", true, "a JSON object"),
        ("enum ", true, "one of the allowed values"),
        ("map", false, "a JSON object"),
        ("option", false, "a value or null"),
        ("bool", false, "true or false"),
        ("char", false, "a single character"),
        ("f32", false, "a number"),
        ("f64", false, "a number"),
        ("u8", false, "an integer in range"),
        ("u16", false, "an integer in range"),
        ("u32", false, "an integer in range"),
        ("u64", false, "an integer in range"),
        ("u128", false, "an integer in range"),
        ("usize", false, "an integer in range"),
        ("i8", false, "an integer in range"),
        ("i16", false, "an integer in range"),
        ("i32", false, "an integer in range"),
        ("i64", false, "an integer in range"),
        ("i128", false, "an integer in range"),
        ("isize", false, "an integer in range"),
    ];
    let ident_len = |s: &str| s.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).unwrap_or(s.len());
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    while let Some(i) = rest.find("expected ") {
        let cut = i + "expected ".len();
        out.push_str(&rest[..cut]);
        rest = &rest[cut..];
        for (rust, named, plain) in WORDS {
            let Some(after) = rest.strip_prefix(rust) else { continue };
            let after = if *named { &after[ident_len(after)..] } else { after };
            // A bare word only when it is the whole word (`u8`, not `u8string`).
            if !*named && after.starts_with(|c: char| c.is_alphanumeric() || c == '_') {
                continue;
            }
            out.push_str(plain);
            rest = after;
            break;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[test]
    fn depth_is_counted_without_recursion_and_ignores_strings() {
        assert_eq!(nesting_depth(br#"{"a": "[[[{{{", "b": [1, {"c": []}]}"#), 4);
        assert_eq!(nesting_depth(br#""\"[""#), 0);
        let deep = "[".repeat(1_000_000);
        assert_eq!(nesting_depth(deep.as_bytes()), 1_000_000);
        let v: Value = serde_json::from_str(r#"{"a": [1, {"b": {}}], "c": 2}"#).unwrap();
        assert_eq!((value_depth(&v), value_count(&v)), (4, 6));
    }

    #[test]
    fn bounded_parsing_refuses_depth_and_names_no_rust_type() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Body {
            n: u64,
            inner: Inner,
            kind: Option<Kind>,
        }
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Inner {
            x: bool,
        }
        #[derive(Debug, Deserialize)]
        enum Kind {
            A,
        }
        let nested = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert_eq!(from_str_bounded::<Value>(&nested, MAX_DEPTH).unwrap_err(), JsonError::TooDeep(MAX_DEPTH));
        for (text, wanted) in [
            (r#""x""#, "a JSON object"),
            (r#"{"n": "x", "inner": {"x": true}}"#, "an integer in range"),
            (r#"{"n": 1, "inner": 3}"#, "a JSON object"),
            (r#"{"n": 1, "inner": {"x": 3}}"#, "a boolean"),
            (r#"{"n": 1, "inner": {"x": true}, "kind": 3}"#, "expected type"),
            (r#"{"n": 1e400}"#, "number"),
        ] {
            let e = from_str_bounded::<Body>(text, MAX_DEPTH).unwrap_err().to_string();
            assert!(e.contains(wanted), "{text}: {e}");
            let words: Vec<&str> = e.split(|c: char| !c.is_alphanumeric()).collect();
            for rust in ["struct", "Body", "Inner", "enum", "Kind", "u64", "bool"] {
                assert!(!words.contains(&rust), "{text}: {e} names {rust}");
            }
        }
        assert!(matches!(from_str_bounded::<Body>("{\"n\": ", 64), Err(JsonError::Malformed(_))));
    }
}
