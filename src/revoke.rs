//! `authgate revoke`: writes a revocation to the fleet store every replica reads (and each
//! replica's copy takes it within about a second), or lists what the store holds for a
//! provider in the `revocation_file` format.
//!
//! It reads the same config as the gateways: the `[store]` table says where, and the
//! provider must read the store (`revocation = "store"`), or what is written would be
//! enforced by nobody.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::{Config, ProviderSettings};
use crate::metrics::Metrics;
use crate::runtime::store::{Revoke, Store};

/// What to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Jti(String),
    /// Every token of `sub` issued before `before` (Unix seconds; default now).
    Subject {
        sub: String,
        before: Option<f64>,
    },
    List,
}

/// Longest `jti` or `sub` accepted: `server.max_token_bytes` at its largest, so whatever id
/// a token can carry can be revoked. (An empty one cannot: revoke its subject.)
const MAX_ID_BYTES: usize = 65_536;

/// 9999-12-31T23:59:59.999Z, the last instant RFC 3339 spells: the latest `--before`.
const LAST_INSTANT_MS: i64 = 253_402_300_799_999;

/// Runs `action` for `provider` against the store `config` names; the text to print.
pub fn run(config: &Config, provider: &str, action: Action) -> Result<String, String> {
    let settings = config.store.as_ref().ok_or_else(|| {
        format!(
            "{} has no [store] table: nothing to write to",
            config.origin.display()
        )
    })?;
    let p = config
        .providers
        .iter()
        .find(|p| p.name == provider)
        .ok_or_else(|| {
            let names: Vec<&str> = config.providers.iter().map(|p| p.name.as_str()).collect();
            format!(
                "no provider {provider:?} in {} (providers: {})",
                config.origin.display(),
                names.join(", ")
            )
        })?;
    if !p.revocation_store && action != Action::List {
        return Err(format!(
            "providers.{provider}.revocation is not \"store\": the gateways would not read this revocation"
        ));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|_| "the clock is before 1970".to_owned())?;
    let now_ms = i64::try_from(now.as_millis()).unwrap_or(i64::MAX);
    let revoke = match &action {
        Action::Jti(jti) => Some(Revoke::Jti(checked_id("--jti", jti)?)),
        Action::Subject { sub, before } => {
            let before_ms = match before {
                None => now_ms,
                Some(s) if s.is_finite() && *s >= 0.0 && *s * 1000.0 <= LAST_INSTANT_MS as f64 => {
                    (s * 1000.0).round() as i64
                }
                Some(s) => {
                    return Err(format!(
                        "--before {s} is not an instant between 1970 and the end of 9999"
                    ))
                }
            };
            Some(Revoke::Subject {
                sub: checked_id("--subject", sub)?,
                before_ms,
            })
        }
        Action::List => None,
    };

    crate::tls::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    let store =
        Store::open(settings, rt.handle(), Arc::new(Metrics::new())).map_err(|e| e.to_string())?;
    rt.block_on(async {
        match revoke {
            Some(what) => {
                let prune = prune_before(p, now_ms);
                let (applied, version) = store
                    .revoke(provider, &what, now_ms, prune)
                    .await
                    .map_err(|e| format!("{}: {e}", settings.redis_url))?;
                Ok(written(provider, &what, applied, version))
            }
            None => {
                let read = store
                    .read_revocations(provider)
                    .await
                    .map_err(|e| format!("{}: {e}", settings.redis_url))?;
                Ok(listing(provider, &settings.redis_url, &read))
            }
        }
    })
}

/// A `jti` or `sub` as given: not empty, not huge.
fn checked_id(flag: &str, id: &str) -> Result<String, String> {
    if id.is_empty() || id.len() > MAX_ID_BYTES {
        return Err(format!("{flag} must be 1 to {MAX_ID_BYTES} bytes"));
    }
    Ok(id.to_owned())
}

/// The least time a revoked `jti` is kept, whatever the config `authgate revoke` runs with
/// says: a CLI config with a shorter `max_token_lifetime` than the gateways' must not prune
/// revocations of tokens the gateways still accept.
const MIN_KEEP: Duration = Duration::from_secs(24 * 3600);

/// `jti`s revoked before this can go: every token that carried one has expired (the
/// provider caps token lifetimes; leeway both ways and a minute of margin). None without a
/// cap: they stay until removed by hand.
fn prune_before(p: &ProviderSettings, now_ms: i64) -> Option<i64> {
    let cap = p.max_token_lifetime?;
    let keep = cap
        .saturating_add(p.leeway.saturating_mul(2))
        .saturating_add(Duration::from_secs(60))
        .max(MIN_KEEP);
    let keep_ms = i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
    Some(now_ms.saturating_sub(keep_ms)).filter(|t| *t > 0)
}

fn written(provider: &str, what: &Revoke, applied: bool, version: u64) -> String {
    match what {
        Revoke::Jti(jti) => format!(
            "revoked jti {} of provider {provider} (store version {version})\n",
            quoted(jti)
        ),
        Revoke::Subject { sub, before_ms } if applied => format!(
            "revoked every token of subject {} of provider {provider} issued before {} (store version {version})\n",
            quoted(sub),
            instant(*before_ms)
        ),
        Revoke::Subject { sub, .. } => format!(
            "subject {} of provider {provider} already has a later cutoff: nothing written (store version {version})\n",
            quoted(sub)
        ),
    }
}

