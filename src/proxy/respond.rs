//! Answers the gateway writes itself: status, RFC 6750 `WWW-Authenticate`, a small JSON body.

use bytes::Bytes;
use http::HeaderValue;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

use crate::auth::{Denial, Reject};
use crate::config::routes::Route;
use crate::config::{Config, DpopMode, ProviderSettings};
use crate::formats::dpop::algorithm_names;
use crate::runtime::UpstreamFailure;

/// One answer the gateway writes itself: a refusal (`Reject`) or an upstream failure.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    /// `WWW-Authenticate` fields: the `Bearer` or `DPoP` one of the refusal, and on a
    /// route that takes DPoP, a `DPoP algs=...` offer beside a `Bearer` one.
    challenges: Vec<HeaderValue>,
    /// `DPoP-Nonce` (RFC 9449 §8): the nonce a `use_dpop_nonce` answer hands out.
    nonce: Option<HeaderValue>,
    body: Bytes,
    /// Closes the connection after a framing error (it cannot be trusted).
    close: bool,
}

impl Answer {
    pub fn refusal(reason: Reject, route: Option<&Route>) -> Self {
        Self::refusal_by(reason, route, None)
    }

    /// A refusal of `decide`: the `DPoP` challenge offers the algorithms of the provider
    /// that verified the token, where one did.
    pub fn denied(d: &Denial, config: &Config) -> Self {
        let route = d.route.map(|r| config.routes.get(r));
        let provider = d.provider.map(|p| &config.providers[p.index()]);
        Self::refusal_by(d.reason, route, provider)
    }

    fn refusal_by(
        reason: Reject,
        route: Option<&Route>,
        provider: Option<&ProviderSettings>,
    ) -> Self {
        Self {
            status: reason.status(),
            challenges: challenges(reason, route, provider),
            nonce: None,
            body: body(reason),
            close: reason == Reject::BadFraming,
        }
    }

    pub fn failure(failure: UpstreamFailure) -> Self {
        Self {
            status: failure.status(),
            challenges: Vec::new(),
            nonce: None,
            body: json_body(
                status_error(failure.status()),
                failure.description(),
                failure.reason(),
            ),
            close: false,
        }
    }

    /// With a `DPoP-Nonce` for the client's next proof.
    pub fn with_nonce(mut self, nonce: &str) -> Self {
        self.nonce = HeaderValue::from_str(nonce).ok();
        self
    }
}

/// Every `WWW-Authenticate` field of a refusal. The DPoP refusals answer with the `DPoP`
/// scheme (RFC 9449 §7.1), and so does every 401 of a route whose providers all require
/// DPoP; other refusals with `Bearer` (see `challenge`) and, on a 401 of a route that takes
/// DPoP, a `DPoP algs=...` offer beside it. `algs` are those of `provider` (the token's)
/// when known, else of every provider of the route that takes DPoP.
pub fn challenges(
    reason: Reject,
    route: Option<&Route>,
    provider: Option<&ProviderSettings>,
) -> Vec<HeaderValue> {
    let algs = match provider.filter(|p| p.dpop.mode != DpopMode::Off) {
        Some(p) => Some(algorithm_names(&p.dpop.algorithms)),
        None => route.and_then(|r| r.dpop_algs.clone()),
    };
    let dpop = |code: Option<&str>| {
        let mut v = "DPoP".to_owned();
        let mut sep = " ";
        if let Some(code) = code {
            v.push_str(&format!(
                " error=\"{code}\", error_description=\"{}\"",
                reason.description()
            ));
            if code == "insufficient_scope" {
                let scopes = route.map_or(String::new(), |r| r.require_scopes.join(" "));
                v.push_str(&format!(", scope=\"{scopes}\""));
            }
            sep = ", ";
        }
        if let Some(a) = &algs {
            v.push_str(&format!("{sep}algs=\"{a}\""));
        }
        HeaderValue::from_str(&v).ok()
    };
    // A route whose providers all require DPoP speaks only DPoP: its 401s, and its 400s
    // and 403s that carry an OAuth error code.
    let dpop_only = route.is_some_and(|r| r.dpop_only)
        && (reason.status() == 401 || reason.oauth_error().is_some());
    if reason.dpop_challenge() || dpop_only {
        return dpop(reason.oauth_error()).into_iter().collect();
    }
    let mut all: Vec<HeaderValue> = challenge(reason, route).into_iter().collect();
    if reason.status() == 401 && algs.is_some() {
        all.extend(dpop(None));
    }
    all
}

/// The `Bearer` `WWW-Authenticate` value for a refusal, if it carries one.
/// 401 without a token: no error code (RFC 6750 §3.1). 401 with a bad token:
/// `invalid_token`. 403: `insufficient_scope` with the route's scopes.
pub fn challenge(reason: Reject, route: Option<&Route>) -> Option<HeaderValue> {
    match (reason.oauth_error(), reason.status()) {
        (None, 401) => Some(HeaderValue::from_static("Bearer realm=\"authgate\"")),
        (Some("insufficient_scope"), _) => route.map(|r| r.insufficient_scope_challenge.clone()),
        (Some(code), _) => {
            let v = format!(
                "Bearer realm=\"authgate\", error=\"{code}\", error_description=\"{}\"",
                reason.description()
            );
            HeaderValue::from_str(&v).ok()
        }
        (None, _) => None,
    }
}

