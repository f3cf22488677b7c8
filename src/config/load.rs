//! Read and parse: file bytes → `RawConfig`, with TOML errors located by line and column.

use std::ops::Range;
use std::path::Path;

use super::schema::RawConfig;
use super::{build, Config, ConfigError};

/// Reads, parses and builds the config at `path`. Every problem found is returned.
pub fn load_file(path: &Path) -> Result<Config, Vec<ConfigError>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![ConfigError {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            key: String::new(),
            message: format!("cannot read config file: {e}"),
        }]
    })?;
    load_str(&text, path)
}

/// Parses and builds config text; `origin` names it in errors and relative paths
/// (`jwks_file`, `hmac_secret_file`) resolve against its directory.
pub fn load_str(text: &str, origin: &Path) -> Result<Config, Vec<ConfigError>> {
    let raw: RawConfig = toml::from_str(text).map_err(|e| vec![toml_error(text, origin, &e)])?;
    let hash = sha256_hex(text.as_bytes());
    build(raw, text, origin, hash)
}

fn toml_error(text: &str, origin: &Path, e: &toml::de::Error) -> ConfigError {
    let (line, column) = e.span().map_or((0, 0), |s| line_col(text, s.start));
    let key = e.span().map(|s| key_at(text, s)).unwrap_or_default();
    ConfigError {
        file: origin.to_path_buf(),
        line,
        column,
        key,
        message: e.message().trim().to_owned(),
    }
}

/// 1-based line and column of byte `offset`.
pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
    (line, column)
}

/// The key a TOML error points at: the left side of `key = value` on that line, or the
/// table header.
fn key_at(text: &str, span: Range<usize>) -> String {
    let start = span.start.min(text.len());
    let line_start = text
        .get(..start)
        .and_then(|b| b.rfind('\n'))
        .map_or(0, |i| i + 1);
    let line_end = text
        .get(start..)
        .and_then(|a| a.find('\n'))
        .map_or(text.len(), |i| start + i);
    let line = text.get(line_start..line_end).unwrap_or("").trim();
    if let Some((k, _)) = line.split_once('=') {
        k.trim().trim_matches('"').to_owned()
    } else {
        line.trim_matches(|c| c == '[' || c == ']')
            .trim()
            .to_owned()
    }
}

use crate::formats::sha256_hex;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        let t = "a = 1\nbb = 2\n";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 6), (2, 1));
        assert_eq!(line_col(t, 8), (2, 3));
    }

    #[test]
    fn unknown_key_is_located() {
        let text = "[server]\nlisten = \"127.0.0.1:0\"\nthreadz = 4\n";
        let errs = load_str(text, Path::new("x.toml")).unwrap_err();
        assert_eq!(errs.len(), 1);
        let e = &errs[0];
        assert_eq!(e.line, 3, "{e}");
        assert_eq!(e.key, "threadz");
        assert!(e.message.contains("unknown field"), "{e}");
        assert!(e.to_string().starts_with("x.toml:3:"), "{e}");
    }

    #[test]
    fn bad_duration_is_located() {
        let text = "[providers.a]\nissuer = \"i\"\naudiences = [\"a\"]\njwks_url = \"http://127.0.0.1:1/\"\nleeway = \"soon\"\n";
        let errs = load_str(text, Path::new("x.toml")).unwrap_err();
        assert_eq!(errs[0].line, 5, "{}", errs[0]);
        assert_eq!(errs[0].key, "leeway");
    }
}
