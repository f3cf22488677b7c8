//! `impl ProxyHttp`: pingora phases only, each a few lines calling into `auth` and `proxy/*`.

mod access;
pub mod connection;
pub mod fast;
pub mod guard;
pub mod headers;
mod pool;
pub mod preface;
pub mod respond;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use http::header::HOST;
use http::HeaderValue;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::FailToProxy;
use pingora::{ErrorSource, ErrorType};

use crate::auth::cache::TokenCache;
use crate::auth::{self, decide, pending, Context, Denial, Grant, Pending, Reject, RequestHead};
use crate::config::{ProviderId, RouteId};
use crate::formats::normalize::normalize_target;
use crate::metrics::NO_ROUTE;
use crate::runtime::introspection::WithAnswer;
use crate::runtime::{InFlight, Snapshot, State, UpstreamFailure};
use access::AccessLine;
use guard::guard;
use headers::{CookieEdit, TokenCarriers};
use respond::Answer;

/// What `decide` and the upstream request read of the client's request, on either path
/// (pingora-proxy's `Session` or the fast path's HTTP/1 session).
pub struct Downstream<'a> {
    pub req: &'a RequestHeader,
    /// HTTP/1 only: the head as received (a cheap `Bytes` slice), for the framing checks.
    pub raw: Option<bytes::Bytes>,
    pub digest: Option<&'a pingora::protocols::Digest>,
    pub client_addr: Option<&'a pingora::protocols::l4::socket::SocketAddr>,
}

impl<'a> Downstream<'a> {
    fn of(session: &'a Session) -> Self {
        Self {
            req: session.req_header(),
            raw: session.as_http1().map(|h1| h1.get_headers_raw_bytes()),
            digest: session.digest(),
            client_addr: session.client_addr(),
        }
    }

    /// The fast path's request, once its head is read.
    pub fn of_h1(session: &'a pingora::protocols::http::v1::server::HttpSession) -> Self {
        Self {
            req: session.req_header(),
            raw: Some(session.get_headers_raw_bytes()),
            digest: Some(session.digest()),
            client_addr: session.client_addr(),
        }
    }

    fn tls(&self) -> bool {
        self.digest.is_some_and(|d| d.ssl_digest.is_some())
    }

    fn client_ip(&self) -> Option<std::net::IpAddr> {
        self.client_addr.and_then(|a| a.as_inet()).map(|a| a.ip())
    }
}

/// `decide` for the request `d` against `cx`, a panic answered as `InternalError`.
fn decision<C: Context + ?Sized>(d: &Downstream<'_>, cx: &C) -> Result<Grant, Denial> {
    guard(|| {
        inject_fault(d.req);
        let mut head = head(d.req, d.raw.as_deref(), d.tls());
        head.client_cert = client_cert(d, cx.config());
        decide(cx, &head, unix_now())
    })
    .unwrap_or(Err(Denial::new(Reject::InternalError, None)))
}

/// Asks provider `p`'s introspection endpoint about the token route `route` reads (one call
/// shared with every request for the same token), then decides again with its answer.
/// `None`: nothing to ask with (the first decision stands).
async fn introspect_and_decide(
    d: &Downstream<'_>,
    snap: &Snapshot,
    p: ProviderId,
    route: RouteId,
) -> Option<Result<Grant, Denial>> {
    let token = auth::token_of(&snap.config, &d.req.headers, route)?;
    let runtime = snap.provider(p);
    let answer = runtime
        .introspector
        .as_ref()?
        .introspect(token, &runtime.keys, &snap.config.providers[p.index()])
        .await;
    let cx = WithAnswer {
        inner: snap,
        provider: p,
        key: TokenCache::key(token),
        answer,
    };
    Some(decision(d, &cx))
}

