use std::path::Path;

use crate::config::{load_str, ConfigError};

const FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/keys");

fn base() -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:0"
[admin]
listen = "127.0.0.1:0"
[upstreams.up]
url = "http://127.0.0.1:9"
[providers.corp]
issuer = "https://corp"
audiences = ["api"]
jwks_file = "{FIX}/jwks.json"
algorithms = ["RS256"]
[headers]
forward_claims = {{ sub = "X-User-Id" }}
[[routes]]
name = "api"
path_prefix = "/api"
upstream = "up"
"#
    )
}

fn errors(text: &str) -> Vec<ConfigError> {
    load_str(text, Path::new("t.toml")).expect_err("should not build")
}

fn one_error(text: &str, key: &str, fragment: &str) {
    let errs = errors(text);
    assert!(
        errs.iter()
            .any(|e| e.key == key && e.message.contains(fragment)),
        "wanted `{key}`: ...{fragment}... in {errs:#?}"
    );
}

#[test]
fn base_builds() {
    let c = load_str(&base(), Path::new("t.toml")).unwrap();
    assert_eq!(c.routes.len(), 1);
    assert_eq!(c.content_hash.len(), 64);
}

#[test]
fn semantic_errors_name_key_and_line() {
    let b = base();
    let route_line = b.lines().position(|l| l == "[[routes]]").unwrap() + 1;
    let errs = errors(&b.replace("upstream = \"up\"\n", "upstream = \"down\"\n"));
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert_eq!(errs[0].key, "routes[0].upstream");
    assert_eq!(
        errs[0].line, route_line,
        "points at the route's [[routes]] line"
    );
    assert!(
        errs[0]
            .to_string()
            .starts_with(&format!("t.toml:{route_line}:")),
        "{}",
        errs[0]
    );
}

