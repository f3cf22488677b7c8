//! The text and JSON of each step of an explanation: what `decide` did at that step, in an
//! operator's words, never the token, its signature or a query string.

use crate::formats::revocation::Verdict;
use std::time::Duration;

use http::Method;
use serde_json::{json, Value};

use super::{line, Line};
use crate::auth::claims::{has_scope, matches_any, Claims};
use crate::auth::trace::Step;
use crate::config::routes::{HostMatch, PathMatch};
use crate::runtime::Snapshot;

pub(super) fn describe(snap: &Snapshot, step: Step<'_>) -> Line {
    let config = &snap.config;
    match step {
        Step::Message { max_header_bytes } => line(
            "message",
            format!("head within {max_header_bytes} bytes, Host present, framing unambiguous"),
            json!({ "max_header_bytes": max_header_bytes }),
        ),
        Step::Target { path, query } => line(
            "target",
            format!(
                "normalized path {path}{}",
                query.map_or(String::new(), |q| format!(
                    " (query of {} bytes, not shown)",
                    q.len()
                ))
            ),
            json!({ "path": path }),
        ),
        Step::Authority(a) => line(
            "host",
            format!("routed on host {a}"),
            json!({ "authority": a.to_string() }),
        ),
        Step::Route {
            route,
            host: req_host,
            path: req_path,
            method,
            ..
        } => {
            let others: Vec<&str> = config
                .routes
                .matching(Some(req_host), req_path, method)
                .into_iter()
                .skip(1)
                .map(|r| config.routes.get(r).name.as_str())
                .collect();
            let host = match &route.host {
                HostMatch::Any => "any host".to_owned(),
                HostMatch::Exact(h) => format!("host {h}"),
                HostMatch::Suffix(s) => format!("host *{s}"),
            };
            let path = match &route.path {
                PathMatch::Exact(p) => format!("path = {p}"),
                PathMatch::Prefix(p) => format!("path_prefix {p}"),
            };
            let methods = route.methods.as_ref().map_or_else(
                || "any method".to_owned(),
                |m| m.iter().map(Method::as_str).collect::<Vec<_>>().join(","),
            );
            let auth = route.auth.label();
            let why = if others.is_empty() {
                "the only route that matches".to_owned()
            } else {
                format!(
                    "the most specific of {} matching (exact host over *.wildcard over any; exact path over the longest prefix; listed methods over any); also matching: {}",
                    others.len() + 1,
                    others.join(", ")
                )
            };
            line(
                "route",
                format!(
                    "route {} ({host}, {path}, {methods}; auth {auth}, mode {}): {why}",
                    route.name,
                    route.mode.label()
                ),
                json!({ "route": route.name, "auth": auth, "mode": route.mode.label(), "also_matching": others }),
            )
        }
        Step::Anonymous => line(
            "token",
            "no token looked at: anonymous".to_owned(),
            json!({ "anonymous": true }),
        ),
        Step::Bearer { bytes, source } => line(
            "token",
            format!(
                "token of {bytes} bytes in {} (not shown)",
                source.describe()
            ),
            json!({ "bytes": bytes, "source": source.describe() }),
        ),
        Step::Csrf(csrf) => line(
            "csrf",
            format!(
                "cookie token on an unsafe method (or an upgrade): CSRF check {} passed",
                csrf.describe()
            ),
            json!({ "csrf": csrf.describe() }),
        ),
        Step::Introspection { provider, active } => {
            let name = &config.providers[provider.index()].name;
            line(
                "introspection",
                format!(
                    "introspection by {name}: {}",
                    match active {
                        Some(true) => "active",
                        Some(false) => "NOT active",
                        None => "no answer (the endpoint was not asked, or did not answer)",
                    }
                ),
                json!({ "provider": name, "active": active }),
            )
        }
        Step::Cached { provider } => line(
            "cache",
            format!(
                "a verification of this token by {} still holds (verified-token cache)",
                config.providers[provider.index()].name
            ),
            json!({ "provider": config.providers[provider.index()].name }),
        ),
        Step::Jose {
            alg,
            kid,
            typ,
            crit,
        } => line(
            "jose",
            format!(
                "JOSE header: alg {alg}, kid {}, typ {}{}",
                kid.unwrap_or("-"),
                typ.unwrap_or("-"),
                if crit { ", crit present" } else { "" }
            ),
            json!({ "alg": alg, "kid": kid, "typ": typ, "crit": crit }),
        ),
        Step::Provider(id) => {
            let p = &config.providers[id.index()];
            let algs: Vec<String> = p.algorithms.iter().map(|a| format!("{a:?}")).collect();
            line(
                "provider",
                format!(
                    "provider {} (iss {}; algorithms {})",
                    p.name,
                    p.issuer,
                    algs.join(",")
                ),
                json!({ "provider": p.name, "issuer": p.issuer }),
            )
        }
        Step::Signature { candidates, valid } => line(
            "signature",
            format!(
                "{candidates} key(s) for this kid and alg; signature {}",
                if valid { "valid" } else { "INVALID" }
            ),
            json!({ "candidates": candidates, "valid": valid }),
        ),
        Step::Registered {
            claims,
            now,
            leeway,
        } => {
            let time = |name: &str| claims.get(name).and_then(Value::as_f64);
            let mut parts = vec![
                format!("iss {}", shown(claims.get("iss"))),
                format!("aud {}", shown(claims.get("aud"))),
            ];
            for name in ["exp", "nbf", "iat"] {
                if let Some(t) = time(name) {
                    parts.push(format!("{name} {}", relative(t - now)));
                }
            }
            line(
                "claims",
                format!("{} (clock {now:.0}, leeway {leeway}s)", parts.join(", ")),
                json!({
                    "iss": claims.get("iss"), "aud": claims.get("aud"),
                    "exp": claims.get("exp"), "nbf": claims.get("nbf"), "iat": claims.get("iat"),
                    "now": now, "leeway": leeway,
                }),
            )
        }
        Step::Revocation { verdict } => line(
            "revocation",
            format!(
                "revocation list: {}",
                match verdict {
                    Verdict::Clear => "not revoked",
                    Verdict::Revoked => "REVOKED",
                    Verdict::NoCopy => "NOT KNOWN (no copy of the fleet store's list yet)",
                }
            ),
            json!({ "revoked": verdict == Verdict::Revoked, "known": verdict != Verdict::NoCopy }),
        ),
        Step::ProofRefused { bad, htu } => line(
            "dpop",
            format!("the DPoP proof is refused: {bad} (its htu must be {htu})"),
            json!({ "proof": bad.to_string(), "htu": htu }),
        ),
        Step::Binding(bound) => {
            let text = match (bound.dpop(), bound.cert) {
                (false, false) => "a bearer token: not bound to a key or certificate (its provider allows that)",
                (true, false) => "DPoP: the proof checked out (method, URI, age, token hash, first use) and its key is the token's cnf.jkt",
                (false, true) => "certificate-bound: the client certificate is the token's cnf x5t#S256",
                (true, true) => "DPoP proof by the token's key, and the token's client certificate",
            };
            line(
                "binding",
                text.to_owned(),
                json!({ "dpop": bound.dpop(), "certificate": bound.cert }),
            )
        }
        Step::Authorize { route, claims } => authorize_line(route, claims),
        Step::ClaimHeader { header } => line(
            "claim_header",
            format!("claim header {header} added upstream"),
            json!({ "header": header.as_str() }),
        ),
        Step::Refused(r) => line(
            "refused",
            format!(
                "refused: {} ({} {})",
                r.label(),
                r.status(),
                r.description()
            ),
            json!({ "reason": r.label(), "status": r.status() }),
        ),
        Step::WouldReject(r) => line(
            "would_reject",
            format!(
                "report-only route: would refuse with {} ({}), forwarded without claims",
                r.label(),
                r.status()
            ),
            json!({ "reason": r.label() }),
        ),
    }
}