/// The fleet store's word on the grant's DPoP proof: `SET authgate:dpop:<key> NX PX hold`.
async fn fleet_answer(
    store: &Result<crate::runtime::store::Store, crate::runtime::store::StoreError>,
    grant: &Grant,
) -> auth::FleetAnswer {
    let (Ok(store), Some((key, hold))) = (store, grant.bound.proof) else {
        return auth::FleetAnswer::Unavailable;
    };
    let key = crate::formats::hex(&key);
    match store.first_use(&format!("authgate:dpop:{key}"), hold).await {
        Ok(true) => auth::FleetAnswer::First,
        Ok(false) => auth::FleetAnswer::Seen,
        Err(e) => {
            // Once a second at most: an outage must not flood the log.
            static LAST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let now = unix_now() as u64;
            if LAST.swap(now, std::sync::atomic::Ordering::Relaxed) != now {
                tracing::warn!(error = %e, "the fleet store did not answer for a DPoP proof");
            }
            auth::FleetAnswer::Unavailable
        }
    }
}

/// Longest a request waits for the single-flight JWKS refetch an unknown `kid` triggers.
const REFETCH_WAIT: Duration = Duration::from_secs(3);

#[derive(Clone)]
pub struct Gateway {
    pub state: Arc<State>,
}

/// What became of a request: exactly one, set once per phase that decides it.
#[derive(Debug, Default)]
pub enum Outcome {
    /// No decision (yet): pingora refused the request before `request_filter`, or the
    /// client left before one was made.
    #[default]
    Undecided,
    /// Let through: the upstream was (or is being) asked.
    Granted(Grant),
    /// Refused by the gateway (a bug, `InternalError`, included).
    Denied(Denial),
    /// Let through, but the upstream failed it: not a refusal.
    Failed(Grant, UpstreamFailure),
}

/// Per-request state across phases.
pub struct RequestCtx {
    start: Instant,
    snap: Option<Arc<Snapshot>>,
    outcome: Outcome,
    request_id: String,
    /// Time `decide` took, refetch wait included.
    auth: Duration,
    /// When the upstream was chosen, and how long until its response head arrived.
    upstream_start: Option<Instant>,
    upstream: Option<Duration>,
    upstream_status: u16,
    /// A report-only route's would-be refusal, set with the grant and counted once when
    /// the request is logged, whatever ended it (answered, upstream failure, body failure).
    would_reject: Option<Reject>,
    _in_flight: InFlight,
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        self.ctx()
    }

    /// No downstream modules: pingora's default adds a (disabled) response-compression module
    /// whose per-request context we would pay for and never use.
    fn init_downstream_modules(&self, _modules: &mut pingora::modules::http::HttpModules) {}

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let denied = self.authorize(&Downstream::of(session), ctx).await;
        if let Some(snap) = &ctx.snap {
            session.set_read_timeout(Some(snap.config.server.body_read_timeout));
            // A client that stops reading (an HTTP/2 window left at 0) would otherwise hold
            // the stream, and the upstream connection behind it, for as long as it likes.
            session.set_write_timeout(Some(snap.config.server.send_timeout));
        }
        match denied {
            None => Ok(false),
            Some(answer) => {
                respond::write_answer(session, &answer, &ctx.request_id).await?;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        guard(|| upstream_peer(ctx)).unwrap_or_else(|_| {
            Error::e_explain(ErrorType::InternalError, "panic choosing the upstream")
        })
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        guard(|| upstream_request(&Downstream::of(session), upstream, ctx)).unwrap_or_else(|_| {
            Error::e_explain(
                ErrorType::InternalError,
                "panic building the upstream request",
            )
        })
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        response_headers(upstream_response, ctx)
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        // pingora's upstream `read_timeout` runs while the client's body is still being
        // forwarded: a body still arriving then is the client's delay, not the upstream's.
        let Some(answer) = failed(e, !session.is_body_done(), ctx) else {
            // The client went away: there is no one to answer (the outcome stays).
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        };
        // The response may have started already; then there is nothing left to say. The
        // connection is not reused after a failure: the answer says so (`Connection: close`
        // over HTTP/1.1), rather than promising a keep-alive it will not keep.
        if session.response_written().is_none() {
            session.set_keepalive(None);
            let _ = respond::write_answer(session, &answer, &ctx.request_id).await;
        }
        FailToProxy {
            error_code: answer.status,
            can_reuse_downstream: false,
        }
    }

    /// What pingora writes into its own error log lines: method and path, no query string
    /// and no headers, so a token never reaches a log through pingora either.
    fn request_summary(&self, session: &Session, ctx: &RequestCtx) -> String {
        let req = session.req_header();
        format!(
            "{} {} request_id={}",
            req.method,
            log_path(req, ctx),
            ctx.request_id
        )
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        // A panic here has been logged and counted by the hook; the answer is already out.
        let _ = guard(|| self.log_request(session.req_header(), status, ctx));
    }
}