#[test]
fn every_check() {
    let b = base();
    let r = |from: &str, to: &str| {
        assert!(b.contains(from), "{from}");
        b.replace(from, to)
    };
    one_error(
        &r(
            "listen = \"127.0.0.1:0\"\n[admin]",
            "listen = \"localhost\"\n[admin]",
        ),
        "server.listen",
        "IP:port",
    );
    one_error(
        &r("[server]\n", "[server]\nthreads = 0\n"),
        "server.threads",
        "between 1 and 256",
    );
    one_error(
        &r("[server]\n", "[server]\nmax_token_bytes = 10\n"),
        "server.max_token_bytes",
        "between",
    );
    one_error(
        &r("http://127.0.0.1:9", "ftp://127.0.0.1:9"),
        "upstreams.up.url",
        "http:// or https://",
    );
    one_error(
        &r(
            "http://127.0.0.1:9\"\n",
            "https://127.0.0.1:9\"\nsni = \"\"\n",
        ),
        "upstreams.up.sni",
        "empty",
    );
    one_error(
        &r(
            "http://127.0.0.1:9\"\n",
            "http://127.0.0.1:9\"\ntls_verify = false\n",
        ),
        "upstreams.up.tls_verify",
        "https:// upstreams only",
    );
    one_error(
        &r(
            "http://127.0.0.1:9\"\n",
            "https://127.0.0.1:9\"\nca_file = \"nope.pem\"\n",
        ),
        "upstreams.up.ca_file",
        "cannot read",
    );
    one_error(
        &r("[server]\n", "[server]\nread_buffer_bytes = 2000000\n"),
        "server.read_buffer_bytes",
        "at most 1048576",
    );
    one_error(
        &r("[server]\n", "[server]\nlog_format = \"xml\"\n"),
        "server.log_format",
        "json",
    );
    one_error(
        &r("[server]\n", "[server]\nkeepalive_timeout = \"0s\"\n"),
        "server.keepalive_timeout",
        "between 1s and 1h",
    );
    one_error(
        &r("[server]\n", "[server]\nshutdown_grace = \"20m\"\n"),
        "server.shutdown_grace",
        "at most 10m",
    );
    one_error(
        &r("http://127.0.0.1:9", "http://127.0.0.1:9/base"),
        "upstreams.up.url",
        "path",
    );
    one_error(
        &r("http://127.0.0.1:9", "http://no-such-host.invalid:9"),
        "upstreams.up.url",
        "does not resolve",
    );
    one_error(
        &r("audiences = [\"api\"]", "audiences = []"),
        "providers.corp.audiences",
        "at least one",
    );
    one_error(
        &r(
            &format!("jwks_file = \"{FIX}/jwks.json\""),
            "jwks_url = \"http://idp.example.com/jwks\"",
        ),
        "providers.corp.jwks_url",
        "plain http",
    );
    let loopback_http = r(
        &format!("jwks_file = \"{FIX}/jwks.json\""),
        "jwks_url = \"http://127.0.0.1:1/jwks\"",
    );
    assert!(
        load_str(&loopback_http, Path::new("t.toml")).is_ok(),
        "http is fine on loopback"
    );
    one_error(
        &r("issuer = \"https://corp\"", "issuer = \"\""),
        "providers.corp.issuer",
        "empty",
    );
    one_error(
        &r("algorithms = [\"RS256\"]", "algorithms = [\"none\"]"),
        "providers.corp.algorithms",
        "never none",
    );
    one_error(
        &r(
            "algorithms = [\"RS256\"]",
            "algorithms = [\"RS256\", \"HS256\"]",
        ),
        "providers.corp.algorithms",
        "never mixed",
    );
    one_error(
        &r("jwks_file", "jwks_url = \"http://x\"\njwks_file"),
        "providers.corp.jwks_url",
        "exactly one",
    );
    one_error(
        &r("jwks.json", "missing.json"),
        "providers.corp.jwks_file",
        "cannot read",
    );
    one_error(
        &r("jwks.json", "rsa.pem"),
        "providers.corp.jwks_file",
        "not a JSON object",
    );
    one_error(
        &r(
            &format!("jwks_file = \"{FIX}/jwks.json\"\nalgorithms = [\"RS256\"]"),
            &format!("hmac_secret_file = \"{FIX}/hmac.secret\"\nalgorithms = [\"RS256\"]"),
        ),
        "providers.corp.algorithms",
        "may only allow HS",
    );
    one_error(
        &r(
            &format!("jwks_file = \"{FIX}/jwks.json\"\nalgorithms = [\"RS256\"]"),
            &format!("hmac_secret_file = \"{FIX}/README.md\"\nalgorithms = [\"RS256\"]"),
        ),
        "providers.corp.algorithms",
        "HS",
    );
    one_error(
        &r("[providers.corp]", "[providers.corp]\nleeway = \"1h\""),
        "providers.corp.leeway",
        "at most 10m",
    );
    one_error(
        &r("sub = \"X-User-Id\"", "sub = \"Host\""),
        "headers.forward_claims.sub",
        "cannot hold a claim",
    );
    one_error(
        &r("sub = \"X-User-Id\"", "sub = \"X User\""),
        "headers.forward_claims.sub",
        "not a valid header name",
    );
    one_error(
        &r(
            "sub = \"X-User-Id\"",
            "sub = \"X-User-Id\", name = \"x_user_id\"",
        ),
        "headers.forward_claims.sub",
        "already used",
    );
    one_error(
        &r(
            "forward_claims",
            "strip = [\"Content-Length\"]\nforward_claims",
        ),
        "headers.strip",
        "needed to route",
    );
    one_error(
        &r("name = \"api\"", "name = \"a p i\""),
        "routes[0].name",
        "metric label",
    );
    one_error(
        &r("path_prefix = \"/api\"", "path_prefix = \"api\""),
        "routes[0].path_prefix",
        "absolute path",
    );
    one_error(
        &r("path_prefix = \"/api\"", "path_prefix = \"/a/../api\""),
        "routes[0].path_prefix",
        "not normalized",
    );
    one_error(
        &r(
            "path_prefix = \"/api\"",
            "path_prefix = \"/api\"\npath = \"/x\"",
        ),
        "routes[0].path_prefix",
        "exactly one",
    );
    one_error(
        &r(
            "path_prefix = \"/api\"",
            "path_prefix = \"/api\"\nhost = \"Admin.Example.com\"",
        ),
        "routes[0].host",
        "lowercase",
    );
    one_error(
        &r(
            "path_prefix = \"/api\"",
            "path_prefix = \"/api\"\nhost = \"*.*.example.com\"",
        ),
        "routes[0].host",
        "lowercase",
    );
    one_error(
        &r(
            "path_prefix = \"/api\"",
            "path_prefix = \"/api\"\nmethods = [\"get\"]",
        ),
        "routes[0].methods",
        "uppercase",
    );
    one_error(
        &r(
            "path_prefix = \"/api\"",
            "path_prefix = \"/api\"\nmethods = []",
        ),
        "routes[0].methods",
        "must not be empty",
    );
    one_error(
        &r(
            "path_prefix = \"/api\"",
            "path_prefix = \"/api\"\nproviders = [\"nope\"]",
        ),
        "routes[0].providers",
        "unknown provider",
    );
    one_error(
        &r(
            "path_prefix = \"/api\"",
            "path_prefix = \"/api\"\nauth = \"none\"\nrequire_scopes = [\"a\"]",
        ),
        "routes[0].auth",
        "never looks at tokens",
    );
    one_error(
        &r(
            "path_prefix = \"/api\"",
            "path_prefix = \"/api\"\nrequire_scopes = [\"a b\"]",
        ),
        "routes[0].require_scopes",
        "single scope",
    );
    one_error(
        &format!("{b}[[routes]]\nname = \"api\"\npath = \"/x\"\nupstream = \"up\"\n"),
        "routes[1].name",
        "already the name",
    );
    one_error(
        &format!("{b}[[routes]]\nname = \"api2\"\npath_prefix = \"/api/\"\nupstream = \"up\"\n"),
        "routes[1]",
        "same specificity",
    );
    one_error(
        &r("[providers.corp]", "[providers.corp]\nscope = 1"),
        "scope",
        "unknown field",
    );
}

