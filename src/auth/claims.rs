//! Claims after verification: dotted paths, scopes, matching, and rendering as header values.

use http::HeaderValue;
use serde_json::{Map, Value};

pub use crate::formats::claim_path::ClaimPath;

/// Verified claims of one token.
pub type Claims = Map<String, Value>;

/// A claim value that cannot be sent as a header without letting the token's content
/// shape the upstream request (CR/LF header injection, NUL, other control characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnsafeValue;

/// The token's scopes: the space-delimited `scope` string (RFC 8693 / RFC 9068) and the
/// `scp` claim (an array, or a space-delimited string), as whole, case-sensitive words.
pub fn has_scope(claims: &Claims, wanted: &str) -> bool {
    let in_str = |v: &Value| {
        v.as_str()
            .is_some_and(|s| s.split(' ').any(|w| w == wanted))
    };
    if claims.get("scope").is_some_and(in_str) {
        return true;
    }
    match claims.get("scp") {
        Some(Value::Array(items)) => items.iter().any(|i| i.as_str() == Some(wanted)),
        Some(v) => in_str(v),
        None => false,
    }
}

/// True when the claim's value equals one of `accepted`; an array matches when any of
/// its elements does. Numbers and booleans compare as their JSON text.
pub fn matches_any(value: &Value, accepted: &[String]) -> bool {
    match value {
        Value::Array(items) => items.iter().any(|i| scalar_matches(i, accepted)),
        other => scalar_matches(other, accepted),
    }
}

fn scalar_matches(value: &Value, accepted: &[String]) -> bool {
    match value {
        Value::String(s) => accepted.iter().any(|a| a == s),
        Value::Number(n) => {
            let text = n.to_string();
            accepted.contains(&text)
        }
        Value::Bool(b) => {
            let text = if *b { "true" } else { "false" };
            accepted.iter().any(|a| a == text)
        }
        Value::Null | Value::Array(_) | Value::Object(_) => false,
    }
}

/// Renders a claim for a header: strings as they are, arrays of strings joined with `,`,
/// numbers and booleans as JSON text, anything else as compact JSON. `null` and `[]` send
/// nothing.
///
/// Refused (`UnsafeValue`), because an HTTP stack would read the header as something the
/// token did not say:
/// * control characters (CR/LF header injection, NUL, TAB, DEL, C1);
/// * leading or trailing whitespace on a string or an element: every HTTP parser drops it,
///   so `" admin"` would arrive as `admin`;
/// * a comma inside a string or an element: in a header, commas separate list elements
///   (RFC 9110 §5.6.1), so `"a,b"` would read as the array `["a","b"]`; an array's elements
///   are joined with `,` and a comma always means that;
/// * an empty element (`["a", ""]` would read as `a,`);
/// * a number outside I-JSON's exact integers (RFC 7493 §2.2, ±(2^53−1)) that is integral:
///   JavaScript and most JSON libraries turn it into a float, and a 20-digit integer in the
///   token already arrives here as one (`1e20`).
pub fn render_header_value(value: &Value) -> Result<Option<HeaderValue>, UnsafeValue> {
    let text = match value {
        // Nothing to say: no header, as for a missing claim.
        Value::Null => return Ok(None),
        Value::Array(items) if items.is_empty() => return Ok(None),
        Value::String(s) => {
            check_list_safe(s)?;
            s.clone()
        }
        Value::Array(items) if items.iter().all(Value::is_string) => {
            let parts: Vec<&str> = items.iter().filter_map(Value::as_str).collect();
            for p in &parts {
                if p.is_empty() {
                    return Err(UnsafeValue);
                }
                check_list_safe(p)?;
            }
            parts.join(",")
        }
        Value::Number(n) => {
            check_exact_number(n)?;
            n.to_string()
        }
        Value::Bool(_) | Value::Array(_) | Value::Object(_) => value.to_string(),
    };
    // `char::is_control` covers C0 (CR, LF, NUL, TAB...), DEL and C1 controls.
    if text.chars().any(char::is_control) {
        return Err(UnsafeValue);
    }
    HeaderValue::from_str(&text)
        .map(Some)
        .map_err(|_| UnsafeValue)
}

/// Largest integer every JSON reader holds exactly (RFC 7493 §2.2).
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

/// A string or list element that reads back the same from a header.
fn check_list_safe(s: &str) -> Result<(), UnsafeValue> {
    let trimmed = s.trim_matches(|c: char| c == ' ' || c == '\t');
    if trimmed.len() != s.len() || s.contains(',') {
        return Err(UnsafeValue);
    }
    Ok(())
}

