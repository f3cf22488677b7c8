//! Calls to a provider's RFC 7662 introspection endpoint: one per token at a time (single
//! flight), at most `max_in_flight` at once, each within `timeout`; answers go to the
//! provider's `IntrospectionCache`, where `decide` finds them.
//!
//! A call that fails (endpoint down, slow, an error status, an answer that is not one) gives
//! no answer: the request is refused 503 `introspection_unavailable`, never let in and never
//! told its token is bad. Failures are not cached; the next request asks again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use jsonwebtoken::{EncodingKey, Header};
use prometheus::{Histogram, IntCounter};
use tokio::sync::{OnceCell, Semaphore};

use super::unix_now;
use crate::auth::cache::{TokenCache, TokenKey};
use crate::auth::introspection::{IntrospectionCache, Lookup};
use crate::auth::keystore::{ProviderKeys, FETCH_TIMEOUT};
use crate::auth::validate::verify_signed;
use crate::auth::{Context, Reject};
use crate::config::{
    ClientAuth, IntrospectionEndpoint, IntrospectionSettings, ProviderId, ProviderSettings,
};
use crate::formats::introspection::{self, Answer, MAX_ANSWER_BYTES};
use crate::formats::{discovery_url, media_type, metadata_url};
use crate::metrics::Metrics;

/// RFC 9701 media type of a signed answer.
const SIGNED: &str = "application/token-introspection+jwt";
/// How long a discovered endpoint is used before the metadata is read again.
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);
/// Lifetime of a `private_key_jwt` client assertion.
const ASSERTION_LIFETIME: u64 = 60;

/// Why a call gave no answer: the `result` label of `authgate_introspection_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Timeout,
    Unreachable,
    BadStatus,
    BadResponse,
    /// The gateway's side cannot make the call (a CA or client key it cannot use).
    Misconfigured,
}

impl Failure {
    pub const fn label(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Unreachable => "unreachable",
            Self::BadStatus => "bad_status",
            Self::BadResponse => "bad_response",
            Self::Misconfigured => "misconfigured",
        }
    }
}

/// What went wrong with a call, for its log line (the metric counts the `Failure`). Never
/// holds the token: transport errors are taken without their URL.
#[derive(Debug, thiserror::Error)]
enum Problem {
    #[error("request failed: {0}")]
    Request(reqwest::Error),
    #[error("HTTP status {0}")]
    Status(reqwest::StatusCode),
    #[error("answer larger than {MAX_ANSWER_BYTES} bytes")]
    TooLarge,
    #[error("no answer within introspection_timeout ({0:?})")]
    Timeout(Duration),
    #[error("discovery: {0}")]
    Discovery(String),
    #[error("a signed answer was asked for, and this is not one")]
    NotSigned,
    #[error("signed answer is not text")]
    NotText,
    #[error("signed answer: {0}")]
    Signature(&'static str),
    #[error("signed answer's typ is not token-introspection+jwt")]
    Typ,
    #[error("signed answer's iss is not the provider's issuer")]
    Issuer,
    #[error("signed answer's aud is not this gateway's client_id")]
    Audience,
    #[error("signed answer has expired")]
    Expired,
    #[error("signed answer's iat is missing or not recent")]
    Stale,
    #[error(transparent)]
    Answer(#[from] introspection::BadAnswer),
}

type Flight = Arc<OnceCell<Option<Lookup>>>;

/// One provider's introspection client and answer cache. Kept across reloads while its
/// settings stay the same.
pub struct Introspector {
    pub settings: Arc<IntrospectionSettings>,
    provider: String,
    pub cache: IntrospectionCache,
    /// `None`: the client could not be built (a bad CA); every call fails.
    client: Option<reqwest::Client>,
    /// `private_key_jwt`'s key, parsed once.
    signing_key: Option<EncodingKey>,
    flights: Mutex<HashMap<TokenKey, Flight>>,
    slots: Semaphore,
    /// The endpoint found by discovery, and when.
    discovered: tokio::sync::Mutex<Option<(String, Instant)>>,
    metrics: Arc<Metrics>,
    lookups: [IntCounter; 3],
    duration: Histogram,
}

/// Removes a flight from the map when its last waiter leaves (answered, or cancelled with
/// its request), so the map holds only calls in progress.
struct Leave<'a> {
    flights: &'a Mutex<HashMap<TokenKey, Flight>>,
    key: TokenKey,
    flight: Flight,
}

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        let mut map = self.flights.lock().unwrap_or_else(|e| e.into_inner());
        if map
            .get(&self.key)
            .is_some_and(|f| Arc::ptr_eq(f, &self.flight))
            && (self.flight.initialized() || Arc::strong_count(&self.flight) <= 2)
        {
            map.remove(&self.key);
        }
    }
}