#[test]
fn discovery_is_a_key_source() {
    let b = base();
    let disc = b.replace(
        &format!("jwks_file = \"{FIX}/jwks.json\""),
        "discovery = true",
    );
    assert!(load_str(&disc, Path::new("t.toml")).is_ok(), "https issuer");
    let http = disc.replace(
        "issuer = \"https://corp\"",
        "issuer = \"http://corp.example.com\"",
    );
    one_error(&http, "providers.corp.discovery", "plain http");
    let both = b.replace("[providers.corp]\n", "[providers.corp]\ndiscovery = true\n");
    one_error(&both, "providers.corp.jwks_url", "exactly one");
}

#[test]
fn jwks_ca_file_is_checked() {
    let b = base();
    let tls = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls");
    let url = b.replace(
        &format!("jwks_file = \"{FIX}/jwks.json\""),
        "jwks_url = \"https://idp.example.com/jwks\"",
    );
    let with_ca = |file: &str| {
        url.replace(
            "[providers.corp]\n",
            &format!("[providers.corp]\njwks_ca_file = \"{file}\"\n"),
        )
    };
    assert!(load_str(&with_ca(&format!("{tls}/ca.pem")), Path::new("t.toml")).is_ok());
    one_error(
        &with_ca(&format!("{FIX}/jwks.json")),
        "providers.corp.jwks_ca_file",
        "no PEM certificate",
    );
    one_error(
        &with_ca("/nonexistent/ca.pem"),
        "providers.corp.jwks_ca_file",
        "cannot read",
    );
    let file_source = b.replace(
        "[providers.corp]\n",
        &format!("[providers.corp]\njwks_ca_file = \"{tls}/ca.pem\"\n"),
    );
    one_error(&file_source, "providers.corp.jwks_ca_file", "only applies");
}

#[test]
fn refresh_bounds() {
    let b = base();
    let with = |extra: &str| {
        b.replace(
            "[providers.corp]\n",
            &format!("[providers.corp]\n{extra}\n"),
        )
    };
    one_error(
        &with("jwks_min_refresh = \"10m\""),
        "providers.corp.jwks_min_refresh",
        "at most jwks_refresh",
    );
    one_error(
        &with("jwks_min_refresh = \"0s\""),
        "providers.corp.jwks_min_refresh",
        "at least 1s",
    );
    one_error(
        &with("jwks_max_stale = \"1m\""),
        "providers.corp.jwks_max_stale",
        "longer than jwks_refresh",
    );
    one_error(
        &with("max_token_lifetime = \"0s\""),
        "providers.corp.max_token_lifetime",
        "between 1s and 365d",
    );
    // Issue 11: a short `jwks_refresh` alone builds (the floor follows it down); an explicit
    // floor above it says how to fix it.
    let c = load_str(&with("jwks_refresh = \"5s\""), Path::new("t.toml")).unwrap();
    assert_eq!(
        c.providers[0].jwks_min_refresh,
        std::time::Duration::from_secs(5)
    );
    let c = load_str(&base(), Path::new("t.toml")).unwrap();
    assert_eq!(
        c.providers[0].jwks_min_refresh,
        std::time::Duration::from_secs(30)
    );
    one_error(
        &with("jwks_refresh = \"5s\"\njwks_min_refresh = \"10s\""),
        "providers.corp.jwks_min_refresh",
        "at most jwks_refresh (5s): lower it, or leave it unset",
    );
    one_error(
        &with("required_typ = \"at jwt\""),
        "providers.corp.required_typ",
        "media type",
    );
    let c = load_str(&with("jwks_min_refresh = \"5s\"\njwks_max_stale = \"1h\"\nrequired_typ = \"Application/AT+JWT\""), Path::new("t.toml")).unwrap();
    assert_eq!(c.providers[0].required_typ.as_deref(), Some("at+jwt"));
}

