//! `authgate test`: policy test cases, like `opa test`. Each case is a request, a token (given
//! literally, or described by its claims and signed with the case file's test keys), and what
//! must happen; each runs through the very decision the gateway makes (`explain`), offline.
//!
//! ```toml
//! now = "2026-12-01T00:00:00Z"          # optional; default: the real clock
//! [keys.corp]                           # test keys for provider `corp` (paths: this file's)
//! private_key = "keys/rsa.pem"          # signs described tokens
//! jwks = "keys/jwks.json"               # the provider's tokens verify against it
//! kid = "rsa"                           # default: none
//! alg = "RS256"                         # default: the provider's first algorithm
//!
//! [[case]]
//! name = "readers list orders"
//! request = "GET http://api.example.com/api/orders"
//! headers = { "X-User-Id" = "mallory" }
//! token = { provider = "corp", claims = { sub = "alice", scope = "read", exp = "+1h" } }
//! expect = { status = 200, upstream_headers = { "X-User-Id" = "alice" } }
//! ```
//!
//! A described token goes in `Authorization` unless `source = "cookie:NAME"` or
//! `"header:NAME"` puts it there. Opaque tokens cannot be tested offline (their answer is the
//! IdP's): such a case gets 503 `introspection_unavailable`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::config::{Config, JwksFile, KeySource};
use crate::explain::{explain_with, Explanation, Request};
use crate::metrics::Metrics;
use crate::proxy::unix_now;
use crate::runtime::Snapshot;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    now: Option<String>,
    #[serde(default)]
    keys: BTreeMap<String, RawKey>,
    #[serde(default, rename = "case")]
    cases: Vec<RawCase>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    private_key: String,
    /// The JWKS of the private key's public half; not for an HMAC provider (its
    /// `private_key` is the secret).
    jwks: Option<String>,
    kid: Option<String>,
    alg: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    name: String,
    /// `METHOD URL`.
    request: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    token: Option<RawToken>,
    expect: RawExpect,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawToken {
    Literal(String),
    Described {
        provider: String,
        #[serde(default)]
        claims: Map<String, Value>,
        #[serde(default)]
        header: Map<String, Value>,
        /// Where the request carries it: `authorization` (default), `cookie:NAME` or
        /// `header:NAME`.
        source: Option<String>,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    status: u16,
    reason: Option<String>,
    /// Headers the upstream must get, with these values.
    #[serde(default)]
    upstream_headers: BTreeMap<String, String>,
    /// Headers the upstream must not get.
    #[serde(default)]
    upstream_absent: Vec<String>,
}

/// One case's result.
pub struct Outcome {
    pub file: PathBuf,
    pub name: String,
    /// `None`: passed. Otherwise what differed, and the step that decided.
    pub failure: Option<String>,
}

/// Runs every case of `files` against the config at `config_path` (loaded afresh for each
/// file: its test keys replace the providers' key sources). Errors: a config, file or key that
/// cannot be read or used, named with its file.
pub fn run(config_path: &Path, files: &[PathBuf]) -> Result<Vec<Outcome>, String> {
    let mut outcomes = Vec::new();
    for file in files {
        let Loaded {
            raw,
            now,
            snap,
            signers,
        } = load(config_path, file, None)?;
        for case in &raw.cases {
            let failure = run_case(&snap.config, &snap, &signers, case, now)
                .map_err(|e| format!("{}: case {:?}: {e}", file.display(), case.name))?;
            outcomes.push(Outcome {
                file: file.clone(),
                name: case.name.clone(),
                failure,
            });
        }
    }
    Ok(outcomes)
}

/// A case file, its clock (`now`, else the file's, else the real one), and the snapshot and
/// signers its test keys make of the config. Errors name the file.
fn load(config_path: &Path, file: &Path, now: Option<f64>) -> Result<Loaded, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let raw: RawFile = toml::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
    if raw.cases.is_empty() {
        return Err(format!("{}: no [[case]] in it", file.display()));
    }
    let now = match (now, &raw.now) {
        (Some(n), _) => n,
        (None, Some(t)) => instant(t).map_err(|e| format!("{}: now: {e}", file.display()))?,
        (None, None) => unix_now(),
    };
    let config = crate::config::load_file(config_path)
        .map_err(|e| crate::config::ConfigErrors(e).to_string())?;
    let dir = file.parent().unwrap_or(Path::new("."));
    let (snap, signers) =
        prepare(config, &raw.keys, dir).map_err(|e| format!("{}: {e}", file.display()))?;
    Ok(Loaded {
        raw,
        now,
        snap,
        signers,
    })
}

