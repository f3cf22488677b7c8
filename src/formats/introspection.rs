//! RFC 7662 introspection answers: the JSON object, or the `token_introspection` member of
//! an RFC 9701 signed answer's claims. Parsing only; what an answer allows is `auth`'s call.

use super::json::{is_duplicate, Strict};
use serde_json::{Map, Value};

/// Largest answer body accepted.
pub const MAX_ANSWER_BYTES: usize = 64 << 10;

/// What the endpoint said about a token.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// `"active": true`: the rest of the object are the token's claims (`active` removed).
    Active(Map<String, Value>),
    /// `"active": false`, whatever else was said (RFC 7662 §2.2: nothing more is to be
    /// trusted about an inactive token).
    Inactive,
}

/// Why an answer cannot be used (each answers 503: a garbled answer is no verdict).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadAnswer {
    #[error("answer is not a JSON object")]
    NotAnObject,
    #[error("answer has no boolean \"active\"")]
    NoActive,
    #[error("signed answer has no \"token_introspection\" object")]
    NoTokenIntrospection,
    #[error("answer names a member twice")]
    DuplicateKey,
}

/// The answer in a plain JSON body. A member named twice, at any depth, makes it no answer:
/// `{"active":false, ..., "active":true}` reads as either, depending on the parser.
pub fn parse(body: &[u8]) -> Result<Answer, BadAnswer> {
    match serde_json::from_slice::<Strict>(body) {
        Ok(Strict(Value::Object(map))) => from_object(map),
        Ok(_) => Err(BadAnswer::NotAnObject),
        Err(e) if is_duplicate(&e) => Err(BadAnswer::DuplicateKey),
        Err(_) => Err(BadAnswer::NotAnObject),
    }
}

/// The answer inside the verified claims of an RFC 9701 signed answer.
pub fn from_signed_claims(mut claims: Map<String, Value>) -> Result<Answer, BadAnswer> {
    match claims.remove("token_introspection") {
        Some(Value::Object(map)) => from_object(map),
        _ => Err(BadAnswer::NoTokenIntrospection),
    }
}

fn from_object(mut map: Map<String, Value>) -> Result<Answer, BadAnswer> {
    // A string "true" is not a boolean: RFC 7662 §2.2 says REQUIRED boolean, and an
    // endpoint that sends anything else is not one to trust with an accept.
    match map.remove("active") {
        Some(Value::Bool(true)) => Ok(Answer::Active(map)),
        Some(Value::Bool(false)) => Ok(Answer::Inactive),
        _ => Err(BadAnswer::NoActive),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers() {
        let a = parse(br#"{"active":true,"scope":"read","exp":5}"#).unwrap();
        let Answer::Active(m) = a else { panic!() };
        assert_eq!(m.get("scope"), Some(&Value::from("read")));
        assert!(!m.contains_key("active"));
        assert_eq!(
            parse(br#"{"active":false,"scope":"admin"}"#),
            Ok(Answer::Inactive)
        );
        for bad in [
            &br#"{"active":"true"}"#[..],
            br#"{"active":1}"#,
            br#"{"scope":"read"}"#,
            br#"{"active":null}"#,
        ] {
            assert_eq!(parse(bad), Err(BadAnswer::NoActive), "{bad:?}");
        }
        for bad in [&b"[]"[..], b"", b"<html>", b"true", b"{\"active\":true"] {
            assert_eq!(parse(bad), Err(BadAnswer::NotAnObject), "{bad:?}");
        }
        // A member twice, at any depth: no answer (which one would another parser take?).
        for dup in [
            &br#"{"active":false,"sub":"a","active":true}"#[..],
            br#"{"active":true,"aud":"x","aud":"y"}"#,
            br#"{"active":true,"org":{"tier":"gold","tier":"silver"}}"#,
            br#"{"active":true,"list":[{"a":1,"a":2}]}"#,
        ] {
            assert_eq!(parse(dup), Err(BadAnswer::DuplicateKey), "{dup:?}");
        }
        // Values come through as serde_json reads them.
        let Answer::Active(m) = parse(
            br#"{"active":true,"n":-1,"u":18446744073709551615,"f":1.5,"z":null,"a":[1,"x",{}]}"#,
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(
            Value::Object(m),
            serde_json::json!({"n":-1,"u":18446744073709551615u64,"f":1.5,"z":null,"a":[1,"x",{}]})
        );
        let signed = serde_json::json!({
            "iss": "x", "token_introspection": {"active": true, "sub": "a"}
        });
        let Value::Object(signed) = signed else {
            panic!()
        };
        assert!(matches!(from_signed_claims(signed), Ok(Answer::Active(m)) if m["sub"] == "a"));
        assert_eq!(
            from_signed_claims(Map::new()),
            Err(BadAnswer::NoTokenIntrospection)
        );
    }
}