/// A number whose text every reader takes for the same value.
fn check_exact_number(n: &serde_json::Number) -> Result<(), UnsafeValue> {
    let exact = match (n.as_i64(), n.as_u64(), n.as_f64()) {
        (Some(i), _, _) => i.unsigned_abs() <= MAX_SAFE_INTEGER as u64,
        (None, Some(u), _) => u <= MAX_SAFE_INTEGER as u64,
        (None, None, Some(f)) => f.is_finite() && (f.fract() != 0.0 || f.abs() <= MAX_SAFE_INTEGER),
        (None, None, None) => false,
    };
    if exact {
        Ok(())
    } else {
        Err(UnsafeValue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Claims {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn dotted_paths_and_literal_names() {
        let c = claims(json!({"org": {"id": "o1", "tier": "gold"}, "https://x.io/r": ["a"]}));
        assert_eq!(
            ClaimPath::parse("org.id").unwrap().lookup(&c),
            Some(&json!("o1"))
        );
        assert_eq!(ClaimPath::parse("org.nope").unwrap().lookup(&c), None);
        assert_eq!(
            ClaimPath::parse("https://x.io/r").unwrap().lookup(&c),
            Some(&json!(["a"]))
        );
        assert_eq!(
            ClaimPath::parse("org")
                .unwrap()
                .lookup(&c)
                .map(Value::is_object),
            Some(true)
        );
    }

    #[test]
    fn scopes_are_whole_case_sensitive_words() {
        let c = claims(json!({"scope": "read write:all"}));
        assert!(has_scope(&c, "read"));
        assert!(has_scope(&c, "write:all"));
        assert!(!has_scope(&c, "write"));
        assert!(!has_scope(&c, "READ"));
        assert!(!has_scope(&c, "read write:all"));
        let c = claims(json!({"scp": ["admin", "read"]}));
        assert!(has_scope(&c, "admin"));
        assert!(!has_scope(&c, "adm"));
        let c = claims(json!({"scope": ["admin"]}));
        assert!(!has_scope(&c, "admin"), "scope must be a string");
    }

    #[test]
    fn rendering() {
        let r =
            |v: Value| render_header_value(&v).map(|o| o.map(|h| h.to_str().unwrap().to_owned()));
        assert_eq!(r(json!("u1")), Ok(Some("u1".into())));
        assert_eq!(r(json!(["a", "b"])), Ok(Some("a,b".into())));
        assert_eq!(r(json!(42)), Ok(Some("42".into())));
        assert_eq!(r(json!(1.5)), Ok(Some("1.5".into())));
        assert_eq!(r(json!(true)), Ok(Some("true".into())));
        assert_eq!(r(json!({"a": 1})), Ok(Some("{\"a\":1}".into())));
        assert_eq!(r(json!([1, "a"])), Ok(Some("[1,\"a\"]".into())));
        assert_eq!(r(json!(null)), Ok(None));
        assert_eq!(r(json!("a\r\nX-Admin: 1")), Err(UnsafeValue));
        assert_eq!(r(json!("a\0b")), Err(UnsafeValue));
        assert_eq!(r(json!("tab\there")), Err(UnsafeValue));
        assert_eq!(r(json!(["ok", "bad\n"])), Err(UnsafeValue));
        assert_eq!(
            r(json!({"k": "v\n"})),
            Ok(Some("{\"k\":\"v\\n\"}".into())),
            "escaped by JSON"
        );
        assert_eq!(r(json!("\u{85}")), Err(UnsafeValue), "C1 control");
    }

    /// Issue 11: values that an HTTP stack would read differently are refused.
    #[test]
    fn ambiguous_values_are_refused() {
        let r =
            |v: Value| render_header_value(&v).map(|o| o.map(|h| h.to_str().unwrap().to_owned()));
        for bad in [
            json!(" admin"),
            json!("admin "),
            json!("a,b"),
            json!(["a", "b,c"]),
            json!(["a", " b"]),
            json!(["a", ""]),
            json!(9_007_199_254_740_992_u64),
            json!(-9_007_199_254_740_992_i64),
            json!(u64::MAX),
            json!(1e20),
            json!(-1e300),
        ] {
            assert_eq!(r(bad.clone()), Err(UnsafeValue), "{bad}");
        }
        assert_eq!(
            r(json!(9_007_199_254_740_991_u64)),
            Ok(Some("9007199254740991".into()))
        );
        assert_eq!(
            r(json!(-9_007_199_254_740_991_i64)),
            Ok(Some("-9007199254740991".into()))
        );
        assert_eq!(r(json!(2.5e-3)), Ok(Some("0.0025".into())));
        assert_eq!(r(json!("a b")), Ok(Some("a b".into())), "inner spaces stay");
        assert_eq!(r(json!([])), Ok(None), "empty array: no header");
        assert_eq!(
            r(json!({"a": "x,y"})),
            Ok(Some("{\"a\":\"x,y\"}".into())),
            "objects are JSON text"
        );
    }

    #[test]
    fn matching() {
        let acc = vec!["gold".to_owned(), "7".to_owned(), "true".to_owned()];
        assert!(matches_any(&json!("gold"), &acc));
        assert!(!matches_any(&json!("Gold"), &acc));
        assert!(matches_any(&json!(7), &acc));
        assert!(matches_any(&json!(true), &acc));
        assert!(matches_any(&json!(["x", "gold"]), &acc));
        assert!(!matches_any(&json!({"gold": 1}), &acc));
        assert!(!matches_any(&json!(null), &acc));
    }
}