/// The store's list for `provider`, as a `revocation_file` would hold it.
fn listing(provider: &str, url: &str, read: &crate::runtime::store::StoredRevocations) -> String {
    let mut out = format!(
        "# revocations of provider {provider} in {url} (store version {}): {} jti(s), {} subject(s)\n",
        read.version,
        read.jtis.len(),
        read.subjects.len()
    );
    if read.unreadable > 0 {
        out.push_str(&format!(
            "# {} entr{} in the store that do not read as revocations (written by hand?) left out\n",
            read.unreadable,
            if read.unreadable == 1 { "y" } else { "ies" }
        ));
    }
    out.push_str("jti = [\n");
    for (jti, at) in &read.jtis {
        out.push_str(&format!("  {},  # revoked {}\n", quoted(jti), instant(*at)));
    }
    out.push_str("]\n\n[subjects]\n");
    let mut subjects = read.subjects.clone();
    subjects.sort();
    for (sub, at) in &subjects {
        out.push_str(&format!("{} = {}\n", quoted(sub), cutoff_value(*at)));
    }
    out
}

/// A TOML basic string on one line, valid as a key and as a value (a multi-line string
/// is not a key); safe to print: every control character escaped.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// RFC 3339, to the millisecond when there is one; Unix seconds for what RFC 3339 cannot
/// spell (a score written by hand before 1970 or after 9999). Never fails.
fn instant(ms: i64) -> String {
    if !(0..=LAST_INSTANT_MS).contains(&ms) {
        return format!("{} (Unix seconds)", ms.div_euclid(1000));
    }
    let t = UNIX_EPOCH + Duration::from_millis(ms.unsigned_abs());
    if ms % 1000 == 0 {
        humantime::format_rfc3339_seconds(t).to_string()
    } else {
        humantime::format_rfc3339_millis(t).to_string()
    }
}

/// A subject's cutoff as a `revocation_file` value: an RFC 3339 string, or Unix seconds
/// rounded up (never earlier than the store's) where RFC 3339 cannot spell it.
fn cutoff_value(ms: i64) -> String {
    if (0..=LAST_INSTANT_MS).contains(&ms) {
        quoted(&instant(ms))
    } else {
        (ms.div_euclid(1000) + i64::from(ms.rem_euclid(1000) != 0)).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::revocation::RevocationSet;
    use crate::runtime::store::StoredRevocations;

    #[test]
    fn the_listing_is_a_revocation_file() {
        let read = StoredRevocations {
            version: 3,
            jtis: vec![
                ("a\"b".into(), 1_700_000_000_000),
                ("c".into(), 1_700_000_000_500),
            ],
            subjects: vec![
                ("alice".into(), 1_700_000_000_250),
                ("bob x".into(), 0),
                ("new\nline\u{7f}\"q\\".into(), 5),
                ("far".into(), 253_402_300_800_001),
                ("early".into(), -1_500),
            ],
            unreadable: 0,
        };
        let text = listing("p", "redis://r", &read);
        let set = RevocationSet::parse(&text).unwrap();
        assert!(set.is_revoked(Some("a\"b"), None, None), "{text}");
        assert!(set.is_revoked(None, Some("alice"), Some(1_700_000_000.0)));
        assert!(!set.is_revoked(None, Some("alice"), Some(1_700_000_000.25)));
        assert!(set.is_revoked(None, Some("bob x"), None));
        assert!(set.is_revoked(None, Some("new\nline\u{7f}\"q\\"), None));
        assert!(
            set.is_revoked(None, Some("far"), Some(253_402_300_800.0)),
            "past 9999: Unix seconds, rounded up"
        );
        assert!(!set.is_revoked(None, Some("early"), Some(0.0)));
        assert_eq!(set.len(), 7);
        assert!(text.contains("253402300801"), "{text}");
    }

    #[test]
    fn instants_never_fail() {
        assert_eq!(instant(0), "1970-01-01T00:00:00Z");
        assert_eq!(instant(LAST_INSTANT_MS), "9999-12-31T23:59:59.999Z");
        assert_eq!(instant(i64::MAX), "9223372036854775 (Unix seconds)");
        assert_eq!(instant(i64::MIN), "-9223372036854776 (Unix seconds)");
        assert_eq!(cutoff_value(i64::MAX), "9223372036854776");
    }

    #[test]
    fn pruning_follows_the_lifetime_cap() {
        let text = "[upstreams.u]\nurl = \"http://127.0.0.1:1\"\n[providers.p]\nissuer = \"https://i\"\naudiences = [\"a\"]\njwks_url = \"https://i/jwks\"\nleeway = \"30s\"\n[[routes]]\nname = \"r\"\npath_prefix = \"/\"\nupstream = \"u\"\n";
        let cfg = crate::config::load_str(text, std::path::Path::new("t.toml")).unwrap();
        let mut p = cfg.providers[0].clone();
        assert_eq!(prune_before(&p, 10_000_000), None, "no cap: kept");
        let now = 1_000_000_000;
        p.max_token_lifetime = Some(Duration::from_secs(2 * 86_400));
        assert_eq!(prune_before(&p, now), Some(now - 172_860_000 - 60_000));
        p.max_token_lifetime = Some(Duration::from_secs(3600));
        assert_eq!(
            prune_before(&p, now),
            Some(now - 86_400_000),
            "a day at least, whatever this config's cap"
        );
        assert_eq!(prune_before(&p, 1_000), None);
    }
}