/// `{"error":"invalid_token","error_description":"token has expired","reason":"expired"}`
pub fn body(reason: Reject) -> Bytes {
    json_body(
        reason
            .oauth_error()
            .unwrap_or(status_error(reason.status())),
        reason.description(),
        reason.label(),
    )
}

fn json_body(error: &str, description: &str, reason: &str) -> Bytes {
    let v = serde_json::json!({
        "error": error,
        "error_description": description,
        "reason": reason,
    });
    Bytes::from(v.to_string())
}

/// The `error` of an answer without an RFC 6750 code.
const fn status_error(status: u16) -> &'static str {
    match status {
        400 => "bad_request",
        401 => "unauthorized",
        404 => "not_found",
        408 => "request_timeout",
        431 => "headers_too_large",
        500 => "internal_error",
        502 => "bad_gateway",
        503 => "unavailable",
        504 => "gateway_timeout",
        _ => "error",
    }
}

/// The head of `answer`: status, `WWW-Authenticate`, and the headers of its JSON body.
fn answer_head(answer: &Answer, request_id: &str) -> pingora::Result<ResponseHeader> {
    let mut resp = ResponseHeader::build(answer.status, Some(6))?;
    for c in &answer.challenges {
        resp.append_header(http::header::WWW_AUTHENTICATE, c.clone())?;
    }
    if let Some(n) = &answer.nonce {
        resp.insert_header("dpop-nonce", n.clone())?;
    }
    let body_len = answer.body.len();
    resp.insert_header(http::header::CONTENT_TYPE, "application/json")?;
    resp.insert_header(http::header::CONTENT_LENGTH, body_len.to_string())?;
    resp.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    resp.insert_header("x-request-id", request_id)?;
    Ok(resp)
}

/// Writes the whole of `answer`. Errors mean the client is gone.
pub async fn write_answer(
    session: &mut Session,
    answer: &Answer,
    request_id: &str,
) -> pingora::Result<()> {
    let resp = answer_head(answer, request_id)?;
    // After a framing error the connection cannot be trusted; with an unread body, keeping
    // it would make pingora drain a body of any size from an unauthenticated client.
    let req = session.req_header();
    let has_body = req.headers.contains_key(http::header::TRANSFER_ENCODING)
        || req
            .headers
            .get(http::header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    if answer.close || has_body {
        session.set_keepalive(None);
    }
    // A HEAD request's answer has no content (RFC 9110 §9.3.2); its `Content-Length` tells
    // what a GET would have received. Over HTTP/2 a body here is a stream error.
    if session.req_header().method == http::Method::HEAD {
        // pingora's `Session::write_response_header` does not end an HTTP/2 stream (the
        // end is left to a later empty DATA frame, and on a failed proxy attempt the stream
        // is reset instead): the head itself carries END_STREAM.
        if let pingora::protocols::http::ServerSession::H2(h2) = &mut *session.downstream_session {
            return h2.write_response_header(Box::new(resp), true);
        }
        session.write_response_header(Box::new(resp), true).await?;
        return Ok(());
    }
    session.write_response_header(Box::new(resp), false).await?;
    session
        .write_response_body(Some(answer.body.clone()), true)
        .await?;
    Ok(())
}

/// Writes the whole of `answer` on the fast path's HTTP/1.1 session, as `write_answer` does
/// on pingora-proxy's. Errors mean the client is gone.
pub async fn write_answer_h1(
    session: &mut pingora::protocols::http::v1::server::HttpSession,
    answer: &Answer,
    request_id: &str,
) -> pingora::Result<()> {
    let resp = answer_head(answer, request_id)?;
    // The fast path takes no request with a body: only a framing error closes.
    if answer.close {
        session.set_server_keepalive(None);
    }
    // The whole answer within the client's write timeout.
    let limit = session.get_write_timeout();
    within_send_timeout(limit, async {
        session.write_response_header(Box::new(resp)).await?;
        // A HEAD request's answer has no content: pingora's body writer knows, writes none.
        session.write_body(&answer.body).await?;
        session.finish_body().await?;
        Ok(())
    })
    .await
}

/// `write` to the client, within its write timeout (`server.send_timeout`): pingora bounds
/// each body write with it, but not a head or the end of a body, where a client that stops
/// reading would otherwise hold the connection.
pub async fn within_send_timeout<T>(
    limit: Option<std::time::Duration>,
    write: impl std::future::Future<Output = pingora::Result<T>>,
) -> pingora::Result<T> {
    match limit {
        None => write.await,
        Some(limit) => pingora::time::timeout(limit, write)
            .await
            .unwrap_or_else(|_| {
                pingora::Error::e_explain(
                    pingora::ErrorType::WriteTimedout,
                    "writing to the client",
                )
            }),
    }
}

/// The whole answer for `reason` as HTTP/1.1 bytes, closing the connection: for a refusal
/// written before pingora has a session for the request (a head over the size limit).
/// `head_method`: the request is a `HEAD`, so no content follows the head.
pub fn rejection_bytes(reason: Reject, request_id: &str, head_method: bool) -> Vec<u8> {
    let answer = Answer::refusal(reason, None);
    let mut out = format!(
        "HTTP/1.1 {} {}\r\n",
        reason.status(),
        http::StatusCode::from_u16(reason.status())
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("")
    )
    .into_bytes();
    if let Ok(head) = answer_head(&answer, request_id) {
        for (name, value) in head.headers.iter() {
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"connection: close\r\n\r\n");
    if !head_method {
        out.extend_from_slice(&answer.body);
    }
    out
}
