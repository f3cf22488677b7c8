//! Token revocation: revoked `jti`s, and per `sub` a "not before" instant (logout, role
//! change: every token of that subject issued before it is refused).
//!
//! `Revocations` is the small trait a request asks; `RevocationSet` is one parsed list
//! (`runtime::revocations::FileRevocations` keeps one current from a TOML file). A store
//! shared by many replicas (e.g. Redis) would implement the same trait with a local,
//! lock-free copy refreshed in the background: the request path must not wait on the
//! network (see README, "Revocation").
//!
//! ```toml
//! jti = ["4f1c0d", "b7e9aa"]
//! [subjects]
//! alice = "2026-11-23T10:00:00Z"   # RFC 3339, or Unix seconds
//! bob = 1795430000
//! ```

use std::collections::{HashMap, HashSet};

use serde::Deserialize;
use serde_json::{Map, Value};

/// Asked once per verified token; must answer from memory, without blocking.
pub trait Revocations: Send + Sync {
    /// True when the token is revoked. `iat` is the token's issue time (Unix seconds).
    fn is_revoked(&self, jti: Option<&str>, sub: Option<&str>, iat: Option<f64>) -> bool;
}

/// One parsed revocation list.
#[derive(Debug, Default, PartialEq)]
pub struct RevocationSet {
    jtis: HashSet<String>,
    /// `sub` → Unix seconds; tokens of that subject issued before are revoked.
    not_before: HashMap<String, f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRevocations {
    #[serde(default)]
    jti: Vec<String>,
    #[serde(default)]
    subjects: HashMap<String, RawInstant>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawInstant {
    Unix(i64),
    Rfc3339(String),
}

// === impl RevocationSet ===

impl RevocationSet {
    /// Parses the file format above; errors name the problem.
    pub fn parse(text: &str) -> Result<Self, String> {
        let raw: RawRevocations =
            toml::from_str(text).map_err(|e| e.message().trim().to_owned())?;
        let mut not_before = HashMap::new();
        for (sub, at) in raw.subjects {
            let secs = match at {
                RawInstant::Unix(s) => s as f64,
                RawInstant::Rfc3339(s) => humantime::parse_rfc3339(&s)
                    .map_err(|e| format!("subjects.{sub}: {s:?} is not an RFC 3339 instant: {e}"))?
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_err(|_| format!("subjects.{sub}: before 1970"))?
                    .as_secs_f64(),
            };
            not_before.insert(sub, secs);
        }
        Ok(Self {
            jtis: raw.jti.into_iter().collect(),
            not_before,
        })
    }

    pub fn len(&self) -> usize {
        self.jtis.len() + self.not_before.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Revocations for RevocationSet {
    fn is_revoked(&self, jti: Option<&str>, sub: Option<&str>, iat: Option<f64>) -> bool {
        if jti.is_some_and(|j| self.jtis.contains(j)) {
            return true;
        }
        match sub.and_then(|s| self.not_before.get(s)) {
            // Without `iat` the token cannot show it was issued after: refused.
            Some(&cutoff) => iat.is_none_or(|iat| iat < cutoff),
            None => false,
        }
    }
}

/// Asks `list` about a verified token's claims. A `jti` or `sub` that is a number is
/// compared as its JSON text; one of another type cannot be matched, so it is refused.
pub fn check(list: &dyn Revocations, claims: &Map<String, Value>) -> bool {
    let id = |k: &str| -> Result<Option<String>, ()> {
        match claims.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(_) => Err(()),
        }
    };
    let (Ok(jti), Ok(sub)) = (id("jti"), id("sub")) else {
        return true;
    };
    let iat = claims.get("iat").and_then(Value::as_f64);
    list.is_revoked(jti.as_deref(), sub.as_deref(), iat)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_answers() {
        let set = RevocationSet::parse(
            "jti = [\"j1\"]\n[subjects]\nalice = \"2026-01-01T00:00:00Z\"\nbob = 1000\n",
        )
        .unwrap();
        let cutoff = 1_767_225_600.0; // 2026-01-01T00:00:00Z
        assert!(set.is_revoked(Some("j1"), None, None));
        assert!(!set.is_revoked(Some("j2"), Some("carol"), Some(1.0)));
        assert!(set.is_revoked(None, Some("alice"), Some(cutoff - 1.0)));
        assert!(!set.is_revoked(None, Some("alice"), Some(cutoff)));
        assert!(
            set.is_revoked(None, Some("alice"), None),
            "no iat: cannot prove it is newer"
        );
        assert!(set.is_revoked(Some("x"), Some("bob"), Some(999.5)));
        assert!(!set.is_revoked(Some("x"), Some("bob"), Some(1000.0)));
    }

    #[test]
    fn odd_claim_types() {
        let set = RevocationSet::parse("jti = [\"42\"]\n").unwrap();
        let c = |v: serde_json::Value| v.as_object().cloned().unwrap();
        assert!(
            check(&set, &c(serde_json::json!({"jti": 42}))),
            "a numeric jti compares as text"
        );
        assert!(
            check(&set, &c(serde_json::json!({"jti": ["42"]}))),
            "an array jti cannot be matched: refused"
        );
        assert!(!check(
            &set,
            &c(serde_json::json!({"jti": "43", "sub": "x"}))
        ));
    }

    #[test]
    fn errors_are_clear() {
        assert!(RevocationSet::parse("jtis = []")
            .unwrap_err()
            .contains("unknown field"));
        let e = RevocationSet::parse("[subjects]\nalice = \"yesterday\"").unwrap_err();
        assert!(
            e.contains("subjects.alice") && e.contains("RFC 3339"),
            "{e}"
        );
        assert_eq!(RevocationSet::parse("").unwrap(), RevocationSet::default());
    }
}