/// Issue 11: every duration is bounded at load, so none can overflow a clock at run time
/// (`Instant + jwks_refresh`, `shutdown_delay + shutdown_grace`) or mean "never".
#[test]
fn every_duration_is_bounded() {
    let b = base();
    let huge = "\"500000000000y\"";
    for (table, key, value, fragment) in [
        ("[server]", "shutdown_delay", huge, "at most 10m"),
        ("[server]", "header_read_timeout", huge, "between 1s and 1h"),
        (
            "[upstreams.up]",
            "connect_timeout",
            huge,
            "between 1ms and 1h",
        ),
        (
            "[upstreams.up]",
            "connect_timeout",
            "\"0s\"",
            "between 1ms and 1h",
        ),
        ("[upstreams.up]", "read_timeout", huge, "between 1ms and 1h"),
        (
            "[upstreams.up]",
            "write_timeout",
            huge,
            "between 1ms and 1h",
        ),
        (
            "[upstreams.up]",
            "idle_timeout",
            "\"0s\"",
            "between 1s and 1h",
        ),
        (
            "[providers.corp]",
            "jwks_refresh",
            huge,
            "between 1s and 30d",
        ),
        (
            "[providers.corp]",
            "jwks_max_stale",
            huge,
            "between 1s and 365d",
        ),
        (
            "[providers.corp]",
            "jwks_refetch_cooldown",
            huge,
            "between 100ms and 1h",
        ),
        (
            "[providers.corp]",
            "jwks_refetch_cooldown",
            "\"0s\"",
            "between 100ms and 1h",
        ),
        (
            "[providers.corp]",
            "max_token_lifetime",
            huge,
            "between 1s and 365d",
        ),
        ("[providers.corp]", "leeway", huge, "at most 10m"),
    ] {
        let text = b.replace(table, &format!("{table}\n{key} = {value}"));
        let table_key = table.trim_matches(['[', ']']);
        let wanted = match table {
            "[server]" if key == "shutdown_delay" => "server.shutdown_grace".to_owned(),
            _ => format!("{table_key}.{key}"),
        };
        one_error(&text, &wanted, fragment);
    }
    let text = b.replace(
        "[server]",
        &format!("[server]\nshutdown_delay = {huge}\nshutdown_grace = {huge}"),
    );
    one_error(&text, "server.shutdown_grace", "at most 10m");
}

#[test]
fn exact_paths_ignore_one_trailing_slash() {
    let b = base();
    let both = format!(
        "{b}[[routes]]\nname = \"a1\"\npath = \"/a\"\nupstream = \"up\"\n[[routes]]\nname = \"a2\"\npath = \"/a/\"\nupstream = \"up\"\n"
    );
    one_error(&both, "routes[2]", "exact path ignores one trailing slash");
    // Methods are tokens: uppercase and `-` are fine.
    let m = b.replace(
        "path_prefix = \"/api\"",
        "path_prefix = \"/api\"\nmethods = [\"M-SEARCH\", \"PURGE\"]",
    );
    assert!(load_str(&m, Path::new("t.toml")).is_ok());
}

#[test]
fn all_errors_are_reported_at_once() {
    let b = base()
        .replace("upstream = \"up\"\n", "upstream = \"down\"\n")
        .replace("audiences = [\"api\"]", "audiences = []")
        .replace("sub = \"X-User-Id\"", "sub = \"Host\"");
    assert!(errors(&b).len() >= 3, "{:#?}", errors(&b));
}

