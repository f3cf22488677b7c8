//! `authgate explain`: one request through the very `decide` the gateway runs, every step
//! printed (or given as JSON), with the answer it would get and the headers the upstream
//! would see. It never prints the token, its signature or a query string.

mod describe;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use serde_json::{json, Value};

use crate::auth::cache::TokenCache;
use crate::auth::introspection::Lookup;
use crate::auth::trace::Step;
use crate::auth::{decide_traced, pending, Context, Denial, Grant, Pending, RequestHead};
use crate::config::{Config, JwksFile, KeySource};
use crate::metrics::Metrics;
use crate::proxy::headers::{edit_cookies, headers_to_remove, CookieEdit, TokenCarriers};
use crate::proxy::unix_now;
use crate::runtime::introspection::WithAnswer;
use crate::runtime::Snapshot;
use describe::describe;

/// What to explain.
pub struct Request {
    pub method: String,
    /// `http://host[:port]/path?query` (the host becomes `Host` unless a header gives one).
    pub url: String,
    pub headers: Vec<(String, String)>,
    /// A bearer token, sent as `Authorization: Bearer ...`.
    pub token: Option<String>,
}

/// How to explain it.
#[derive(Default)]
pub struct Options {
    /// Verify against this JWKS file instead of fetching each provider's keys.
    pub jwks: Option<PathBuf>,
    /// The clock, seconds since the epoch (default: now).
    pub now: Option<f64>,
}

/// One step, as text and as JSON.
pub struct Line {
    pub step: &'static str,
    pub text: String,
    pub json: Value,
}

/// The steps and the answer.
pub struct Explanation {
    pub lines: Vec<Line>,
    /// `allowed`, `rejected` or `would_reject`.
    pub decision: &'static str,
    pub status: u16,
    /// The reason label, or `-`.
    pub reason: &'static str,
    pub www_authenticate: Option<String>,
    /// Claim headers added upstream, and client headers the gateway removes.
    pub upstream_adds: Vec<String>,
    pub upstream_removes: Vec<String>,
    /// The headers the upstream would get with their values: the client's that stay, and
    /// the claim headers (the gateway's own `X-Forwarded-*` and `X-Request-Id` aside).
    pub upstream_headers: Vec<(String, String)>,
    /// What the gateway does before this decision stands (refetch keys for an unknown `kid`,
    /// ask an introspection endpoint), and then decides again.
    pub pending: Option<Pending>,
}

/// Explains `req` under `config`. What the gateway does before a decision stands is done
/// too when the keys are fetched live (an unknown `kid` refetched once, an introspection
/// endpoint asked); with `--jwks` the explanation says it would be.
pub fn explain(config: Config, req: &Request, opts: &Options) -> Result<Explanation, String> {
    let now = opts.now.unwrap_or_else(unix_now);
    let (snap, rt) = snapshot(config, opts)?;
    let first = explain_with(&snap, req, now)?;
    let (provider, what) = match first.pending {
        None => return Ok(first),
        Some(Pending::Refetch(p)) => (p, "refetch"),
        Some(Pending::Introspect(p, _)) => (p, "introspect"),
    };
    let name = snap.config.providers[provider.index()].name.clone();
    let introspector = snap.provider(provider).introspector.clone();
    // Offline (`--jwks`), nothing is fetched and no endpoint is asked.
    let online = rt.filter(|_| what == "refetch" || introspector.is_some());
    let rt = match online {
        Some(rt) => rt,
        None => {
            let mut e = first;
            e.lines.push(line(
                what,
                if what == "refetch" {
                    format!("the gateway would fetch provider {name}'s keys once more and decide again before refusing (offline: not done)")
                } else {
                    format!("the gateway would ask provider {name}'s introspection endpoint and decide again (offline: not done)")
                },
                json!({ "provider": name, "done": false }),
            ));
            return Ok(e);
        }
    };
    let (again, text) = match (first.pending, introspector) {
        (Some(Pending::Introspect(p, route)), Some(introspector)) => {
            let (_, _, headers, _) = parse(req)?;
            let token = crate::auth::token_of(&snap.config, &headers, route)
                .ok_or("the token is gone on a second read")?
                .to_owned();
            let answer = rt.block_on(introspector.introspect(
                &token,
                &snap.provider(p).keys,
                &snap.config.providers[p.index()],
            ));
            let text = format!(
                "asked provider {name}'s introspection endpoint: {}; deciding again",
                match &answer {
                    Some(Lookup::Active(_)) => "active",
                    Some(Lookup::Inactive) => "NOT active",
                    None => "no answer (down, slow or garbled: see the log)",
                }
            );
            let cx = WithAnswer {
                inner: &*snap,
                provider: p,
                key: TokenCache::key(&token),
                answer,
            };
            (explain_in(&snap, &cx, req, now)?, text)
        }
        _ => {
            rt.block_on(
                snap.provider(provider)
                    .keys
                    .refetch_and_wait(Duration::from_secs(3)),
            );
            let text = format!("unknown kid: asked for one refetch of provider {name}'s keys (as the gateway does; within jwks_refetch_cooldown it waits for it); deciding again");
            (explain_with(&snap, req, now)?, text)
        }
    };
    let mut again = again;
    let mut lines = first.lines;
    lines.push(line(what, text, json!({ "provider": name, "done": true })));
    lines.append(&mut again.lines);
    again.lines = lines;
    Ok(again)
}