impl Outcome {
    /// The route the request matched, when it got that far.
    fn route(&self) -> Option<RouteId> {
        match self {
            Self::Granted(g) | Self::Failed(g, _) => Some(g.route),
            Self::Denied(d) => d.route,
            Self::Undecided => None,
        }
    }
}

impl Gateway {
    /// A new request's state (both paths).
    pub fn ctx(&self) -> RequestCtx {
        RequestCtx {
            start: Instant::now(),
            snap: None,
            outcome: Outcome::Undecided,
            request_id: String::new(),
            auth: Duration::ZERO,
            upstream_start: None,
            upstream: None,
            upstream_status: 0,
            would_reject: None,
            _in_flight: InFlight::new(&self.state),
        }
    }

    /// Decides the request `d` (waiting for a JWKS refetch, an introspection answer or the
    /// fleet store when the first decision asks for one) and records the decision, the
    /// snapshot and the request id in `ctx`. `Some`: the refusal to answer with.
    pub async fn authorize(&self, d: &Downstream<'_>, ctx: &mut RequestCtx) -> Option<Answer> {
        let snap = self.state.load();
        let started = Instant::now();
        ctx.request_id = request_id(d.req);
        let first = decision(d, &*snap);
        // An unknown `kid` waits for one refetch, and a token whose introspection answer is
        // not known yet for one call; then the request is decided again (on a report-only
        // route too, where the refusal rides on the grant).
        let result = match pending(&first) {
            Some(Pending::Refetch(p)) => {
                snap.provider(p).keys.refetch_and_wait(REFETCH_WAIT).await;
                decision(d, &*snap)
            }
            Some(Pending::Introspect(p, route)) => introspect_and_decide(d, &snap, p, route)
                .await
                .unwrap_or(first),
            None => first,
        };
        // A DPoP proof this replica has not seen may have been used at another: the fleet
        // store says, and `settle_fleet` decides.
        let result = match (result, &self.state.store) {
            (Ok(grant), Some(store)) if grant.bound.dpop() => {
                let answer = fleet_answer(store, &grant).await;
                let on_outage = match &snap.config.store {
                    Some(s) if s.dpop_local_on_outage => auth::OnStoreOutage::Local,
                    _ => auth::OnStoreOutage::FailClosed,
                };
                auth::settle_fleet(&snap.config, grant, answer, on_outage)
            }
            (result, _) => result,
        };
        ctx.auth = started.elapsed();
        let answer = match result {
            Ok(grant) => {
                ctx.would_reject = grant.would_reject.map(|d| d.reason);
                ctx.outcome = Outcome::Granted(grant);
                None
            }
            Err(denial) => {
                ctx.outcome = Outcome::Denied(denial);
                let mut answer = Answer::denied(&denial, &snap.config);
                if denial.reason == Reject::UseDpopNonce {
                    answer = answer.with_nonce(&snap.dpop.nonce(unix_now()));
                }
                Some(answer)
            }
        };
        ctx.snap = Some(snap);
        answer
    }