impl Introspector {
    pub fn new(
        provider: &ProviderSettings,
        settings: Arc<IntrospectionSettings>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let client = client(&settings)
            .map_err(|e| tracing::error!(provider = %provider.name, error = %e, "cannot build the introspection client (introspection_ca_file?); introspected tokens get 503"))
            .ok();
        let signing_key = signing_key(&settings.client_auth);
        if matches!(settings.client_auth, ClientAuth::PrivateKeyJwt { .. }) && signing_key.is_none()
        {
            tracing::error!(provider = %provider.name, "cannot use client_key_file; introspected tokens get 503");
        }
        let lookup = |r: &str| {
            metrics
                .introspection_cache_lookups
                .with_label_values(&[&provider.name, r])
        };
        Self {
            provider: provider.name.clone(),
            cache: IntrospectionCache::new(&settings),
            client,
            signing_key,
            flights: Mutex::new(HashMap::new()),
            slots: Semaphore::new(settings.max_in_flight),
            discovered: tokio::sync::Mutex::new(None),
            lookups: [lookup("hit"), lookup("inactive_hit"), lookup("miss")],
            duration: metrics
                .introspection_duration
                .with_label_values(&[&provider.name]),
            settings,
            metrics,
        }
    }

    /// The cached answer for `key`, counted as a lookup.
    pub fn lookup(&self, key: &TokenKey) -> Option<Lookup> {
        let found = self.cache.get(key);
        let i = match &found {
            Some(Lookup::Active(_)) => 0,
            Some(Lookup::Inactive) => 1,
            None => 2,
        };
        self.lookups[i].inc();
        found
    }

    /// The endpoint's answer for `token`: cached, or from one call shared by every request
    /// that asks for the same token meanwhile. `None`: no answer (the call failed).
    pub async fn introspect(
        &self,
        token: &str,
        keys: &ProviderKeys,
        provider: &ProviderSettings,
    ) -> Option<Lookup> {
        let key = TokenCache::key(token);
        if let Some(found) = self.cache.get(&key) {
            return Some(found);
        }
        // The waiter's only handle on the flight is its `Leave`: the map's and the waiters'
        // are then all there is, and the last to leave sees a count of 2.
        let leave = Leave {
            flights: &self.flights,
            key,
            flight: {
                let mut map = self.flights.lock().unwrap_or_else(|e| e.into_inner());
                map.entry(key).or_default().clone()
            },
        };
        leave
            .flight
            .get_or_init(|| self.call(token, key, keys, provider))
            .await
            .clone()
    }