fn authorize_line(route: &crate::config::routes::Route, claims: &Claims) -> Line {
    let scopes: Vec<String> = route
        .require_scopes
        .iter()
        .map(|s| {
            format!(
                "{s} {}",
                if has_scope(claims, s) {
                    "present"
                } else {
                    "MISSING"
                }
            )
        })
        .collect();
    let matchers: Vec<String> = route
        .require_claims
        .iter()
        .map(|c| {
            let value = c.claim.lookup(claims);
            let ok = value.is_some_and(|v| matches_any(v, &c.accepted));
            format!(
                "{} = {} (accepted: {}) {}",
                c.claim.as_str(),
                shown(value),
                c.accepted.join("|"),
                if ok { "ok" } else { "NO MATCH" }
            )
        })
        .collect();
    // The token's own scopes, as `has_scope` reads them (`scope` string, `scp` array or string).
    let present: Vec<String> = ["scope", "scp"]
        .iter()
        .filter_map(|k| claims.get(*k))
        .flat_map(|v| match v {
            Value::String(s) => s.split(' ').map(str::to_owned).collect::<Vec<_>>(),
            Value::Array(a) => a
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        })
        .filter(|s| !s.is_empty())
        .collect();
    let text = match (scopes.is_empty(), matchers.is_empty()) {
        (true, true) => "no scopes or claims required".to_owned(),
        _ => format!(
            "scopes: [{}] (the token has: {}); claims: [{}]",
            scopes.join(", "),
            if present.is_empty() {
                "none".to_owned()
            } else {
                present.join(" ")
            },
            matchers.join("; ")
        ),
    };
    line(
        "authorize",
        text,
        json!({ "scopes": scopes, "token_scopes": present, "claims": matchers }),
    )
}

/// A claim's value for display (`-` when absent).
fn shown(v: Option<&Value>) -> String {
    match v {
        None => "-".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// `in 2h13m`, `5m ago`.
fn relative(secs: f64) -> String {
    let d =
        humantime::format_duration(Duration::from_secs(secs.abs().min(1e12) as u64)).to_string();
    if secs >= 0.0 {
        format!("in {d}")
    } else {
        format!("{d} ago")
    }
}
