//! `authgate demo`: a development issuer (fresh RSA, EC and Ed25519 keys, JWKS over HTTP), an
//! echo upstream, and the gateway in front of it with `config/demo.toml`, plus ready-to-paste
//! `curl` lines. Nothing outside this process is needed.

pub mod echo;
pub mod issuer;

use std::path::Path;
use std::sync::Arc;

use serde_json::json;

use authgate::config::{load_str, ConfigErrors};
use authgate::{control_runtime, run, Ready, RunOptions, StartError};
use issuer::DevIssuer;

/// The demo config, compiled in so the demo runs from any directory.
pub const DEMO_CONFIG: &str = include_str!("../config/demo.toml");
const ISSUER_ADDR: &str = "127.0.0.1:18001";
const ECHO_ADDR: &str = "127.0.0.1:18000";

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("embedded demo config is invalid:\n{0}")]
    Config(ConfigErrors),
    #[error("cannot generate demo keys: {0}")]
    Keys(String),
    #[error(transparent)]
    Start(#[from] StartError),
}

/// Runs the demo until Ctrl-C.
pub fn run_demo() -> Result<(), DemoError> {
    let config = load_str(DEMO_CONFIG, Path::new("config/demo.toml (embedded)"))
        .map_err(|e| DemoError::Config(ConfigErrors(e)))?;
    let provider = &config.providers[0];
    let issuer = Arc::new(DevIssuer::generate(&provider.issuer).map_err(DemoError::Keys)?);
    let rt = control_runtime()?;
    let (jwks_listener, echo_listener) = rt.block_on(async {
        let a = tokio::net::TcpListener::bind(ISSUER_ADDR).await;
        let b = tokio::net::TcpListener::bind(ECHO_ADDR).await;
        (a, b)
    });
    let bind_err = |addr: &str, source| StartError::Bind {
        what: "demo server",
        addr: addr.to_owned(),
        source,
    };
    rt.spawn(authgate::httpd::serve(
        jwks_listener.map_err(|e| bind_err(ISSUER_ADDR, e))?,
        issuer.handler(),
    ));
    rt.spawn(authgate::httpd::serve(
        echo_listener.map_err(|e| bind_err(ECHO_ADDR, e))?,
        echo::handler(),
    ));

    let audience = provider.audiences[0].clone();
    let on_ready = Box::new(move |ready: Ready| print_guide(&issuer, &audience, ready));
    run(RunOptions {
        config,
        watch: None,
        control: Some(rt),
        on_ready: Some(on_ready),
        before_exit: None,
    })?;
    Ok(())
}

fn print_guide(issuer: &DevIssuer, aud: &str, ready: Ready) {
    let now = issuer::now();
    let base = |sub: &str, scope: &str| {
        json!({"iss": issuer.issuer(), "aud": aud, "sub": sub, "scope": scope, "iat": now, "exp": now + 3600,
               "org": {"id": "org-42", "tier": "silver"}})
    };
    let user = issuer.mint("rsa", &base("alice", "read"));
    let writer = issuer.mint("ec", &base("bob", "read write"));
    let mut admin_claims = base("carol", "read write admin");
    admin_claims["org"]["tier"] = json!("gold");
    let admin = issuer.mint("ed", &admin_claims);
    let mut expired = base("alice", "read");
    expired["iat"] = json!(now - 7200);
    expired["exp"] = json!(now - 3600);
    let expired = issuer.mint("rsa", &expired);
    let mut wrong_aud = base("alice", "read");
    wrong_aud["aud"] = json!("billing-api");
    let wrong_aud = issuer.mint("rsa", &wrong_aud);
    let p = ready.proxy;
    println!(
        r#"
authgate demo is running. Gateway http://{p}  admin http://{admin}  (Ctrl-C stops everything)
Issuer (JWKS) http://{ISSUER_ADDR}/jwks.json, echo upstream http://{ECHO_ADDR}.
Paste the TOKEN_* lines into your shell (names chosen not to clobber $USER), then the curls.

TOKEN_USER={user}
TOKEN_WRITER={writer}
TOKEN_ADMIN={admin_t}
TOKEN_EXPIRED={expired}
TOKEN_WRONG_AUD={wrong_aud}

# 200: public route, no token needed; a spoofed X-User-Id never reaches the upstream
curl -s http://{p}/public/hello -H 'X-User-Id: mallory'
# 401 (no error code): no token
curl -si http://{p}/api/orders
# 200: valid RS256 user token; the echo shows X-User-Id: alice, X-Scopes, X-Org-Id
curl -s http://{p}/api/orders -H "Authorization: Bearer $TOKEN_USER"
# 401 invalid_token: expired
curl -si http://{p}/api/orders -H "Authorization: Bearer $TOKEN_EXPIRED"
# 401 invalid_token: wrong audience
curl -si http://{p}/api/orders -H "Authorization: Bearer $TOKEN_WRONG_AUD"
# 403 insufficient_scope: DELETE needs scope "write", the user token has only "read"
curl -si -X DELETE http://{p}/api/orders/7 -H "Authorization: Bearer $TOKEN_USER"
# 200: the ES256 writer token has "write"
curl -s -X DELETE http://{p}/api/orders/7 -H "Authorization: Bearer $TOKEN_WRITER"
# 403: /admin needs scope "admin" and org.tier gold|platinum
curl -si http://{p}/admin/users -H "Authorization: Bearer $TOKEN_WRITER"
# 200: EdDSA admin token with org.tier=gold
curl -s http://{p}/admin/users -H "Authorization: Bearer $TOKEN_ADMIN"
# 404: no route (default deny); 400: a path that cannot be normalized safely
curl -si http://{p}/nowhere
curl -si --path-as-is 'http://{p}/public/..%2fadmin'
# metrics
curl -s http://{admin}/metrics | grep ^authgate_
"#,
        admin = ready.admin,
        admin_t = admin,
    );
}