    /// The request's metrics and its one access-log line; `status`: the answer's, 0 when
    /// none was written.
    pub fn log_request(&self, req: &RequestHeader, status: u16, ctx: &RequestCtx) {
        // A request pingora refused before `request_filter` has no snapshot yet.
        let snap = ctx.snap.clone().unwrap_or_else(|| self.state.load());
        let route_id = ctx.outcome.route();
        let route = route_id.map_or(NO_ROUTE, |r| snap.config.routes.get(r).name.as_str());
        let elapsed = ctx.start.elapsed();
        let route_rt = snap.route(route_id);
        let m = route_rt.metrics();
        let mut upstream_error = None;
        let (decision, reason) = match &ctx.outcome {
            Outcome::Granted(g) => {
                m.allowed.inc();
                if let (Some(p), Some(left)) = (g.provider, g.remaining_lifetime) {
                    snap.provider(p).token_lifetime.observe(left);
                }
                match g.would_reject {
                    None => ("allowed", "-"),
                    Some(d) => ("would_reject", d.reason.label()),
                }
            }
            Outcome::Denied(d) => {
                // A bug is an error, not a refusal; both carry their reason.
                let decision = if d.reason == Reject::InternalError {
                    m.error.inc();
                    "error"
                } else {
                    m.rejected.inc();
                    "rejected"
                };
                route_rt.rejection(d.reason).inc();
                (decision, d.reason.label())
            }
            Outcome::Failed(_, failure) => {
                m.error.inc();
                upstream_error = Some(failure.label());
                ("error", failure.reason())
            }
            Outcome::Undecided => {
                m.error.inc();
                ("error", "-")
            }
        };
        if let Some(reason) = ctx.would_reject {
            route_rt.would_reject(reason).inc();
        }
        m.duration.observe(elapsed.as_secs_f64());
        if ctx.snap.is_some() {
            m.auth_duration.observe(ctx.auth.as_secs_f64());
        }
        if let Some(d) = ctx.upstream {
            m.upstream_duration.observe(d.as_secs_f64());
        }
        let subject = match &ctx.outcome {
            Outcome::Granted(g) | Outcome::Failed(g, _) if snap.config.server.log_subject => {
                g.subject.as_deref()
            }
            _ => None,
        };
        AccessLine {
            request_id: &ctx.request_id,
            route,
            method: req.method.as_str(),
            path: &log_path(req, ctx),
            decision,
            reason,
            upstream_error,
            // Where the decision field does not already say it.
            would_reject: ctx
                .would_reject
                .filter(|_| decision != "would_reject")
                .map(Reject::label),
            status,
            upstream_status: ctx.upstream_status,
            duration: elapsed,
            auth: ctx.auth,
            upstream: ctx.upstream,
            sub: subject,
            binding: match &ctx.outcome {
                Outcome::Granted(g) | Outcome::Failed(g, _) => g.bound.label(),
                _ => None,
            },
        }
        .emit();
    }
}

/// What the gateway does to the upstream's response head (both paths): times it, drops its
/// hop-by-hop headers, and hands out the next DPoP nonce where one was needed.
pub fn response_headers(
    upstream_response: &mut ResponseHeader,
    ctx: &mut RequestCtx,
) -> Result<()> {
    ctx.upstream = ctx.upstream_start.map(|t| t.elapsed());
    ctx.upstream_status = upstream_response.status.as_u16();
    headers::strip_response_hop_by_hop(upstream_response);
    // The next nonce rides on every answer to a proof that needed one (RFC 9449 §8.2):
    // the client never has to fail once per nonce step.
    if let (Some(snap), Outcome::Granted(g)) = (&ctx.snap, &ctx.outcome) {
        // A report-only route that would have asked for a nonce hands one out too: its
        // clients can then show what enforcing would cost.
        let wants_nonce = g
            .would_reject
            .is_some_and(|d| d.reason == Reject::UseDpopNonce);
        if g.dpop_nonce || wants_nonce {
            upstream_response.insert_header("dpop-nonce", snap.dpop.nonce(unix_now()))?;
        }
    }
    Ok(())
}