/// Explains `req` against a snapshot already built (`authgate test` runs many on one).
pub fn explain_with(snap: &Arc<Snapshot>, req: &Request, now: f64) -> Result<Explanation, String> {
    explain_in(snap, &**snap, req, now)
}

/// Explains `req` deciding against `cx` (the snapshot, or it with an answer just fetched).
fn explain_in<C: Context>(
    snap: &Snapshot,
    cx: &C,
    req: &Request,
    now: f64,
) -> Result<Explanation, String> {
    let (method, target, headers, raw) = parse(req)?;
    let max = snap.config.server.max_header_bytes;
    if raw.len() > max {
        // The gateway reads HTTP/1 heads itself and answers 431 while one arrives.
        let line = line(
            "message",
            format!("head of {} bytes is over max_header_bytes ({max}): answered while it arrives, before any other check", raw.len()),
            json!({ "head_bytes": raw.len(), "max_header_bytes": max }),
        );
        let d = Denial::new(crate::auth::Reject::HeadersTooLarge, None);
        return Ok(answer(snap, &headers, vec![line], Err(d)));
    }
    let head = RequestHead {
        method: &method,
        version: http::Version::HTTP_11,
        target: target.as_bytes(),
        authority: None,
        headers: &headers,
        raw_head: Some(&raw),
        tls: req.url.starts_with("https://"),
        client_cert: None,
    };
    let mut lines = Vec::new();
    let result = decide_traced(cx, &head, now, &mut |step: Step<'_>| {
        lines.push(describe(snap, step));
    });
    Ok(answer(snap, &headers, lines, result))
}

/// The method, target and headers of `req`, and its head as an HTTP/1.1 client would send it.
/// Errors never repeat the URL or a header value (a query or a header may hold a token).
fn parse(req: &Request) -> Result<(Method, String, HeaderMap, Vec<u8>), String> {
    let method = Method::from_bytes(req.method.as_bytes())
        .map_err(|_| format!("{:?} is not an HTTP method", req.method))?;
    let uri: http::Uri = req
        .url
        .parse()
        .map_err(|e| format!("the URL is not valid ({e}); give http://host[:port]/path"))?;
    let authority = uri
        .authority()
        .ok_or("the URL has no host; give http://host[:port]/path")?;
    if authority.as_str().contains('@') {
        return Err("the URL has userinfo (user@host), which no client sends as Host".to_owned());
    }
    let target = uri
        .path_and_query()
        .map_or("/".to_owned(), |p| p.as_str().to_owned());
    let mut headers = HeaderMap::new();
    for (name, value) in &req.headers {
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| "a -H name is not a valid header name".to_owned())?;
        let value = HeaderValue::from_str(value.trim())
            .map_err(|_| format!("the value of {name} is not a header value"))?;
        headers.append(name, value);
    }
    match headers.get(http::header::HOST) {
        None => {
            let host = HeaderValue::from_str(authority.as_str()).map_err(|e| e.to_string())?;
            headers.insert(http::header::HOST, host);
        }
        // One host, given once: an origin-form request carries it in `Host` only.
        Some(h)
            if h.as_bytes()
                .eq_ignore_ascii_case(authority.as_str().as_bytes()) => {}
        Some(_) => {
            return Err(
                "-H Host differs from the URL's host: give the host once, in the URL".to_owned(),
            )
        }
    }
    if let Some(token) = &req.token {
        let value = HeaderValue::from_str(&format!("Bearer {}", token.trim()))
            .map_err(|_| "the token is not a header value".to_owned())?;
        headers.append(http::header::AUTHORIZATION, value);
    }
    let mut raw = format!("{method} {target} HTTP/1.1\r\n").into_bytes();
    for (name, value) in &headers {
        raw.extend_from_slice(name.as_str().as_bytes());
        raw.extend_from_slice(b": ");
        raw.extend_from_slice(value.as_bytes());
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"\r\n");
    Ok((method, target, headers, raw))
}