/// A case file, ready to run.
struct Loaded {
    raw: RawFile,
    now: f64,
    snap: Arc<Snapshot>,
    signers: BTreeMap<String, Signer>,
}

struct Signer {
    key: EncodingKey,
    alg: Algorithm,
    kid: Option<String>,
}

/// The snapshot with each named provider verifying against its test JWKS, and the signers.
fn prepare(
    mut config: Config,
    keys: &BTreeMap<String, RawKey>,
    dir: &Path,
) -> Result<(Arc<Snapshot>, BTreeMap<String, Signer>), String> {
    // Every case shows its whole verification, whatever ran before it.
    config.token_cache.enabled = false;
    let mut signers = BTreeMap::new();
    for (name, k) in keys {
        let p = config
            .providers
            .iter_mut()
            .find(|p| p.name == *name)
            .ok_or_else(|| format!("keys.{name}: no such provider in the config"))?;
        let hmac = matches!(p.key_source, KeySource::HmacSecret(_));
        match (&k.jwks, hmac) {
            (Some(jwks), false) => {
                let jwks = dir.join(jwks);
                let document = std::fs::read(&jwks).map_err(|e| {
                    format!("keys.{name}.jwks: cannot read {}: {e}", jwks.display())
                })?;
                p.key_source = KeySource::JwksFile(JwksFile {
                    path: jwks,
                    document: Arc::new(document),
                });
            }
            (None, false) => {
                return Err(format!(
                    "keys.{name}: jwks is needed (the public half of private_key)"
                ))
            }
            (Some(_), true) => {
                return Err(format!(
                    "keys.{name}: an HMAC provider takes no jwks (private_key is the secret)"
                ))
            }
            (None, true) => {}
        }
        let alg = match &k.alg {
            Some(a) => a
                .parse::<Algorithm>()
                .map_err(|_| format!("keys.{name}.alg: {a:?} is not an algorithm"))?,
            None => *p
                .algorithms
                .first()
                .ok_or_else(|| format!("keys.{name}: the provider allows no algorithm"))?,
        };
        let pem_path = dir.join(&k.private_key);
        let pem = std::fs::read(&pem_path).map_err(|e| {
            format!(
                "keys.{name}.private_key: cannot read {}: {e}",
                pem_path.display()
            )
        })?;
        let key = match alg {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => EncodingKey::from_rsa_pem(&pem),
            Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(&pem),
            Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem),
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                // As `hmac_secret_file`: the file's bytes without trailing newlines.
                let secret = crate::formats::secret_bytes(&pem);
                p.key_source = KeySource::HmacSecret(secret.to_vec());
                Ok(EncodingKey::from_secret(secret))
            }
            other => {
                return Err(format!(
                    "keys.{name}.alg: {other:?} cannot sign test tokens"
                ))
            }
        }
        .map_err(|e| {
            format!(
                "keys.{name}.private_key: {e} (is {} a PEM private key for {alg:?}?)",
                pem_path.display()
            )
        })?;
        signers.insert(
            name.clone(),
            Signer {
                key,
                alg,
                kid: k.kid.clone(),
            },
        );
    }
    Ok((
        Arc::new(Snapshot::offline(config, &Metrics::new())),
        signers,
    ))
}

fn run_case(
    config: &Config,
    snap: &Arc<Snapshot>,
    signers: &BTreeMap<String, Signer>,
    case: &RawCase,
    now: f64,
) -> Result<Option<String>, String> {
    let request = request_of(config, signers, case, now)?;
    let e = explain_with(snap, &request, now)?;
    Ok(compare(&case.expect, &e))
}