    /// Calls in progress (for tests: the map must not keep abandoned ones).
    pub fn flights(&self) -> usize {
        self.flights.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    async fn call(
        &self,
        token: &str,
        key: TokenKey,
        keys: &ProviderKeys,
        provider: &ProviderSettings,
    ) -> Option<Lookup> {
        let started = Instant::now();
        let asked = tokio::time::timeout(self.settings.timeout, async {
            let _slot = self
                .slots
                .acquire()
                .await
                .map_err(|_| Failure::Misconfigured)?;
            self.ask(token, keys, provider).await
        })
        .await
        .unwrap_or_else(|_| {
            Err(self.failed(Failure::Timeout, &Problem::Timeout(self.settings.timeout)))
        });
        self.duration.observe(started.elapsed().as_secs_f64());
        let result = match &asked {
            Ok(Answer::Active(_)) => "active",
            Ok(Answer::Inactive) => "inactive",
            Err(f) => f.label(),
        };
        self.metrics
            .introspection_requests
            .with_label_values(&[&self.provider, result])
            .inc();
        match asked {
            Ok(Answer::Active(claims)) => {
                let claims = Arc::new(claims);
                self.cache.insert_active(key, claims.clone(), unix_now());
                Some(Lookup::Active(claims))
            }
            Ok(Answer::Inactive) => {
                self.cache.insert_inactive(key);
                Some(Lookup::Inactive)
            }
            Err(_) => None,
        }
    }

    /// One call: the endpoint's answer.
    async fn ask(
        &self,
        token: &str,
        keys: &ProviderKeys,
        provider: &ProviderSettings,
    ) -> Result<Answer, Failure> {
        let s = &self.settings;
        let client = self.client.as_ref().ok_or(Failure::Misconfigured)?;
        let endpoint = self.endpoint(client).await?;
        let (req, body) = self.request(client, &endpoint, token)?;
        let accept = if s.signed_response {
            SIGNED
        } else {
            "application/json"
        };
        let resp = req
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, accept)
            .body(body)
            .send()
            .await
            .map_err(|e| self.failed(Failure::Unreachable, &Problem::Request(e.without_url())))?;
        if resp.status() != reqwest::StatusCode::OK {
            return Err(self.failed(Failure::BadStatus, &Problem::Status(resp.status())));
        }
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| media_type(v.split(';').next().unwrap_or_default().trim()))
            .unwrap_or_default();
        let body = read_body(resp)
            .await
            .map_err(|e| self.failed(Failure::BadResponse, &e))?;
        let answer = if !s.signed_response {
            introspection::parse(&body).map_err(Problem::from)
        } else if content_type != "token-introspection+jwt" {
            Err(Problem::NotSigned)
        } else {
            self.signed_answer(&body, keys, provider).await
        }
        .map_err(|e| self.failed(Failure::BadResponse, &e))?;
        Ok(answer)
    }

    /// The call's request with client authentication, and its form body.
    fn request(
        &self,
        client: &reqwest::Client,
        endpoint: &str,
        token: &str,
    ) -> Result<(reqwest::RequestBuilder, String), Failure> {
        let s = &self.settings;
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("token", token);
        if let Some(hint) = &s.token_type_hint {
            form.append_pair("token_type_hint", hint);
        }
        let mut req = client.post(endpoint);
        match &s.client_auth {
            ClientAuth::SecretBasic(secret) => {
                // RFC 6749 §2.3.1: both parts form-encoded before the Basic encoding.
                let enc = |b: &[u8]| form_urlencoded::byte_serialize(b).collect::<String>();
                let pair = format!("{}:{}", enc(s.client_id.as_bytes()), enc(secret));
                req = req.header(AUTHORIZATION, format!("Basic {}", STANDARD.encode(pair)));
            }
            ClientAuth::SecretPost(secret) => {
                form.append_pair("client_id", &s.client_id);
                form.append_pair("client_secret", &String::from_utf8_lossy(secret));
            }
            ClientAuth::PrivateKeyJwt { alg, kid, .. } => {
                let key = self.signing_key.as_ref().ok_or(Failure::Misconfigured)?;
                let assertion = assertion(&s.client_id, endpoint, key, *alg, kid.as_deref())
                    .map_err(|e| {
                        tracing::error!(provider = %self.provider, error = %e, "cannot sign the client assertion");
                        Failure::Misconfigured
                    })?;
                form.append_pair("client_id", &s.client_id);
                form.append_pair(
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                );
                form.append_pair("client_assertion", &assertion);
            }
        }
        Ok((req, form.finish()))
    }

    /// Verifies an RFC 9701 answer: signed by the provider's keys, `typ`
    /// `token-introspection+jwt`, issued by the provider for this client, and recent.
    async fn signed_answer(
        &self,
        body: &[u8],
        keys: &ProviderKeys,
        provider: &ProviderSettings,
    ) -> Result<Answer, Problem> {
        let jws = std::str::from_utf8(body)
            .map_err(|_| Problem::NotText)?
            .trim();
        let mut verified = verify_signed(jws, keys, provider);
        if matches!(verified, Err(Reject::UnknownKid)) {
            // The provider signs with a key published after our last fetch (it rotated):
            // one refetch, as for a JWT with an unknown `kid` (at most one per
            // `jwks_refetch_cooldown`), within this call's time limit; then once more.
            keys.refetch_and_wait(self.settings.timeout).await;
            verified = verify_signed(jws, keys, provider);
        }
        let (typ, mut claims) = verified.map_err(|r| Problem::Signature(r.description()))?;
        if typ.as_deref() != Some("token-introspection+jwt") {
            return Err(Problem::Typ);
        }
        if claims.get("iss").and_then(|v| v.as_str()) != Some(provider.issuer.as_str()) {
            return Err(Problem::Issuer);
        }
        let aud_ok = match claims.get("aud") {
            Some(serde_json::Value::String(a)) => *a == self.settings.client_id,
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .any(|v| v.as_str() == Some(&self.settings.client_id)),
            _ => false,
        };
        if !aud_ok {
            return Err(Problem::Audience);
        }
        // An answer past its own `exp` (if it has one) is no answer.
        let now = unix_now();
        if let Some(exp) = claims.get("exp").and_then(serde_json::Value::as_f64) {
            if exp + provider.leeway.as_secs_f64() < now {
                return Err(Problem::Expired);
            }
        }
        // A replayed old answer must not revive a token: `iat` within the leeway and the
        // call's own time limit.
        let slack = provider.leeway.as_secs_f64() + self.settings.timeout.as_secs_f64();
        match claims.get("iat").and_then(serde_json::Value::as_f64) {
            Some(iat) if (now - slack..=now + slack).contains(&iat) => {}
            _ => return Err(Problem::Stale),
        }
        claims.remove("aud");
        Ok(introspection::from_signed_claims(claims)?)
    }

    fn failed(&self, f: Failure, error: &Problem) -> Failure {
        // Never the token: the error text comes from the transport or the status line.
        tracing::warn!(provider = %self.provider, result = f.label(), %error, "introspection failed; requests with this token get 503");
        f
    }

    /// The endpoint URL: configured, or read from the issuer's metadata (and re-read every
    /// hour).
    async fn endpoint(&self, client: &reqwest::Client) -> Result<String, Failure> {
        let issuer = match &self.settings.endpoint {
            IntrospectionEndpoint::Url(u) => return Ok(u.clone()),
            IntrospectionEndpoint::Discovery(issuer) => issuer,
        };
        let mut found = self.discovered.lock().await;
        if let Some((url, at)) = &*found {
            if at.elapsed() < DISCOVERY_TTL {
                return Ok(url.clone());
            }
        }
        let url = discover(client, issuer)
            .await
            .map_err(|e| self.failed(Failure::Unreachable, &e))?;
        *found = Some((url.clone(), Instant::now()));
        Ok(url)
    }
}