/// What an error met while proxying means (both paths): the outcome it leaves in `ctx`, and
/// the answer for the client, or `None` when the client is gone (nothing to answer; the
/// outcome stays). `body_pending`: the client's body was still being read.
pub fn failed(e: &Error, body_pending: bool, ctx: &mut RequestCtx) -> Option<Answer> {
    if matches!(
        (e.esource(), e.etype()),
        (
            ErrorSource::Downstream,
            ErrorType::ReadError | ErrorType::WriteError | ErrorType::ConnectionClosed
        ) | (
            ErrorSource::Downstream | ErrorSource::Unset,
            ErrorType::WriteTimedout
        )
    ) {
        return None;
    }
    Some(match (e.esource(), std::mem::take(&mut ctx.outcome)) {
        (ErrorSource::Upstream, Outcome::Granted(grant))
            if body_pending && matches!(e.etype(), ErrorType::ReadTimedout) =>
        {
            let route = ctx.snap.as_ref().map(|s| s.config.routes.get(grant.route));
            ctx.outcome = Outcome::Denied(Denial::new(Reject::BodyTimeout, Some(grant.route)));
            Answer::refusal(Reject::BodyTimeout, route)
        }
        // The upstream failed a granted request: not a refusal.
        (ErrorSource::Upstream, Outcome::Granted(grant)) => {
            let failure = failure_of(e.etype());
            if let Some(snap) = &ctx.snap {
                let _ = guard(|| snap.upstream(grant.upstream).errors(failure).inc());
            }
            ctx.outcome = Outcome::Failed(grant, failure);
            Answer::failure(failure)
        }
        // A client body that breaks its framing is a refusal; anything else is a bug
        // (an upstream error without a grant cannot happen: no grant, no upstream).
        (source, previous) => {
            let reason = match (source, e.etype()) {
                (ErrorSource::Downstream, ErrorType::ReadTimedout) => Reject::BodyTimeout,
                (ErrorSource::Downstream, _) => Reject::BadFraming,
                _ => Reject::InternalError,
            };
            let route = match previous {
                Outcome::Granted(g) | Outcome::Failed(g, _) => Some(g.route),
                Outcome::Denied(_) | Outcome::Undecided => None,
            };
            ctx.outcome = Outcome::Denied(Denial::new(reason, route));
            let route_ref = match (&ctx.snap, route) {
                (Some(s), Some(r)) => Some(s.config.routes.get(r)),
                _ => None,
            };
            Answer::refusal(reason, route_ref)
        }
    })
}

/// The upstream of the granted route, with its timeouts and TLS settings.
pub fn upstream_peer(ctx: &mut RequestCtx) -> Result<Box<HttpPeer>> {
    let (Some(snap), Outcome::Granted(grant)) = (&ctx.snap, &ctx.outcome) else {
        return Error::e_explain(ErrorType::InternalError, "no grant for an upstream request");
    };
    let up = &snap.config.upstreams[grant.upstream.index()];
    let ca = snap.upstream(grant.upstream).ca.clone();
    ctx.upstream_start = Some(Instant::now());
    let mut peer = match &up.tls {
        None => HttpPeer::new(up.addr, false, String::new()),
        Some(tls) => {
            // A non-empty SNI always: pingora skips every check when it is empty.
            let mut peer = HttpPeer::new(up.addr, true, tls.sni.clone());
            peer.options.ca = ca;
            peer.options.verify_cert = tls.verify;
            peer.options.verify_hostname = tls.verify;
            peer.group_key = tls.pool_key;
            peer
        }
    };
    peer.options.connection_timeout = Some(up.connect_timeout);
    peer.options.total_connection_timeout = Some(up.connect_timeout);
    peer.options.read_timeout = Some(up.read_timeout);
    peer.options.write_timeout = Some(up.write_timeout);
    peer.options.idle_timeout = Some(up.idle_timeout);
    Ok(Box::new(peer))
}

