//! A real RFC 7662 introspection endpoint over HTTP: answers from a table the test fills,
//! checks the gateway's client authentication, and counts calls; its delay and failure
//! mode are set by the test (slow, error status, garbage).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use authgate::httpd::{respond, Handler};
use base64::Engine as _;

use super::listen;

pub const CLIENT_ID: &str = "authgate";
pub const CLIENT_SECRET: &str = "introspection secret: long, with spaces & symbols";

/// What the endpoint does with a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Answers from the table (`{"active":false}` for a token not in it).
    Answer,
    /// This status with a JSON error body.
    Status(u16),
    /// 200 with a body that is no answer.
    Garbage(String),
    /// 200 with this content type and body (an RFC 9701 signed answer, or not).
    Raw { content_type: String, body: String },
}

#[derive(Clone)]
pub struct Introspection {
    pub addr: SocketAddr,
    answers: Arc<Mutex<HashMap<String, serde_json::Value>>>,
    mode: Arc<Mutex<Mode>>,
    delay_ms: Arc<AtomicU64>,
    calls: Arc<AtomicUsize>,
    per_token: Arc<Mutex<HashMap<String, usize>>>,
    /// Form fields of the last call (the token excepted), and its `Authorization`.
    last: Arc<Mutex<Call>>,
    accept: Arc<Mutex<Option<String>>>,
}

/// One call's form fields (the token left out) and `Authorization`.
pub type Call = (Vec<(String, String)>, Option<String>);

impl Introspection {
    pub fn start() -> Self {
        let me = Self {
            addr: "127.0.0.1:0".parse().unwrap(),
            answers: Arc::default(),
            mode: Arc::new(Mutex::new(Mode::Answer)),
            delay_ms: Arc::default(),
            calls: Arc::default(),
            per_token: Arc::default(),
            last: Arc::default(),
            accept: Arc::default(),
        };
        let state = me.clone();
        let handler: Handler = Arc::new(move |parts, body| {
            let s = state.clone();
            Box::pin(async move {
                s.calls.fetch_add(1, Ordering::SeqCst);
                let wait = s.delay_ms.load(Ordering::SeqCst);
                if wait > 0 {
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                }
                *s.accept.lock().unwrap() = parts
                    .headers
                    .get("accept")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let auth = parts
                    .headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let form: Vec<(String, String)> = form_urlencoded::parse(&body)
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect();
                let token = form
                    .iter()
                    .find(|(k, _)| k == "token")
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default();
                *s.per_token
                    .lock()
                    .unwrap()
                    .entry(token.clone())
                    .or_default() += 1;
                *s.last.lock().unwrap() = (
                    form.iter().filter(|(k, _)| k != "token").cloned().collect(),
                    auth.clone(),
                );
                let expected = format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!(
                        "{}:{}",
                        CLIENT_ID,
                        form_urlencoded::byte_serialize(CLIENT_SECRET.as_bytes())
                            .collect::<String>()
                    ))
                );
                if parts.method != "POST" || auth.as_deref() != Some(expected.as_str()) {
                    return respond(401, "application/json", r#"{"error":"invalid_client"}"#);
                }
                match s.mode.lock().unwrap().clone() {
                    Mode::Status(code) => {
                        respond(code, "application/json", r#"{"error":"server_error"}"#)
                    }
                    Mode::Garbage(body) => respond(200, "application/json", body),
                    Mode::Raw { content_type, body } => respond(200, &content_type, body),
                    Mode::Answer => {
                        let answer = s
                            .answers
                            .lock()
                            .unwrap()
                            .get(&token)
                            .cloned()
                            .unwrap_or(serde_json::json!({ "active": false }));
                        respond(200, "application/json", answer.to_string())
                    }
                }
            })
        });
        Self {
            addr: listen(handler),
            ..me
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/oauth2/introspect", self.addr)
    }

    /// The answer for `token` (a JSON object with `active`).
    pub fn set(&self, token: &str, answer: serde_json::Value) {
        self.answers
            .lock()
            .unwrap()
            .insert(token.to_owned(), answer);
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    pub fn set_delay(&self, d: Duration) {
        self.delay_ms.store(d.as_millis() as u64, Ordering::SeqCst);
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub fn calls_for(&self, token: &str) -> usize {
        self.per_token
            .lock()
            .unwrap()
            .get(token)
            .copied()
            .unwrap_or(0)
    }

    /// The last call's `Accept`.
    pub fn accept(&self) -> Option<String> {
        self.accept.lock().unwrap().clone()
    }

    /// The last call's form fields (the token left out) and `Authorization`.
    pub fn last(&self) -> Call {
        self.last.lock().unwrap().clone()
    }
}

/// An active answer for `sub` with `scope`, issued by `issuer` for `aud`, valid `ttl` more
/// seconds.
pub fn active(issuer: &str, aud: &str, sub: &str, scope: &str, ttl: i64) -> serde_json::Value {
    let now = super::now();
    serde_json::json!({
        "active": true,
        "iss": issuer,
        "aud": aud,
        "sub": sub,
        "scope": scope,
        "client_id": "orders-client",
        "token_type": "Bearer",
        "iat": now,
        "exp": now + ttl,
    })
}