/// Introspection settings: what turns it on, client authentication (secrets and keys from
/// files only), the one-introspecting-provider-per-route rule, and the bounds.
#[test]
fn introspection_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "s3cret\n").unwrap();
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    let secret = secret.display().to_string();
    let b = base();
    let only = |extra: &str| {
        b.replace(
            &format!("jwks_file = \"{FIX}/jwks.json\"\nalgorithms = [\"RS256\"]"),
            &format!(
                "introspection_url = \"https://idp.example.com/introspect\"\nclient_id = \"gw\"\nclient_secret_file = \"{secret}\"\n{extra}"
            ),
        )
    };
    // Introspection only: no key source needed; every token of it is introspected.
    let c = load_str(&only(""), Path::new("t.toml")).unwrap();
    let p = &c.providers[0];
    assert!(p.introspect_jwts && matches!(p.key_source, crate::config::KeySource::None));
    let i = p.introspection.as_ref().unwrap();
    assert_eq!(
        i.client_auth,
        crate::config::ClientAuth::SecretBasic(b"s3cret".to_vec())
    );
    assert_eq!(i.token_type_hint.as_deref(), Some("access_token"));
    assert!(
        !format!("{:?}", c.providers).contains("s3cret"),
        "secrets stay out of Debug"
    );
    assert_eq!(
        c.routes.get(crate::config::RouteId::new(0)).introspection,
        Some(crate::config::ProviderId::new(0))
    );
    // With keys too: JWTs stay local unless introspect_jwts.
    let both = b.replace(
        "[providers.corp]\n",
        &format!("[providers.corp]\nintrospection_url = \"http://127.0.0.1:9/i\"\nclient_id = \"gw\"\nclient_secret_file = \"{secret}\"\n"),
    );
    let c = load_str(&both, Path::new("t.toml")).unwrap();
    assert!(!c.providers[0].introspect_jwts);
    let k = "providers.corp";
    one_error(
        &only("client_auth = \"client_secret_jwt\""),
        &format!("{k}.client_auth"),
        "is not client_secret_basic",
    );
    one_error(
        &only("").replace(&format!("client_secret_file = \"{secret}\"\n"), ""),
        &format!("{k}.client_secret_file"),
        "never inline",
    );
    one_error(
        &only("").replace(&secret, &empty.display().to_string()),
        &format!("{k}.client_secret_file"),
        "is empty",
    );
    one_error(
        &only("").replace("client_id = \"gw\"\n", ""),
        &format!("{k}.client_id"),
        "client_id",
    );
    one_error(
        &only("").replace("https://idp.example.com", "http://idp.example.com"),
        &format!("{k}.introspection_url"),
        "plain http",
    );
    one_error(
        &only("client_auth = \"private_key_jwt\""),
        &format!("{k}.client_secret_file"),
        "sends no secret",
    );
    let pkjwt = only("client_auth = \"private_key_jwt\"").replace(
        &format!("client_secret_file = \"{secret}\""),
        &format!("client_key_file = \"{FIX}/ec.pem\"\nclient_key_id = \"gw1\""),
    );
    let c = load_str(&pkjwt, Path::new("t.toml")).unwrap();
    match &c.providers[0].introspection.as_ref().unwrap().client_auth {
        crate::config::ClientAuth::PrivateKeyJwt { alg, kid, .. } => {
            assert_eq!(
                (*alg, kid.as_deref()),
                (jsonwebtoken::Algorithm::ES256, Some("gw1"))
            );
        }
        other => panic!("{other:?}"),
    }
    let rsa = pkjwt.replace("ec.pem", "rsa.pem");
    assert!(matches!(
        load_str(&rsa, Path::new("t.toml")).unwrap().providers[0]
            .introspection
            .as_ref()
            .unwrap()
            .client_auth,
        crate::config::ClientAuth::PrivateKeyJwt {
            alg: jsonwebtoken::Algorithm::RS256,
            ..
        }
    ));
    one_error(
        &pkjwt.replace("ec.pem", "jwks.json"),
        &format!("{k}.client_key_file"),
        "no RSA, EC",
    );
    // Settings that need introspection are errors without it.
    for key in [
        "client_id = \"gw\"",
        "introspect_jwts = true",
        "token_type_hint = \"x\"",
        "introspection_cache_ttl = \"1m\"",
        "introspection_max_in_flight = 8",
    ] {
        let text = b.replace("[providers.corp]\n", &format!("[providers.corp]\n{key}\n"));
        one_error(
            &text,
            &format!("{k}.{}", key.split(' ').next().unwrap()),
            "only applies",
        );
    }
    one_error(
        &only("introspection_signed_response = true"),
        &format!("{k}.introspection_signed_response"),
        "keys",
    );
    one_error(
        &only("introspection_timeout = \"0s\""),
        &format!("{k}.introspection_timeout"),
        "between",
    );
    one_error(
        &only("introspection_cache_ttl = \"2h\""),
        &format!("{k}.introspection_cache_ttl"),
        "between",
    );
    one_error(
        &only("introspection_cache_max_entries = 0"),
        &format!("{k}.introspection_cache_max_entries"),
        "between",
    );
    one_error(
        &only("introspection_max_in_flight = 0"),
        &format!("{k}.introspection_max_in_flight"),
        "between",
    );
    one_error(
        &only("token_type_hint = \"a b\""),
        &format!("{k}.token_type_hint"),
        "not a token type",
    );
    // Two introspecting providers on one route: an opaque token could not choose.
    let two = format!(
        "{}\n[providers.other]\nissuer = \"https://other\"\naudiences = [\"api\"]\nintrospection_url = \"https://other/i\"\nclient_id = \"gw\"\nclient_secret_file = \"{secret}\"\n",
        only("")
    );
    one_error(&two, "routes[0].providers", "both introspect");
    let listed = two.replace(
        "upstream = \"up\"",
        "upstream = \"up\"\nproviders = [\"corp\"]",
    );
    assert!(load_str(&listed, Path::new("t.toml")).is_ok());
}

