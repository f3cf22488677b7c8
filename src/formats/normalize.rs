//! Request-target normalization: the one path that is routed, authorized and forwarded.
//!
//! Routing on one spelling of a path while the upstream reads another is how path-based
//! rules get bypassed (`/public/../admin`, `/admin%2fx`, `/ADMIN;x`, `//admin`). So the
//! target is normalized once, here, and anything that cannot be normalized without guessing
//! how the upstream would read it is refused with a 400.

use std::fmt::Write as _;

/// Why a request target was refused (all answer 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadTarget {
    /// Not origin-form or absolute-form (e.g. `*`, `authority-form`, empty).
    Form,
    /// `%2F` or `%5C`: a slash the router cannot see but the upstream may decode.
    EncodedSeparator,
    /// A backslash, which some servers read as `/`.
    Backslash,
    /// NUL or another control character, raw or percent-encoded.
    Control,
    /// `..` above the root.
    EscapesRoot,
    /// `;` path parameters, which servlet containers strip before routing.
    Parameters,
    /// Malformed `%` escape, a raw non-ASCII byte, space, or `#` (pingora drops a
    /// fragment before the target reaches us; one that got here would be refused).
    Encoding,
    /// Percent-escapes whose bytes are not strict UTF-8: overlong forms (`%c0%af` is `/`
    /// and `%c0%ae` is `.` to a lenient decoder), surrogates, stray or truncated bytes.
    InvalidUtf8,
    /// An escaped character that compatibility-normalizes (NFKC) to a separator, a dot, `;`,
    /// `%` or a control (`%ef%bc%8f` is `／`, which some stacks read as `/`), or a C1 control.
    Confusable,
    /// `%25` followed by two hex digits (`%252e`, `%252f`): an upstream that decodes twice
    /// would see a dot segment or a slash the router never saw.
    DoubleEncoding,
}

/// A normalized origin-form target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `/a/b`: decoded unreserved characters, dot segments resolved, slashes merged.
    pub path: String,
    /// The query string as sent, without `?` (not used for routing).
    pub query: Option<String>,
    /// The authority of an absolute-form target, normalized.
    pub authority: Option<Authority>,
}

/// A request's authority (`Host`, HTTP/2 `:authority`, or an absolute-form target's), as
/// it is routed on and sent upstream: the host lowercase without a trailing dot, and the
/// port as digits when one was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority {
    pub host: String,
    pub port: Option<u16>,
}

// === impl Target ===

impl Target {
    /// What the upstream receives as its request target.
    pub fn path_and_query(&self) -> String {
        match &self.query {
            Some(q) => format!("{}?{}", self.path, q),
            None => self.path.clone(),
        }
    }
}

/// Normalizes a raw request target (the bytes of the request line).
pub fn normalize_target(raw: &[u8]) -> Result<Target, BadTarget> {
    let raw = std::str::from_utf8(raw).map_err(|_| BadTarget::Encoding)?;
    if raw.bytes().any(|b| !(0x21..0x7f).contains(&b) || b == b'#') {
        return Err(if raw.bytes().any(|b| b < 0x20 || b == 0x7f) {
            BadTarget::Control
        } else {
            BadTarget::Encoding
        });
    }
    let (authority, rest) = split_absolute_form(raw)?;
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q.to_owned())),
        None => (rest, None),
    };
    if !path.starts_with('/') {
        return Err(BadTarget::Form);
    }
    let path = normalize_path(path)?;
    Ok(Target {
        path,
        query,
        authority,
    })
}

/// `http://Host:80/p?q` → (`Some(host:80)`, `/p?q`); origin-form passes through.
fn split_absolute_form(raw: &str) -> Result<(Option<Authority>, &str), BadTarget> {
    if raw.starts_with('/') {
        return Ok((None, raw));
    }
    match split_http_url(raw) {
        // `http://host?q` has an empty path: that is `/`, but not as a request target.
        Some((_, authority, rest)) if rest.starts_with('/') => Ok((Some(authority), rest)),
        _ => Err(BadTarget::Form),
    }
}

/// The scheme of an `http(s)://` URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub const fn default_port(self) -> u16 {
        match self {
            Self::Http => 80,
            Self::Https => 443,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }
}

/// `scheme://authority` and what follows it (a path, `?query`, `#fragment`, or nothing): an
/// `http` or `https` scheme in any case, no userinfo, the authority normalized (its port as
/// written). The one reading of an absolute URL for request targets, `Origin` and DPoP's
/// `htu`. `None` for anything else.
pub fn split_http_url(raw: &str) -> Option<(Scheme, Authority, &str)> {
    let (scheme, after) = raw.split_once("://")?;
    let scheme = if scheme.eq_ignore_ascii_case("http") {
        Scheme::Http
    } else if scheme.eq_ignore_ascii_case("https") {
        Scheme::Https
    } else {
        return None;
    };
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let (authority, rest) = after.split_at(end);
    if authority.contains('@') {
        return None;
    }
    Some((scheme, normalize_authority(authority)?, rest))
}