/// Every case of `file` as the request it sends (described tokens signed for `now`, default:
/// the file's `now`), with its name and the explanation of it: for tools and for the tests
/// that send the same requests to a live gateway.
pub fn explained(
    config_path: &Path,
    file: &Path,
    now: Option<f64>,
) -> Result<Vec<(String, Request, Explanation)>, String> {
    let Loaded {
        raw,
        now,
        snap,
        signers,
    } = load(config_path, file, now)?;
    let mut out = Vec::new();
    for case in &raw.cases {
        let request = request_of(&snap.config, &signers, case, now)?;
        let e = explain_with(&snap, &request, now)?;
        out.push((case.name.clone(), request, e));
    }
    Ok(out)
}

fn request_of(
    config: &Config,
    signers: &BTreeMap<String, Signer>,
    case: &RawCase,
    now: f64,
) -> Result<Request, String> {
    let (method, url) = case
        .request
        .split_once(' ')
        .ok_or("request: write it as \"METHOD URL\"")?;
    let mut headers: Vec<(String, String)> = case
        .headers
        .iter()
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect();
    let token = match &case.token {
        None => None,
        Some(RawToken::Literal(t)) => Some(t.clone()),
        Some(RawToken::Described {
            provider,
            claims,
            header,
            source,
        }) => {
            let t = mint(config, signers, provider, claims, header, now)?;
            match source.as_deref() {
                None | Some("authorization") => Some(t),
                Some(s) => {
                    if let Some(name) = s.strip_prefix("cookie:") {
                        headers.push(("cookie".to_owned(), format!("{name}={t}")));
                    } else if let Some(name) = s.strip_prefix("header:") {
                        headers.push((name.to_owned(), t));
                    } else {
                        return Err(format!("token.source: {s:?} is not \"authorization\", \"cookie:NAME\" or \"header:NAME\""));
                    }
                    None
                }
            }
        }
    };
    let request = Request {
        method: method.trim().to_owned(),
        url: url.trim().to_owned(),
        headers,
        token,
    };
    Ok(request)
}

/// A described token: the claims given (times as `+1h` / `-5m` from `now`), with `iss`,
/// `aud`, `iat` and `exp` (+1h) filled in from the provider when absent; `typ` is the
/// provider's `required_typ` (else `JWT`) unless the case's `header` says otherwise.
fn mint(
    config: &Config,
    signers: &BTreeMap<String, Signer>,
    provider: &str,
    claims: &Map<String, Value>,
    header: &Map<String, Value>,
    now: f64,
) -> Result<String, String> {
    let p = config
        .providers
        .iter()
        .find(|p| p.name == provider)
        .ok_or_else(|| format!("token.provider: no provider {provider:?}"))?;
    // An HMAC provider signs with its own configured secret unless the file names one.
    let own;
    let signer = match (signers.get(provider), &p.key_source) {
        (Some(s), _) => s,
        (None, KeySource::HmacSecret(secret)) => {
            own = Signer {
                key: EncodingKey::from_secret(secret),
                alg: *p
                    .algorithms
                    .first()
                    .ok_or("token: the provider allows no algorithm")?,
                kid: None,
            };
            &own
        }
        (None, _) => {
            return Err(format!(
                "token: no [keys.{provider}] in the case file to sign with"
            ))
        }
    };
    let mut c = Map::new();
    c.insert("iss".into(), json!(p.issuer));
    if let Some(aud) = p.audiences.first() {
        c.insert("aud".into(), json!(aud));
    }
    c.insert("iat".into(), json!(now.floor() as i64));
    c.insert("exp".into(), json!((now + 3600.0).floor() as i64));
    for (k, v) in claims {
        let v = match (k.as_str(), v) {
            ("exp" | "nbf" | "iat", Value::String(s)) => {
                json!(relative(s, now).map_err(|e| format!("token.claims.{k}: {e}"))?)
            }
            _ => v.clone(),
        };
        c.insert(k.clone(), v);
    }
    let mut h = Header::new(signer.alg);
    h.kid = signer.kid.clone();
    // The provider's `required_typ` when it has one (`at+jwt`), else `JWT`.
    if let Some(typ) = &p.required_typ {
        h.typ = Some(typ.clone());
    }
    for (k, v) in header {
        match (k.as_str(), v) {
            ("kid", Value::String(s)) => h.kid = Some(s.clone()),
            ("typ", Value::String(s)) => h.typ = Some(s.clone()),
            _ => {
                return Err(format!(
                    "token.header.{k}: only kid and typ (strings) can be set"
                ))
            }
        }
    }
    jsonwebtoken::encode(&h, &c, &signer.key).map_err(|e| format!("token: cannot sign: {e}"))
}