/// The request the upstream gets: the authorized path and authority, spoofable and
/// hop-by-hop headers out, claims and the gateway's own `X-Forwarded-*` in.
pub fn upstream_request(
    d: &Downstream<'_>,
    upstream: &mut RequestHeader,
    ctx: &RequestCtx,
) -> Result<()> {
    let (Some(snap), Outcome::Granted(grant)) = (&ctx.snap, &ctx.outcome) else {
        return Error::e_explain(ErrorType::InternalError, "no grant for an upstream request");
    };
    // The upstream sees exactly the path that was routed and authorized.
    upstream.set_raw_path(grant.path_and_query.as_bytes())?;
    let client_headers = &d.req.headers;
    let route = snap.config.routes.get(grant.route);
    let carriers = TokenCarriers::of(route, &snap.config.headers, grant.token_source);
    let policy = &snap.config.headers;
    for name in headers::headers_to_remove(client_headers, policy, &carriers) {
        upstream.remove_header(&name);
    }
    for (name, value) in &grant.claim_headers {
        upstream.insert_header(name.clone(), value.clone())?;
    }
    // HTTP/2 sends cookies as separate fields; HTTP/1.1 has one `Cookie` (RFC 9113 §8.2.3).
    match headers::edit_cookies(&upstream.headers, &|n| carriers.strips_cookie(n)) {
        CookieEdit::Keep => {}
        CookieEdit::Set(cookie) => {
            upstream.insert_header(http::header::COOKIE, cookie)?;
        }
        CookieEdit::Remove => {
            upstream.remove_header(&http::header::COOKIE);
        }
    }
    if let Some(ip) = d.client_ip() {
        upstream.insert_header("x-forwarded-for", ip.to_string())?;
    }
    let proto = if d.tls() { "https" } else { "http" };
    upstream.insert_header("x-forwarded-proto", proto)?;
    // The authority that was routed on, normalized, whichever field the client sent it in
    // (`Host`, HTTP/2 `:authority`, an absolute-form target): the upstream never reads
    // another host than the one that was authorized. pingora keeps this `Host` (and the
    // HTTP/2 URI authority follows it).
    // The `Host` pingora prepared (the client's, or HTTP/2's `:authority`) when it already is
    // the normalized form, the common case: nothing to build or replace per request.
    let authority = &grant.authority;
    let value = match upstream.headers.get(HOST) {
        Some(h) if authority.is_spelled(h.as_bytes()) => h.clone(),
        _ => {
            let v = HeaderValue::try_from(authority.to_string())
                .map_err(|_| Error::explain(ErrorType::InternalError, "authority as a header"))?;
            upstream.insert_header(HOST, v.clone())?;
            v
        }
    };
    upstream.insert_header("x-forwarded-host", value)?;
    upstream.insert_header("x-request-id", ctx.request_id.as_str())?;
    Ok(())
}

/// Debug builds only (the integration tests): `AUTHGATE_DEBUG_PANIC_PATH=/x` makes every
/// request whose target starts with `/x` panic inside the guarded decision, so the tests
/// can show that a bug costs a 500, an access-log line and a metric, not the connection.
/// Compiled out of release builds.
#[cfg(debug_assertions)]
fn inject_fault(req: &RequestHeader) {
    static PREFIX: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let prefix = PREFIX.get_or_init(|| std::env::var("AUTHGATE_DEBUG_PANIC_PATH").ok());
    if let Some(p) = prefix {
        if req.raw_path().starts_with(p.as_bytes()) {
            panic!("fault injected by AUTHGATE_DEBUG_PANIC_PATH");
        }
    }
}

#[cfg(not(debug_assertions))]
fn inject_fault(_req: &RequestHeader) {}

/// The path for logs: the normalized path, never the query string (clients put tokens there,
/// `access_token=...`, even though it is not accepted), and nothing at all for a target that
/// could not be normalized (it may carry anything, `;` parameters included).
fn log_path<'a>(req: &RequestHeader, ctx: &'a RequestCtx) -> Cow<'a, str> {
    match &ctx.outcome {
        Outcome::Granted(g) | Outcome::Failed(g, _) => {
            Cow::Borrowed(g.path_and_query.split('?').next().unwrap_or("-"))
        }
        Outcome::Denied(_) | Outcome::Undecided => {
            normalize_target(req.raw_path()).map_or(Cow::Borrowed("-"), |t| Cow::Owned(t.path))
        }
    }
}

