//! `[headers]`: claims forwarded as headers, client headers stripped.

use std::collections::HashSet;
use std::str::FromStr;

use http::HeaderName;

use super::{at, Ctx};
use crate::config::schema::RawHeaders;
use crate::config::{ClaimHeader, HeaderPolicy};
use crate::formats::canonical_header;
use crate::formats::claim_path::ClaimPath;
use crate::formats::header_names::{is_framing, is_hop_by_hop};

/// Headers a claim may never be forwarded in: they carry framing, routing or credentials.
fn reserved(canonical: &str) -> bool {
    is_framing(canonical)
        || is_hop_by_hop(canonical)
        || [
            "authorization",
            "cookie",
            "x-forwarded-for",
            "x-forwarded-proto",
        ]
        .contains(&canonical)
}

pub(super) fn build_headers(cx: &mut Ctx<'_>, raw: &RawHeaders) -> HeaderPolicy {
    let mut forward_claims = Vec::new();
    let mut seen = HashSet::new();
    for (claim, header) in &raw.forward_claims {
        let key = format!("headers.forward_claims.{claim}");
        let claim_path = match ClaimPath::parse(claim) {
            Ok(c) => c,
            Err(e) => {
                cx.err(at(header), key, e);
                continue;
            }
        };
        let name = match HeaderName::from_str(header.get_ref()) {
            Ok(n) => n,
            Err(_) => {
                cx.err(
                    at(header),
                    key,
                    format!("{:?} is not a valid header name", header.get_ref()),
                );
                continue;
            }
        };
        let canonical = canonical_header(name.as_str());
        if reserved(&canonical) {
            cx.err(
                at(header),
                key,
                format!("{name} carries framing, routing or credentials and cannot hold a claim"),
            );
            continue;
        }
        if !seen.insert(canonical) {
            cx.err(
                at(header),
                key,
                format!("header {name} is already used by another claim"),
            );
            continue;
        }
        forward_claims.push(ClaimHeader {
            claim: claim_path,
            header: name,
        });
    }
    let mut strip_exact: Vec<String> = forward_claims
        .iter()
        .map(|c| canonical_header(c.header.as_str()))
        .collect();
    let mut strip_prefixes = Vec::new();
    for s in &raw.strip {
        let (name, wildcard) = match s.get_ref().strip_suffix('*') {
            Some(prefix) => (prefix, true),
            None => (s.get_ref().as_str(), false),
        };
        if name.is_empty() || HeaderName::from_str(name).is_err() {
            cx.err(
                at(s),
                "headers.strip",
                format!(
                    "{:?} is not a header name (a trailing * matches a prefix)",
                    s.get_ref()
                ),
            );
            continue;
        }
        let canonical = canonical_header(name);
        if matches!(
            canonical.as_str(),
            "host" | "content-length" | "transfer-encoding"
        ) {
            cx.err(
                at(s),
                "headers.strip",
                format!("{name} is needed to route and frame the request"),
            );
            continue;
        }
        if wildcard {
            strip_prefixes.push(canonical);
        } else {
            strip_exact.push(canonical);
        }
    }
    HeaderPolicy {
        forward_claims,
        strip_exact,
        strip_prefixes,
        forward_token: raw.forward_token,
    }
}
