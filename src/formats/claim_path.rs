//! Claim paths as config names them: `sub`, or a dotted path such as `org.id`.

use serde_json::{Map, Value};

/// A claim named in config: `sub`, or a dotted path into nested objects such as `org.id`.
///
/// A top-level claim whose name is the whole string (URL-style names such as
/// `https://example.com/roles` contain dots) wins over the dotted reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimPath {
    full: String,
    segments: Vec<String>,
}

// === impl ClaimPath ===

impl ClaimPath {
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        if s.is_empty() {
            return Err("claim path is empty");
        }
        if s.chars().any(char::is_control) {
            return Err("claim path contains a control character");
        }
        let segments: Vec<String> = s.split('.').map(str::to_owned).collect();
        Ok(Self {
            full: s.to_owned(),
            segments,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.full
    }

    pub fn lookup<'c>(&self, claims: &'c Map<String, Value>) -> Option<&'c Value> {
        if let Some(v) = claims.get(&self.full) {
            return Some(v);
        }
        if self.segments.len() < 2 {
            return None;
        }
        let (first, rest) = self.segments.split_first()?;
        let mut cur = claims.get(first)?;
        for seg in rest {
            cur = cur.as_object()?.get(seg)?;
        }
        Some(cur)
    }
}