/// Lowercase host without port or trailing dot; `None` when it is not a plausible host.
pub fn normalize_host(authority: &str) -> Option<String> {
    normalize_authority(authority).map(|a| a.host)
}

/// `Example.COM.:8080` → `example.com` and port 8080; `None` when it is not a plausible
/// `host[:port]` (userinfo, an empty or non-numeric port, a bad label, a port over 65535).
pub fn normalize_authority(authority: &str) -> Option<Authority> {
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let end = v6.find(']')?;
        let inside = &v6[..end];
        if inside.is_empty()
            || !inside
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return None;
        }
        let port = match &v6[end + 1..] {
            "" => None,
            p => Some(parse_port(p.strip_prefix(':')?)?),
        };
        return Some(Authority {
            host: format!("[{}]", inside.to_ascii_lowercase()),
            port,
        });
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(parse_port(p)?)),
            None => (authority, None),
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    let valid = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    valid.then(|| Authority {
        host: host.to_ascii_lowercase(),
        port,
    })
}

fn parse_port(p: &str) -> Option<u16> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    p.parse().ok()
}

// === impl Authority ===

impl Authority {
    /// True when `bytes` are this authority exactly as `Display` writes it (lowercase host,
    /// the port without leading zeros): the client's own `Host` value can then be sent
    /// upstream as it is, without building a new one.
    pub fn is_spelled(&self, bytes: &[u8]) -> bool {
        let Some(rest) = bytes.strip_prefix(self.host.as_bytes()) else {
            return false;
        };
        match (self.port, rest) {
            (None, []) => true,
            (Some(port), [b':', digits @ ..]) => {
                !digits.is_empty()
                    && (digits[0] != b'0' || digits.len() == 1)
                    && std::str::from_utf8(digits)
                        .ok()
                        .and_then(|d| d.parse::<u16>().ok())
                        == Some(port)
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.port {
            Some(port) => write!(f, "{}:{port}", self.host),
            None => f.write_str(&self.host),
        }
    }
}

/// Decodes unreserved escapes, refuses dangerous ones, merges slashes, resolves dot segments.
pub fn normalize_path(path: &str) -> Result<String, BadTarget> {
    let decoded = decode_unreserved(path)?;
    let mut out: Vec<&str> = Vec::new();
    let trailing_slash =
        decoded.ends_with('/') || decoded.ends_with("/.") || decoded.ends_with("/..");
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if out.pop().is_none() {
                    return Err(BadTarget::EscapesRoot);
                }
            }
            s => out.push(s),
        }
    }
    let mut result = String::with_capacity(decoded.len());
    for seg in &out {
        result.push('/');
        result.push_str(seg);
    }
    if result.is_empty() || trailing_slash {
        result.push('/');
    }
    Ok(result)
}

/// Percent-decodes `ALPHA / DIGIT / - . _ ~` (RFC 3986 §6.2.2.2); keeps every other escape
/// with uppercase hex; refuses escapes that change how the path splits or reads.
fn decode_unreserved(path: &str) -> Result<String, BadTarget> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let v = escaped_byte(bytes, i).ok_or(BadTarget::Encoding)?;
                match v {
                    b'/' | b'\\' => return Err(BadTarget::EncodedSeparator),
                    0..=0x1f | 0x7f => return Err(BadTarget::Control),
                    b';' => return Err(BadTarget::Parameters),
                    b if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') => {
                        out.push(b as char);
                    }
                    0x80.. => {
                        i = escaped_utf8(bytes, i, &mut out)?;
                        continue;
                    }
                    b => {
                        let _ = write!(out, "%{b:02X}");
                    }
                }
                i += 3;
            }
            b'\\' => return Err(BadTarget::Backslash),
            b';' => return Err(BadTarget::Parameters),
            b => {
                out.push(b as char);
                i += 1;
            }
        }
    }
    // Checked on the output, so escaped hex digits (`%25%32%65`) cannot hide a `%2e`.
    let double = out
        .as_bytes()
        .windows(5)
        .any(|w| w[..3] == *b"%25" && w[3].is_ascii_hexdigit() && w[4].is_ascii_hexdigit());
    if double {
        return Err(BadTarget::DoubleEncoding);
    }
    Ok(out)
}

/// The byte of the escape `%XY` at `i`, if it is one.
fn escaped_byte(bytes: &[u8], i: usize) -> Option<u8> {
    let hi = bytes.get(i + 1).and_then(|c| (*c as char).to_digit(16))?;
    let lo = bytes.get(i + 2).and_then(|c| (*c as char).to_digit(16))?;
    u8::try_from(hi * 16 + lo).ok()
}