/// What differs from `expect`, with the deciding step; `None` when nothing does.
fn compare(expect: &RawExpect, e: &Explanation) -> Option<String> {
    let mut diffs = Vec::new();
    if e.status != expect.status {
        diffs.push(format!("status {} (expected {})", e.status, expect.status));
    }
    if let Some(reason) = &expect.reason {
        if e.reason != reason {
            diffs.push(format!("reason {} (expected {reason})", e.reason));
        }
    }
    let get = |name: &str| {
        e.upstream_headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
    };
    let shown = |name: &str, got: &[&str]| {
        if secret_header(name) {
            format!("{} value(s), not shown", got.len())
        } else {
            format!("{got:?}")
        }
    };
    for (name, want) in &expect.upstream_headers {
        let got = get(name);
        if got != [want.as_str()] {
            let want = if secret_header(name) {
                "<not shown>"
            } else {
                want
            };
            diffs.push(format!(
                "upstream {name}: {} (expected {want:?})",
                shown(name, &got)
            ));
        }
    }
    for name in &expect.upstream_absent {
        let got = get(name);
        if !got.is_empty() {
            diffs.push(format!(
                "upstream {name}: {} (expected none)",
                shown(name, &got)
            ));
        }
    }
    if diffs.is_empty() {
        return None;
    }
    // The step that decided: the refusal's, else the last one.
    let decided = e
        .lines
        .iter()
        .rposition(|l| l.step != "refused" && l.step != "would_reject")
        .map(|i| format!("step {} {}: {}", i + 1, e.lines[i].step, e.lines[i].text))
        .unwrap_or_default();
    Some(format!("{}; decided at {decided}", diffs.join("; ")))
}

/// `+1h`, `-5m`, `30s` from `now`.
fn relative(s: &str, now: f64) -> Result<f64, String> {
    let (sign, rest) = match s.as_bytes().first() {
        Some(b'-') => (-1.0, &s[1..]),
        Some(b'+') => (1.0, &s[1..]),
        _ => (1.0, s),
    };
    let d: Duration = humantime::parse_duration(rest.trim())
        .map_err(|e| format!("{s:?} is not a relative time such as \"+1h\" or \"-5m\": {e}"))?;
    Ok((now + sign * d.as_secs_f64()).floor())
}

/// A header whose value may be a credential: shown by its size only.
fn secret_header(name: &str) -> bool {
    ["authorization", "proxy-authorization", "cookie"]
        .iter()
        .any(|s| name.eq_ignore_ascii_case(s))
}

/// Unix seconds (finite, not negative) or an RFC 3339 instant.
pub fn instant(t: &str) -> Result<f64, String> {
    if let Ok(secs) = t.parse::<f64>() {
        if !secs.is_finite() || secs < 0.0 {
            return Err(format!(
                "{t:?} is not a time (finite Unix seconds, 0 or more)"
            ));
        }
        return Ok(secs);
    }
    humantime::parse_rfc3339(t)
        .map_err(|e| format!("{t:?} is neither Unix seconds nor an RFC 3339 instant: {e}"))?
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .map_err(|_| format!("{t:?} is before 1970"))
}