#[test]
fn token_sources_and_csrf_are_checked() {
    let b = base();
    let with = |lines: &str| b.replace("upstream = \"up\"", &format!("upstream = \"up\"\n{lines}"));
    let c = load_str(
        &with("token_sources = [\"cookie:access_token\", \"header:X-Token\", \"authorization\"]\ncsrf = \"header:X-Requested-With\""),
        Path::new("t.toml"),
    )
    .unwrap();
    let route = c.routes.get(crate::config::RouteId::new(0));
    assert_eq!(route.token_sources.len(), 3);
    assert_eq!(
        route.csrf,
        crate::config::routes::Csrf::Header(http::HeaderName::from_static("x-requested-with"))
    );
    let key = "routes[0].token_sources";
    for (sources, fragment) in [
        ("[]", "at least one"),
        ("[\"query:token\"]", "is not \"authorization\""),
        ("[\"cookie:\"]", "not a cookie name"),
        ("[\"cookie:a b\"]", "not a cookie name"),
        ("[\"header:Authorization\"]", "write \"authorization\""),
        ("[\"header:Cookie\"]", "write \"authorization\""),
        ("[\"header:bad header\"]", "not a header name"),
        ("[\"authorization\", \"authorization\"]", "listed twice"),
    ] {
        one_error(&with(&format!("token_sources = {sources}")), key, fragment);
    }
    one_error(&with("csrf = \"off\""), "routes[0].csrf", "only applies");
    // A header a browser sends cross-site on its own proves nothing.
    for h in [
        "Content-Type",
        "Accept",
        "Origin",
        "Sec-Fetch-Site",
        "User-Agent",
        "Range",
    ] {
        one_error(
            &with(&format!(
                "token_sources = [\"cookie:at\"]\ncsrf = \"header:{h}\""
            )),
            "routes[0].csrf",
            "proves nothing",
        );
    }
    // A token header must not be one that carries something else.
    for h in [
        "Host",
        "Content-Length",
        "X-Forwarded-For",
        "X_Forwarded_Host",
        "Connection",
        "X-User-Id",
    ] {
        one_error(
            &with(&format!("token_sources = [\"header:{h}\"]")),
            key,
            "carries something else",
        );
    }
    one_error(
        &with("token_sources = [\"cookie:at\"]\ncsrf = \"lax\""),
        "routes[0].csrf",
        "is not \"same-origin\"",
    );
    let off = load_str(
        &with("token_sources = [\"cookie:at\"]\ncsrf = \"off\""),
        Path::new("t.toml"),
    )
    .unwrap();
    assert!(
        off.warnings.iter().any(|w| w.contains("csrf = \"off\"")),
        "{:?}",
        off.warnings
    );
    let none = b.replace(
        "upstream = \"up\"",
        "upstream = \"up\"\nauth = \"none\"\ntoken_sources = [\"cookie:at\"]",
    );
    one_error(&none, key, "never reads a token");
}