/// A run of escaped non-ASCII bytes starting at `i`: kept escaped (uppercase hex) when it is
/// strict UTF-8 of characters no stack reads as path syntax; returns where the run ends.
///
/// A lenient UTF-8 decoder reads the overlong `%c0%af` as `/` and `%e0%80%ae` as `.`, and
/// some frameworks compatibility-normalize `／` (`%ef%bc%8f`) to `/`: an upstream doing
/// either would route on a path the gateway never saw. Invalid UTF-8 of any other kind
/// (Latin-1 escapes such as `%e9`) is refused too: the gateway cannot know how the upstream
/// would read it, and APIs do not need it.
fn escaped_utf8(bytes: &[u8], mut i: usize, out: &mut String) -> Result<usize, BadTarget> {
    let mut run = Vec::new();
    while bytes.get(i) == Some(&b'%') {
        match escaped_byte(bytes, i) {
            Some(b) if b >= 0x80 => run.push(b),
            _ => break,
        }
        i += 3;
    }
    let text = std::str::from_utf8(&run).map_err(|_| BadTarget::InvalidUtf8)?;
    for c in text.chars() {
        if c.is_control() || confusable(c) {
            return Err(BadTarget::Confusable);
        }
    }
    for b in run {
        let _ = write!(out, "%{b:02X}");
    }
    Ok(i)
}