fn head<'a>(req: &'a RequestHeader, raw_head: Option<&'a [u8]>, tls: bool) -> RequestHead<'a> {
    RequestHead {
        method: &req.method,
        version: req.version,
        target: req.raw_path(),
        authority: req.uri.authority().map(|a| a.as_str()),
        headers: &req.headers,
        raw_head,
        tls,
        client_cert: None,
    }
}

/// The client certificate's SHA-256: from a trusted peer (a TLS-terminating proxy in
/// front), its `Client-Cert` header and nothing else (its own TLS certificate is the
/// proxy's); from anyone else, the certificate of this TLS connection, never the header.
fn client_cert(d: &Downstream<'_>, config: &crate::config::Config) -> Option<[u8; 32]> {
    let peers = &config.server.trusted_client_cert_peers;
    let trusted = !peers.is_empty()
        && d.client_ip().is_some_and(|ip| {
            let ip = ip.to_canonical();
            peers.iter().any(|n| n.contains(&ip))
        });
    if trusted {
        return crate::formats::client_cert::header_thumbprint(&d.req.headers);
    }
    let digest = d.digest?.ssl_digest.as_ref()?;
    <[u8; 32]>::try_from(digest.cert_digest.as_slice()).ok()
}

/// What an error pingora met while talking to the upstream means for the client.
fn failure_of(etype: &ErrorType) -> UpstreamFailure {
    use ErrorType as E;
    match etype {
        E::ConnectRefused | E::ConnectNoRoute | E::ConnectError | E::BindError => {
            UpstreamFailure::ConnectRefused
        }
        E::ConnectTimedout => UpstreamFailure::ConnectTimeout,
        E::TLSHandshakeFailure
        | E::TLSHandshakeTimedout
        | E::InvalidCert
        | E::HandshakeError
        | E::TLSWantX509Lookup => UpstreamFailure::Tls,
        E::ReadTimedout => UpstreamFailure::ReadTimeout,
        E::WriteTimedout => UpstreamFailure::WriteTimeout,
        E::ConnectionClosed | E::ReadError | E::WriteError | E::H2Error | E::H2Downgrade => {
            UpstreamFailure::Closed
        }
        _ => UpstreamFailure::Other,
    }
}

/// The client's `X-Request-Id` when it is a short token, else a fresh one.
fn request_id(req: &RequestHeader) -> String {
    if let Some(v) = req
        .headers
        .get("x-request-id")
        .and_then(|v: &HeaderValue| v.to_str().ok())
    {
        if !v.is_empty()
            && v.len() <= 128
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
        {
            return v.to_owned();
        }
    }
    fresh_request_id()
}

/// 32 random hex digits.
fn fresh_request_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// A request refused before pingora parsed it (its head was over `max_header_bytes`):
/// counted and logged like any refusal, with no route, method or path to tell.
fn log_refused_head(state: &State, reason: Reject, request_id: &str, started: Instant) {
    let snap = state.load();
    let route = snap.route(None);
    let m = route.metrics();
    m.rejected.inc();
    route.rejection(reason).inc();
    let elapsed = started.elapsed();
    m.duration.observe(elapsed.as_secs_f64());
    AccessLine {
        request_id,
        route: NO_ROUTE,
        method: "-",
        path: "-",
        decision: "rejected",
        reason: reason.label(),
        upstream_error: None,
        would_reject: None,
        status: reason.status(),
        upstream_status: 0,
        duration: elapsed,
        auth: Duration::ZERO,
        upstream: None,
        sub: None,
        binding: None,
    }
    .emit();
}

/// Seconds since the Unix epoch: the clock `decide` is given (also by `explain` and `test`).
pub use crate::runtime::unix_now;
