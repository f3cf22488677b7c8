//! Checks of the request message before routing: the head's size and its framing.
//!
//! pingora handles `Content-Length` + `Transfer-Encoding` safely (it drops
//! `Content-Length`, frames by `Transfer-Encoding` and disables keep-alive, RFC 9112 §6.1),
//! but a gateway should not forward a message some hop before it may have framed
//! differently: smuggling attempts are refused outright. pingora removes the
//! `Content-Length` from the parsed header before our filters run, so the raw head is
//! checked (only when `Transfer-Encoding` is present). `decide` runs `size`, then the
//! HTTP/1.1 `Host` rule, then `framing`; the other authority checks are `request_authority`.

use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};

use super::{Reject, RequestHead};

/// Refuses a head over `max_header_bytes`.
pub fn size(head: &RequestHead<'_>, max_header_bytes: usize) -> Result<(), Reject> {
    // pingora accepts request heads up to 1 MiB; we keep to a configurable, smaller bound.
    let head_bytes = head.target.len()
        + head
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 4)
            .sum::<usize>();
    if head_bytes > max_header_bytes {
        return Err(Reject::HeadersTooLarge);
    }
    Ok(())
}

/// Refuses any framing that some hop could read differently: two `Content-Length`s over
/// either protocol (HTTP/2 would forward both to the HTTP/1.1 upstream), and over HTTP/1
/// (`raw_head` present) `Transfer-Encoding` with `Content-Length` or with another coding.
pub fn framing(head: &RequestHead<'_>) -> Result<(), Reject> {
    // Even identical duplicates (`5` twice, `5, 5`) are refused: some hop may not merge them.
    let mut lengths = head.headers.get_all(CONTENT_LENGTH).iter();
    if let (Some(first), second) = (lengths.next(), lengths.next()) {
        if second.is_some() || first.as_bytes().contains(&b',') {
            return Err(Reject::BadFraming);
        }
    }
    let Some(raw) = head.raw_head else {
        return Ok(());
    };
    if head.headers.contains_key(TRANSFER_ENCODING) && has_line_starting(raw, b"content-length:") {
        return Err(Reject::BadFraming);
    }
    // pingora frames by the final `chunked` and drops the other codings on the way up
    // (`gzip, chunked` would reach the upstream as a gzip body it is not told about).
    for value in head.headers.get_all(TRANSFER_ENCODING) {
        let codings = value.to_str().map_err(|_| Reject::BadFraming)?;
        for coding in codings.split(',').map(str::trim) {
            if !coding.eq_ignore_ascii_case("chunked") && !coding.eq_ignore_ascii_case("identity") {
                return Err(Reject::BadFraming);
            }
        }
    }
    Ok(())
}

/// A line of a raw HTTP/1 head that starts with `prefix`, compared case-insensitively.
pub fn has_line_starting(head: &[u8], prefix: &[u8]) -> bool {
    has_line_starting_any(head, &[prefix])
}

/// Whether a line of `head` starts with one of `prefixes` (case-insensitively); one pass.
pub fn has_line_starting_any(head: &[u8], prefixes: &[&[u8]]) -> bool {
    // A prefix holds no LF, so a comparison running past the end of a line fails there.
    let starts = |at: usize| {
        prefixes.iter().any(|p| {
            head.get(at..at + p.len())
                .is_some_and(|line| line.eq_ignore_ascii_case(p))
        })
    };
    starts(0) || memchr::memchr_iter(b'\n', head).any(|at| starts(at + 1))
}