/// The providers' keys: from `--jwks`, or fetched as the gateway would (up to 10 s; the
/// runtime that fetched them is returned, for a refetch). The verified-token cache is off:
/// every explanation shows the whole verification.
fn snapshot(
    mut config: Config,
    opts: &Options,
) -> Result<(Arc<Snapshot>, Option<tokio::runtime::Runtime>), String> {
    config.token_cache.enabled = false;
    if let Some(path) = &opts.jwks {
        let document =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let document = Arc::new(document);
        for p in &mut config.providers {
            if matches!(
                p.key_source,
                KeySource::JwksUrl(_) | KeySource::Discovery(_)
            ) {
                p.key_source = KeySource::JwksFile(JwksFile {
                    path: path.clone(),
                    document: document.clone(),
                });
            }
        }
        return Ok((Arc::new(Snapshot::offline(config, &Metrics::new())), None));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let client = crate::auth::keystore::http_client().map_err(|e| e.to_string())?;
    let metrics = Arc::new(Metrics::new());
    let snap = rt.block_on(async {
        let snap = Snapshot::assemble(
            config,
            None,
            &tokio::runtime::Handle::current(),
            &client,
            &metrics,
            None,
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while snap.providers().any(|(_, p)| !p.keys.is_usable())
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        snap
    });
    Ok((Arc::new(snap), Some(rt)))
}

fn line(step: &'static str, text: String, json: Value) -> Line {
    Line { step, text, json }
}

fn answer(
    snap: &Snapshot,
    headers: &HeaderMap,
    lines: Vec<Line>,
    result: Result<Grant, Denial>,
) -> Explanation {
    let config = &snap.config;
    let pend = pending(&result);
    match result {
        Ok(grant) => {
            let route = config.routes.get(grant.route);
            let carriers = TokenCarriers::of(route, &config.headers, grant.token_source);
            let mut removed = headers_to_remove(headers, &config.headers, &carriers);
            let text = |v: &HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned();
            let cookies = edit_cookies(headers, &|n| carriers.strips_cookie(n));
            let mut upstream_headers: Vec<(String, String)> = headers
                .iter()
                .filter(|(n, _)| !removed.contains(n) && **n != http::header::COOKIE)
                .map(|(n, v)| (n.as_str().to_owned(), text(v)))
                .collect();
            match cookies {
                CookieEdit::Keep => upstream_headers.extend(
                    headers
                        .get_all(http::header::COOKIE)
                        .iter()
                        .map(|v| ("cookie".to_owned(), text(v))),
                ),
                CookieEdit::Set(v) => upstream_headers.push(("cookie".to_owned(), text(&v))),
                CookieEdit::Remove => removed.push(http::header::COOKIE),
            }
            upstream_headers.extend(
                grant
                    .claim_headers
                    .iter()
                    .map(|(n, v)| (n.as_str().to_owned(), text(v))),
            );
            let removes = removed.into_iter().map(|h| h.as_str().to_owned()).collect();
            let mut adds: Vec<String> = grant
                .claim_headers
                .iter()
                .map(|(n, _)| n.as_str().to_owned())
                .collect();
            adds.extend(
                [
                    "x-forwarded-for",
                    "x-forwarded-proto",
                    "x-forwarded-host",
                    "x-request-id",
                ]
                .map(str::to_owned),
            );
            let (decision, reason) = match grant.would_reject {
                Some(d) => ("would_reject", d.reason.label()),
                None => ("allowed", "-"),
            };
            Explanation {
                lines,
                decision,
                status: 200,
                reason,
                www_authenticate: None,
                upstream_adds: adds,
                upstream_removes: removes,
                upstream_headers,
                pending: pend,
            }
        }
        Err(d) => {
            let route = d.route.map(|r| config.routes.get(r));
            Explanation {
                lines,
                decision: "rejected",
                status: d.reason.status(),
                reason: d.reason.label(),
                www_authenticate: {
                    let all: Vec<String> = crate::proxy::respond::challenges(
                        d.reason,
                        route,
                        d.provider.map(|p| &config.providers[p.index()]),
                    )
                    .iter()
                    .filter_map(|v| v.to_str().ok().map(str::to_owned))
                    .collect();
                    (!all.is_empty()).then(|| all.join(", "))
                },
                upstream_adds: Vec::new(),
                upstream_removes: Vec::new(),
                upstream_headers: Vec::new(),
                pending: pend,
            }
        }
    }
}

impl Explanation {
    /// Numbered steps, then the answer.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for (i, l) in self.lines.iter().enumerate() {
            out.push_str(&format!("{:>2}. {:<12} {}\n", i + 1, l.step, l.text));
        }
        match self.decision {
            "rejected" => {
                out.push_str(&format!("=> {} {}\n", self.status, self.reason));
                if let Some(c) = &self.www_authenticate {
                    out.push_str(&format!("   WWW-Authenticate: {c}\n"));
                }
            }
            decision => {
                out.push_str(&format!(
                    "=> forwarded upstream ({decision}{})\n",
                    if self.reason == "-" {
                        String::new()
                    } else {
                        format!(": {}", self.reason)
                    }
                ));
                out.push_str(&format!(
                    "   upstream gets: {}\n",
                    self.upstream_adds.join(", ")
                ));
                if !self.upstream_removes.is_empty() {
                    out.push_str(&format!(
                        "   removed from the client's request: {}\n",
                        self.upstream_removes.join(", ")
                    ));
                }
            }
        }
        out
    }

    /// One JSON document.
    pub fn json(&self) -> Value {
        let steps: Vec<Value> = self
            .lines
            .iter()
            .map(|l| json!({ "step": l.step, "text": l.text, "detail": l.json }))
            .collect();
        json!({
            "steps": steps,
            "decision": self.decision,
            "status": self.status,
            "reason": self.reason,
            "www_authenticate": self.www_authenticate,
            "upstream_adds": self.upstream_adds,
            "upstream_removes": self.upstream_removes,
        })
    }
}