/// Issue 15: DPoP modes and tuning, public URLs, client certificates, trusted peers.
#[test]
fn sender_constraint_settings_are_checked() {
    let b = base();
    let provider = |extra: &str| {
        b.replace(
            "algorithms = [\"RS256\"]\n",
            &format!("algorithms = [\"RS256\"]\n{extra}\n"),
        )
    };
    let server = |extra: &str| {
        b.replace(
            "listen = \"127.0.0.1:0\"\n[admin]",
            &format!("listen = \"127.0.0.1:0\"\n{extra}\n[admin]"),
        )
    };
    one_error(
        &provider("dpop = \"on\""),
        "providers.corp.dpop",
        "\"on\" is not a mode",
    );
    one_error(
        &provider("dpop_algorithms = [\"HS256\"]"),
        "providers.corp.dpop_algorithms",
        "not an asymmetric algorithm",
    );
    one_error(
        &provider("dpop_algorithms = [\"none\"]"),
        "providers.corp.dpop_algorithms",
        "not an asymmetric algorithm",
    );
    one_error(
        &provider("dpop_algorithms = []"),
        "providers.corp.dpop_algorithms",
        "at least one",
    );
    one_error(
        &provider("dpop_max_age = \"1h\""),
        "providers.corp.dpop_max_age",
        "between 1s and 10m",
    );
    one_error(
        &provider("dpop = \"off\"\ndpop_nonce = true"),
        "providers.corp.dpop",
        "nothing to tune",
    );
    let c = load_str(
        &provider("dpop_algorithms = [\"EdDSA\", \"ES256\"]"),
        Path::new("t.toml"),
    )
    .unwrap();
    assert_eq!(
        c.routes
            .get(crate::config::RouteId::new(0))
            .dpop_algs
            .as_deref(),
        Some("ES256 EdDSA")
    );
    let c = load_str(&provider("dpop = \"off\""), Path::new("t.toml")).unwrap();
    assert_eq!(
        c.routes.get(crate::config::RouteId::new(0)).dpop_algs,
        None,
        "no DPoP offered"
    );

    one_error(
        &server("public_url = \"api.example.com\""),
        "server.public_url",
        "absolute",
    );
    one_error(
        &server("public_url = \"https://a/?x\""),
        "server.public_url",
        "query",
    );
    one_error(
        &server("public_url = \"https://u@a/\""),
        "server.public_url",
        "absolute",
    );
    one_error(
        &b.replace(
            "upstream = \"up\"\n",
            "upstream = \"up\"\npublic_url = \"ftp://a\"\n",
        ),
        "routes[0].public_url",
        "absolute",
    );
    let c = load_str(
        &server("public_url = \"https://API.example.com:443/v1/\""),
        Path::new("t.toml"),
    )
    .unwrap();
    assert_eq!(
        c.server.public_url.as_deref(),
        Some("https://api.example.com/v1")
    );
    let route = c.routes.get(crate::config::RouteId::new(0));
    assert_eq!(
        route.htu_base.as_deref(),
        Some("https://api.example.com/v1")
    );
    // A route for another host than the public URL's is warned about.
    let c = load_str(
        &server("public_url = \"https://api.example.com\"").replace(
            "path_prefix = \"/api\"",
            "path_prefix = \"/api\"\nhost = \"other.example.com\"",
        ),
        Path::new("t.toml"),
    )
    .unwrap();
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("set routes[0].public_url")),
        "{:?}",
        c.warnings
    );

    one_error(
        &server("trusted_client_cert_peers = [\"10.0.0.0/33\"]"),
        "server.trusted_client_cert_peers",
        "not an IP address or CIDR",
    );
    one_error(
        &server("trusted_client_cert_peers = [\"0.0.0.0/0\"]"),
        "server.trusted_client_cert_peers",
        "trusts every peer",
    );
    one_error(
        &server("trusted_client_cert_peers = [\"::/0\"]"),
        "server.trusted_client_cert_peers",
        "trusts every peer",
    );
    one_error(
        &server("trusted_client_cert_peers = [\"127.0.0.010/32\"]"),
        "server.trusted_client_cert_peers",
        "leading zero",
    );
    let split = load_str(
        &server("trusted_client_cert_peers = [\"0.0.0.0/1\", \"128.0.0.0/1\"]"),
        Path::new("t.toml"),
    )
    .unwrap();
    assert!(
        split
            .warnings
            .iter()
            .any(|w| w.contains("can claim any client certificate")),
        "{:?}",
        split.warnings
    );
    one_error(
        &server("trusted_client_cert_peers = [\"10.1.2.3/8\"]"),
        "server.trusted_client_cert_peers",
        "host bits set: write the network (10.0.0.0/8)",
    );
    let c = load_str(
        &server("trusted_client_cert_peers = [\"10.0.0.0/8\", \"::1\"]"),
        Path::new("t.toml"),
    )
    .unwrap();
    assert_eq!(
        c.server.trusted_client_cert_peers,
        vec![
            "10.0.0.0/8".parse::<ipnet::IpNet>().unwrap(),
            "::1/128".parse().unwrap()
        ]
    );
    one_error(
        &server("dpop_replay_max_entries = 10"),
        "server.dpop_replay_max_entries",
        "between 1000",
    );

    let tls = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls");
    let with_tls = |extra: &str| {
        server(&format!(
            "[server.tls]\ncert = \"{tls}/server.pem\"\nkey = \"{tls}/server.key\"\n{extra}"
        ))
    };
    one_error(
        &with_tls("client_auth = \"required\""),
        "server.tls.client_auth",
        "needs client_ca",
    );
    one_error(
        &with_tls(&format!(
            "client_ca = \"{tls}/client-ca.pem\"\nclient_auth = \"always\""
        )),
        "server.tls.client_auth",
        "not a mode",
    );
    one_error(
        &with_tls(&format!("client_ca = \"{tls}/nope.pem\"")),
        "server.tls.client_ca",
        "cannot read",
    );
    one_error(
        &with_tls(&format!("client_ca = \"{FIX}/hmac.secret\"")),
        "server.tls.client_ca",
        "no PEM certificate",
    );
    let c = load_str(
        &with_tls(&format!(
            "client_ca = \"{tls}/client-ca.pem\"\nclient_auth = \"required\""
        )),
        Path::new("t.toml"),
    )
    .unwrap();
    let t = c.server.tls.as_ref().unwrap();
    assert!(t.client_cert_required);
    assert_eq!(t.client_ca.as_ref().unwrap().certs.len(), 1);
}