/// True when `c`'s compatibility form (NFKC) holds a character that is path or escape
/// syntax, or a control, or `c` is a slash or dot look-alike that "best fit" code-page
/// mappings (IIS, Windows APIs) turn into one without an NFKC mapping.
fn confusable(c: char) -> bool {
    use unicode_normalization::UnicodeNormalization as _;
    const LOOK_ALIKES: &[char] = &[
        '\u{2215}', // ∕ division slash
        '\u{2044}', // ⁄ fraction slash
        '\u{29F8}', // ⧸ big solidus
        '\u{2216}', // ∖ set minus
        '\u{29F5}', // ⧵ reverse solidus operator
        '\u{29F9}', // ⧹ big reverse solidus
        '\u{3002}', // 。 ideographic full stop
        '\u{FF61}', // ｡ halfwidth ideographic full stop
    ];
    LOOK_ALIKES.contains(&c)
        || std::iter::once(c)
            .nfkc()
            .any(|n| matches!(n, '/' | '\\' | '.' | ';' | '%' | '?' | '#') || n.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(p: &str) -> Result<String, BadTarget> {
        normalize_target(p.as_bytes()).map(|t| t.path_and_query())
    }

    #[test]
    fn normalizes() {
        assert_eq!(n("/"), Ok("/".into()));
        assert_eq!(n("/api"), Ok("/api".into()));
        assert_eq!(n("/api/"), Ok("/api/".into()));
        assert_eq!(n("//api///x"), Ok("/api/x".into()));
        assert_eq!(n("/public/../admin"), Ok("/admin".into()));
        assert_eq!(n("/public/%2e%2e/admin"), Ok("/admin".into()));
        assert_eq!(n("/public/%2E./admin"), Ok("/admin".into()));
        assert_eq!(n("/a/./b/."), Ok("/a/b/".into()));
        assert_eq!(n("/a/b/.."), Ok("/a/".into()));
        assert_eq!(n("/%61pi"), Ok("/api".into()));
        assert_eq!(n("/a%7e%2D"), Ok("/a~-".into()));
        assert_eq!(n("/a%20b%c3%a9"), Ok("/a%20b%C3%A9".into()));
        assert_eq!(
            n("/%e2%82%ac%F0%9F%98%80x"),
            Ok("/%E2%82%AC%F0%9F%98%80x".into())
        );
        assert_eq!(n("/100%25"), Ok("/100%25".into()));
        assert_eq!(n("/100%25off"), Ok("/100%25off".into()));
        assert_eq!(n("/a?x=%2F&y=/../"), Ok("/a?x=%2F&y=/../".into()));
        assert_eq!(n("/a/..?q"), Ok("/?q".into()));
    }

    #[test]
    fn refuses() {
        assert_eq!(n("/a%2fb"), Err(BadTarget::EncodedSeparator));
        assert_eq!(n("/a%2Fb"), Err(BadTarget::EncodedSeparator));
        assert_eq!(n("/a%5cb"), Err(BadTarget::EncodedSeparator));
        assert_eq!(n("/a\\b"), Err(BadTarget::Backslash));
        assert_eq!(n("/a%00"), Err(BadTarget::Control));
        assert_eq!(n("/a%0d%0a"), Err(BadTarget::Control));
        assert_eq!(n("/.."), Err(BadTarget::EscapesRoot));
        assert_eq!(n("/a/../../b"), Err(BadTarget::EscapesRoot));
        assert_eq!(n("/%2e%2e/x"), Err(BadTarget::EscapesRoot));
        assert_eq!(n("/admin;x=1"), Err(BadTarget::Parameters));
        assert_eq!(n("/admin%3bx"), Err(BadTarget::Parameters));
        assert_eq!(n("/a%zz"), Err(BadTarget::Encoding));
        assert_eq!(n("/%252e%252e/admin"), Err(BadTarget::DoubleEncoding));
        assert_eq!(n("/a%252Fb"), Err(BadTarget::DoubleEncoding));
        assert_eq!(
            n("/p/%25%32%65%25%32%65/api"),
            Err(BadTarget::DoubleEncoding)
        );
        assert_eq!(n("/p/%252%65"), Err(BadTarget::DoubleEncoding));
        assert_eq!(n("/a%2"), Err(BadTarget::Encoding));
        assert_eq!(n("/a#frag"), Err(BadTarget::Encoding));
        assert_eq!(n("*"), Err(BadTarget::Form));
        assert_eq!(n("example.com:443"), Err(BadTarget::Form));
        assert_eq!(n(""), Err(BadTarget::Form));
        assert_eq!(normalize_target(b"/a\xff"), Err(BadTarget::Encoding));
        // Issue 11: overlong and otherwise invalid UTF-8 escapes (a lenient decoder reads
        // `%c0%af` as `/` and `%c0%ae` as `.`), and compatibility forms of path syntax.
        for bad in [
            "/public/%c0%af../admin",
            "/public/%c0%ae%c0%ae/admin",
            "/public/%e0%80%af",
            "/public/%e0%80%ae%e0%80%ae/admin",
            "/public/%f0%80%80%af",
            "/public/%c1%9c",
            "/a%e9",
            "/a%c3",
            "/a%c3x",
            "/a%ed%a0%80",
            "/a%f4%90%80%80",
            "/a%80",
        ] {
            assert_eq!(n(bad), Err(BadTarget::InvalidUtf8), "{bad}");
        }
        for bad in [
            "/public/%ef%bc%8f..%ef%bc%8fadmin",
            "/public/%ef%bc%8e%ef%bc%8e/admin",
            "/a%e2%88%95b",
            "/a%ef%bc%bcb",
            "/a%ef%bc%9bx",
            "/a%c2%85",
            "/a%e2%80%a4",
            "/a%ef%bc%85",
        ] {
            assert_eq!(n(bad), Err(BadTarget::Confusable), "{bad}");
        }
        assert_eq!(normalize_target(b"/a\x01"), Err(BadTarget::Control));
    }

    #[test]
    fn absolute_form() {
        let t = normalize_target(b"http://API.Example.com:8080/x/../y?q=1").unwrap();
        let a = t.authority.clone().unwrap();
        assert_eq!((a.host.as_str(), a.port), ("api.example.com", Some(8080)));
        assert_eq!(t.path_and_query(), "/y?q=1");
        assert_eq!(n("http://u@h/x"), Err(BadTarget::Form));
        assert_eq!(n("ftp://h/x"), Err(BadTarget::Form));
        assert_eq!(n("http://h"), Err(BadTarget::Form));
    }

    #[test]
    fn hosts() {
        assert_eq!(
            normalize_host("Example.COM:80").as_deref(),
            Some("example.com")
        );
        assert_eq!(
            normalize_host("example.com.").as_deref(),
            Some("example.com")
        );
        assert_eq!(normalize_host("[::1]:8080").as_deref(), Some("[::1]"));
        assert_eq!(normalize_host("127.0.0.1").as_deref(), Some("127.0.0.1"));
        assert_eq!(normalize_host(".example.com"), None);
        assert_eq!(normalize_host("a..b"), None);
        assert_eq!(normalize_host("a b"), None);
        assert_eq!(normalize_host("h:x"), None);
        assert_eq!(normalize_host(""), None);
        assert_eq!(normalize_host("h:99999"), None, "port over 65535");
        assert_eq!(normalize_host("h:"), None, "empty port");
        assert_eq!(normalize_host("[]"), None);
        assert_eq!(normalize_host("[::1"), None);
        assert_eq!(normalize_host("[a b]"), None);
        let a = normalize_authority("Admin.Example.COM.:08443").unwrap();
        assert_eq!(a.to_string(), "admin.example.com:8443");
        assert_eq!(normalize_authority("[::1]").unwrap().to_string(), "[::1]");
        assert_eq!(
            normalize_authority("[::1]:80").unwrap().to_string(),
            "[::1]:80"
        );
    }
}
