//! Token revocation: revoked `jti`s, and per `sub` a "not before" instant (logout, role
//! change: every token of that subject issued before it is refused).
//!
//! `Revocations` is the small trait a request asks; `RevocationSet` is one parsed list
//! (`runtime::revocations::FileRevocations` keeps one current from a TOML file, and
//! `runtime::store::revocations` a copy of the fleet store's, kept current by `Change`s
//! published with each write). The request path never waits on the network (see README,
//! "Revocation" and "Running a fleet").
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
    /// Whether the token is revoked. `iat` is the token's issue time (Unix seconds).
    fn verdict(&self, jti: Option<&str>, sub: Option<&str>, iat: Option<f64>) -> Verdict;
}

/// A revocation list's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Clear,
    Revoked,
    /// The list that must be asked is not known yet (a fleet store not read since start):
    /// the token can be neither passed nor called revoked.
    NoCopy,
}

/// One parsed revocation list.
#[derive(Debug, Default, Clone, PartialEq)]
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

    /// A list of these `jti`s and per-`sub` cutoffs (Unix seconds).
    pub fn from_parts(
        jtis: impl IntoIterator<Item = String>,
        not_before: impl IntoIterator<Item = (String, f64)>,
    ) -> Self {
        Self {
            jtis: jtis.into_iter().collect(),
            not_before: not_before.into_iter().collect(),
        }
    }

    /// Applies one change; a subject's cutoff only moves later.
    pub fn apply(&mut self, change: Change) {
        match change {
            Change::Jti(jti) => {
                self.jtis.insert(jti);
            }
            Change::Subject { sub, not_before } => {
                let at = self.not_before.entry(sub).or_insert(not_before);
                *at = at.max(not_before);
            }
        }
    }

    /// True when the token is revoked (see `Revocations`).
    pub fn is_revoked(&self, jti: Option<&str>, sub: Option<&str>, iat: Option<f64>) -> bool {
        if jti.is_some_and(|j| self.jtis.contains(j)) {
            return true;
        }
        match sub.and_then(|s| self.not_before.get(s)) {
            // Without `iat` the token cannot show it was issued after: refused.
            Some(&cutoff) => iat.is_none_or(|iat| iat < cutoff),
            None => false,
        }
    }

    pub fn len(&self) -> usize {
        self.jtis.len() + self.not_before.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Revocations for RevocationSet {
    fn verdict(&self, jti: Option<&str>, sub: Option<&str>, iat: Option<f64>) -> Verdict {
        if self.is_revoked(jti, sub, iat) {
            Verdict::Revoked
        } else {
            Verdict::Clear
        }
    }
}

/// One revocation written to the fleet store, as published to every replica: the store's
/// version after it and the version it followed, then `jti <at_ms> <id>` or
/// `sub <cutoff_ms> <sub>`. The id comes last, whole, so it may hold spaces.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Jti(String),
    /// Tokens of `sub` issued before `not_before` (Unix seconds) are revoked.
    Subject {
        sub: String,
        not_before: f64,
    },
}

/// Where a published change sits: the version it made, and the one it was written on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Versions {
    pub version: u64,
    pub previous: u64,
}

impl Change {
    /// Reads a published message, `None` when it is not one.
    pub fn parse(message: &str) -> Option<(Versions, Self)> {
        let mut parts = message.splitn(5, ' ');
        let version = parts.next()?.parse().ok()?;
        let previous = parts.next()?.parse().ok()?;
        let kind = parts.next()?;
        let at_ms: i64 = parts.next()?.parse().ok()?;
        let id = parts.next().filter(|id| !id.is_empty())?.to_owned();
        let change = match kind {
            "jti" => Self::Jti(id),
            "sub" => Self::Subject {
                sub: id,
                not_before: at_ms as f64 / 1000.0,
            },
            _ => return None,
        };
        Some((Versions { version, previous }, change))
    }
}

/// Asks `list` about a verified token's claims. A `jti` or `sub` that is an integer is
/// compared as its JSON text; `null` is no claim; one of another type (an array, an
/// object, a fraction, an integer too large to read exactly) cannot be matched, so it is
/// refused.
pub fn check(list: &dyn Revocations, claims: &Map<String, Value>) -> Verdict {
    let id = |k: &str| -> Result<Option<String>, ()> {
        match claims.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(Some(n.to_string())),
            Some(_) => Err(()),
        }
    };
    let (Ok(jti), Ok(sub)) = (id("jti"), id("sub")) else {
        return Verdict::Revoked;
    };
    let iat = claims.get("iat").and_then(Value::as_f64);
    list.verdict(jti.as_deref(), sub.as_deref(), iat)
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
        assert_eq!(
            check(&set, &c(serde_json::json!({"jti": 42}))),
            Verdict::Revoked,
            "a numeric jti compares as text"
        );
        assert_eq!(
            check(&set, &c(serde_json::json!({"jti": ["42"]}))),
            Verdict::Revoked,
            "an array jti cannot be matched: refused"
        );
        assert_eq!(
            check(&set, &c(serde_json::json!({"jti": "43", "sub": "x"}))),
            Verdict::Clear
        );
        let big: Map<String, Value> =
            serde_json::from_str(r#"{"jti": 18446744073709551616}"#).unwrap();
        assert_eq!(
            check(&set, &big),
            Verdict::Revoked,
            "past u64 the number read is not the one sent: refused"
        );
        assert_eq!(
            check(&set, &c(serde_json::json!({"jti": 4.2}))),
            Verdict::Revoked
        );
        assert_eq!(
            check(&set, &c(serde_json::json!({"jti": null, "sub": null}))),
            Verdict::Clear,
            "null is no claim"
        );
    }

    #[test]
    fn published_changes() {
        let v = |version, previous| Versions { version, previous };
        assert_eq!(
            Change::parse("7 3 jti 1700000000000 a b"),
            Some((v(7, 3), Change::Jti("a b".into())))
        );
        assert_eq!(
            Change::parse("1764000000000000 8 sub 1700000000500 alice"),
            Some((
                v(1_764_000_000_000_000, 8),
                Change::Subject {
                    sub: "alice".into(),
                    not_before: 1_700_000_000.5
                }
            ))
        );
        for bad in [
            "",
            "x 1 jti 1 a",
            "7 jti 1 a",
            "7 1 jti 1",
            "7 1 jti 1 ",
            "7 1 key 1 a",
            "7 1 sub x a",
        ] {
            assert_eq!(Change::parse(bad), None, "{bad:?}");
        }
        let mut set = RevocationSet::default();
        set.apply(Change::Subject {
            sub: "alice".into(),
            not_before: 10.0,
        });
        set.apply(Change::Subject {
            sub: "alice".into(),
            not_before: 5.0,
        });
        assert!(
            set.is_revoked(None, Some("alice"), Some(9.0)),
            "a cutoff only moves later"
        );
        set.apply(Change::Jti("j".into()));
        assert!(set.is_revoked(Some("j"), None, None));
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