/// Issue 16: `[store]`, the fleet store.
#[test]
fn the_store_is_checked() {
    let b = base();
    let store = |body: &str| format!("{b}[store]\n{body}\n");
    one_error(
        &store("redis_url = \"http://r:6379\""),
        "store.redis_url",
        "redis://",
    );
    one_error(
        &store("redis_url = \"redis://u:secret@r:6379\""),
        "store.redis_url",
        "password_file",
    );
    one_error(
        &store("redis_url = \"redis://default%3Asecret@r:6379\""),
        "store.redis_url",
        "password_file",
    );
    one_error(
        &store("redis_url = \"redis://r:6379/0?password=secret\""),
        "store.redis_url",
        "no query",
    );
    one_error(
        &store("redis_url = \"redis://user@secret@r:6379\""),
        "store.redis_url",
        "password_file",
    );
    one_error(
        &store("redis_url = \"redis://r:6379/SECRET\""),
        "store.redis_url",
        "database number",
    );
    one_error(
        &store("redis_url = \"redis://r:6379/0%3Fpassword=x\""),
        "store.redis_url",
        "database number",
    );
    one_error(
        &store(&format!(
            "redis_url = \"redis://r:6379\"\nca_file = \"{FIX}/../tls/ca.pem\""
        )),
        "store.ca_file",
        "rediss://",
    );
    one_error(
        &store("redis_url = \"redis://r:6379\"\npassword_file = \"/nonexistent\""),
        "store.password_file",
        "cannot read",
    );
    one_error(
        &store("redis_url = \"redis://r:6379\"\ntimeout = \"1h\""),
        "store.timeout",
        "between",
    );
    one_error(
        &store("redis_url = \"redis://r:6379\"\ndpop_replay_on_outage = \"open\""),
        "store.dpop_replay_on_outage",
        "not a policy",
    );
    let c = load_str(
        &store(&format!(
            "redis_url = \"rediss://authgate@r:6380/2\"\npassword_file = \"{FIX}/hmac.secret\"\nca_file = \"{FIX}/../tls/ca.pem\"\ndpop_replay_on_outage = \"local\""
        )),
        Path::new("t.toml"),
    )
    .unwrap();
    let s = c.store.as_ref().unwrap();
    assert!(s.dpop_local_on_outage && s.password.is_some() && s.ca.is_some());
    assert_eq!(s.timeout, std::time::Duration::from_millis(250));
    assert!(!format!("{s:?}").contains(s.password.as_deref().unwrap()));
    assert!(load_str(&b, Path::new("t.toml")).unwrap().store.is_none());
    assert_eq!(s.key_prefix, "authgate");
    assert_eq!(s.revocation_max_age, std::time::Duration::from_secs(300));
    assert!(!s.revocation_fail_open);
    one_error(
        &store("redis_url = \"redis://r\"\nkey_prefix = \"a b\""),
        "store.key_prefix",
        "characters",
    );
    one_error(
        &store("redis_url = \"redis://r\"\nrevocation_max_age = \"1s\""),
        "store.revocation_max_age",
        "between",
    );
    one_error(
        &store("redis_url = \"redis://r\"\nrevocation_without_copy = \"open\""),
        "store.revocation_without_copy",
        "fail_open",
    );
    // `revocation = "store"`: the one source, and only with a store to read.
    let with_source = |v: &str| {
        b.replace(
            "algorithms = [\"RS256\"]",
            &format!("algorithms = [\"RS256\"]\nrevocation = \"{v}\""),
        )
    };
    one_error(
        &with_source("store"),
        "providers.corp.revocation",
        "[store]",
    );
    one_error(
        &format!(
            "{}[store]\nredis_url = \"redis://r\"\n",
            with_source("redis")
        ),
        "providers.corp.revocation",
        "not a source",
    );
    let c = load_str(
        &format!(
            "{}[store]\nredis_url = \"redis://r\"\nkey_prefix = \"staging.authgate\"\nrevocation_max_age = \"1m\"\nrevocation_without_copy = \"fail_open\"\n",
            with_source("store")
        ),
        Path::new("t.toml"),
    )
    .unwrap();
    assert!(c.providers[0].revocation_store);
    let s = c.store.as_ref().unwrap();
    assert_eq!(
        (
            s.key_prefix.as_str(),
            s.revocation_max_age.as_secs(),
            s.revocation_fail_open
        ),
        ("staging.authgate", 60, true)
    );
}