/// `introspection_endpoint` from the issuer's metadata, after the same checks as for
/// `jwks_uri`: the metadata names this issuer, the URL is https (or loopback), and https
/// when the issuer is.
async fn discover(client: &reqwest::Client, issuer: &str) -> Result<String, Problem> {
    let resp = client
        .get(discovery_url(issuer))
        .timeout(FETCH_TIMEOUT)
        .send()
        .await
        .map_err(|e| Problem::Request(e.without_url()))?;
    if !resp.status().is_success() {
        return Err(Problem::Status(resp.status()));
    }
    let body = read_body(resp).await?;
    metadata_url(&body, issuer, "introspection_endpoint").map_err(Problem::Discovery)
}

async fn read_body(mut resp: reqwest::Response) -> Result<Vec<u8>, Problem> {
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| Problem::Request(e.without_url()))?
    {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(Problem::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An RFC 7523 client assertion for `aud` (the endpoint called): `iss` = `sub` = the client
/// id, a random `jti`, valid for a minute.
fn assertion(
    client_id: &str,
    aud: &str,
    key: &EncodingKey,
    alg: jsonwebtoken::Algorithm,
    kid: Option<&str>,
) -> Result<String, jsonwebtoken::errors::Error> {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    let now = unix_now() as u64;
    let jti: [u8; 16] = rand::random();
    let claims = serde_json::json!({
        "iss": client_id,
        "sub": client_id,
        "aud": aud,
        "jti": URL_SAFE_NO_PAD.encode(jti),
        "iat": now,
        "exp": now + ASSERTION_LIFETIME,
    });
    jsonwebtoken::encode(&header, &claims, key)
}

/// The `private_key_jwt` signing key, parsed once (the config checked that it signs).
fn signing_key(auth: &ClientAuth) -> Option<EncodingKey> {
    let ClientAuth::PrivateKeyJwt { pem, alg, .. } = auth else {
        return None;
    };
    match alg {
        jsonwebtoken::Algorithm::ES256 | jsonwebtoken::Algorithm::ES384 => {
            EncodingKey::from_ec_pem(pem)
        }
        jsonwebtoken::Algorithm::EdDSA => EncodingKey::from_ed_pem(pem),
        _ => EncodingKey::from_rsa_pem(pem),
    }
    .ok()
}

/// No redirects (the token would follow them), the call's own time limit, a private CA
/// where configured.
fn client(s: &IntrospectionSettings) -> Result<reqwest::Client, reqwest::Error> {
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(s.timeout)
        .user_agent(concat!("authgate/", env!("CARGO_PKG_VERSION")));
    if let Some(pem) = &s.ca {
        for cert in reqwest::Certificate::from_pem_bundle(pem)? {
            b = b.add_root_certificate(cert);
        }
    }
    b.build()
}

/// A context that knows one answer just fetched, for the decision made again after the
/// call (the cache may not have kept it: TinyLFU admission, a zero `cache_ttl`).
pub struct WithAnswer<'a, C: Context + ?Sized> {
    pub inner: &'a C,
    pub provider: ProviderId,
    pub key: TokenKey,
    pub answer: Option<Lookup>,
}

impl<C: Context + ?Sized> Context for WithAnswer<'_, C> {
    fn config(&self) -> &crate::config::Config {
        self.inner.config()
    }
    fn keys(&self, provider: ProviderId) -> &ProviderKeys {
        self.inner.keys(provider)
    }
    fn revocations(
        &self,
        provider: ProviderId,
    ) -> Option<&dyn crate::formats::revocation::Revocations> {
        self.inner.revocations(provider)
    }
    fn token_cache(&self) -> Option<&TokenCache> {
        self.inner.token_cache()
    }
    fn dpop(&self) -> Option<&crate::auth::dpop::DpopState> {
        self.inner.dpop()
    }
    fn introspection(&self, provider: ProviderId, token: &TokenKey) -> Option<Lookup> {
        if provider == self.provider && *token == self.key {
            return self.answer.clone();
        }
        self.inner.introspection(provider, token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;

    /// An endpoint that accepts and never answers: every call hangs until its timeout.
    async fn silent() -> (tokio::net::TcpListener, String) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/introspect", l.local_addr().unwrap());
        (l, url)
    }

    fn provider(url: &str, dir: &std::path::Path) -> ProviderSettings {
        let secret = dir.join("secret");
        std::fs::write(&secret, "s").unwrap();
        let text = format!(
            "[upstreams.up]\nurl = \"http://127.0.0.1:9\"\n[providers.idp]\nissuer = \"https://idp\"\naudiences = [\"api\"]\nintrospection_url = \"{url}\"\nclient_id = \"gw\"\nclient_secret_file = {:?}\nintrospection_timeout = \"5s\"\n[[routes]]\nname = \"r\"\npath_prefix = \"/\"\nupstream = \"up\"\n",
            secret.display().to_string()
        );
        let config = load_str(&text, std::path::Path::new("t.toml")).unwrap();
        config.providers[0].clone()
    }

    /// Requests that give up (the client left) leave no flight behind, whether one waited
    /// alone or several shared the call; a request that comes later starts a new call.
    #[tokio::test]
    async fn abandoned_calls_leave_no_flight() {
        let dir = tempfile::tempdir().unwrap();
        let (_listener, url) = silent().await;
        let p = provider(&url, dir.path());
        let i = Introspector::new(
            &p,
            p.introspection.clone().unwrap(),
            Arc::new(Metrics::new()),
        );
        let keys = ProviderKeys::new(&p, None);
        let give_up = Duration::from_millis(100);
        let alone = tokio::time::timeout(give_up, i.introspect("t1", &keys, &p)).await;
        assert!(alone.is_err(), "the endpoint never answers");
        assert_eq!(i.flights(), 0, "a lone abandoned call is forgotten");
        let (a, b) = tokio::join!(
            tokio::time::timeout(give_up, i.introspect("t2", &keys, &p)),
            tokio::time::timeout(give_up * 2, i.introspect("t2", &keys, &p)),
        );
        assert!(a.is_err() && b.is_err());
        assert_eq!(i.flights(), 0, "shared and abandoned by all");
    }
}
