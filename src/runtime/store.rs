//! The fleet store: Redis, shared by every replica, for what one process cannot know alone
//! (a DPoP proof used at another replica, a revocation written elsewhere).
//!
//! The plan for DPoP replay: `decide` stays pure and keeps its in-memory check (a replay to
//! the same replica is caught there, for free); a granted DPoP request carries its proof's
//! key and window, and the thin layer asks the store (`first_use`) once, then a pure function
//! of `auth` turns the answer into the final decision (a replay elsewhere, an outage under
//! the configured policy, report-only routes). One decision, one proof check: a `Pending`
//! step would decide twice and verify the proof's signature twice.
//!
//! One `redis` (redis-rs) `ConnectionManager`: a multiplexed connection that reconnects with
//! backoff, with a bounded command pipeline and no offline queue (a command while Redis is
//! away fails, it is never held or re-sent: a re-sent `SET NX` could read its own first write
//! as a replay). Every call also runs under the store's own deadline, which covers waiting
//! for a reconnect or a free slot too: the request path never waits on Redis longer than
//! `timeout`.
//!
//! Revocations (`revocations`) are read in the background on a connection of their own
//! (`bulk`, with a longer deadline): a large list must not hold up a proof's `SET NX` behind
//! it on the request path's connection. `authgate revoke` writes through `revoke`.

pub mod revocations;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::io::tcp::TcpSettings;
use redis::{Client, IntoConnectionInfo, TlsCertificates};

use crate::config::StoreConfig;
use crate::metrics::Metrics;

/// Why a store call has no answer. Never carries a password or a key's value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("the store did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    #[error("the store settings are unusable: {0}")]
    Misconfigured(String),
}

/// A connection to the store, cheap to clone (multiplexed connections underneath).
#[derive(Clone)]
pub struct Store {
    /// The request path's connection (proofs' `SET NX`).
    conn: Arc<Link>,
    /// Background reads and `authgate revoke`'s writes, under `BULK_TIMEOUT`.
    bulk: Arc<Link>,
    /// For the subscription connection of the revocation feed.
    client: Client,
    timeout: Duration,
    key_prefix: String,
    metrics: Arc<Metrics>,
    /// The revocation copies kept current, by provider (`revocations::StoreRevocations`).
    copies: Arc<Mutex<HashMap<String, Weak<revocations::StoreRevocations>>>>,
    /// Whether the feed task (the subscription) runs.
    feed: Arc<std::sync::Once>,
}

/// Where one provider's revocations live: a sorted set of `jti`s (scored by when they were
/// revoked, ms), a hash of subjects' cutoffs (ms), a version counter bumped by every write,
/// and the channel each write is published on. Provider names are labels
/// (`[A-Za-z0-9_.-]`), so one provider's keys never spell another's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationKeys {
    pub jti: String,
    pub sub: String,
    pub version: String,
    pub channel: String,
}

impl RevocationKeys {
    pub fn new(prefix: &str, provider: &str) -> Self {
        let base = format!("{prefix}:revocations:{provider}");
        Self {
            jti: format!("{base}:jti"),
            sub: format!("{base}:sub"),
            version: format!("{base}:version"),
            channel: base,
        }
    }

    /// The pattern every provider's channel matches, and the provider a channel is for.
    pub fn pattern(prefix: &str) -> String {
        format!("{prefix}:revocations:*")
    }

    pub fn provider_of<'a>(prefix: &str, channel: &'a str) -> Option<&'a str> {
        channel
            .strip_prefix(prefix)?
            .strip_prefix(":revocations:")
            .filter(|p| !p.contains(':'))
    }
}

/// What one revocation is: a token id, or every token of a subject issued before an instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revoke {
    Jti(String),
    Subject { sub: String, before_ms: i64 },
}

/// A provider's revocations as read from the store at one version.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct StoredRevocations {
    pub version: u64,
    /// `(jti, revoked at, ms)`, oldest first.
    pub jtis: Vec<(String, i64)>,
    /// `(sub, cutoff, ms)`.
    pub subjects: Vec<(String, i64)>,
    /// Entries left out because they do not read as revocations (a key of another type
    /// counts as one).
    pub unreadable: usize,
}

/// The `(id, ms)` pairs of a sorted set read with its scores or of a hash, leaving out (and
/// counting) what does not read: an id that is not UTF-8 (no token's claim is), an instant
/// that is not a number.
fn entries(part: redis::RedisResult<redis::Value>, unreadable: &mut usize) -> Vec<(String, i64)> {
    let pairs: Vec<(redis::Value, redis::Value)> =
        match part.and_then(|v| redis::from_redis_value(v).map_err(Into::into)) {
            Ok(pairs) => pairs,
            Err(_) => {
                *unreadable += 1;
                return Vec::new();
            }
        };
    let mut out = Vec::with_capacity(pairs.len());
    for (id, at) in pairs {
        let id = redis::from_redis_value::<Vec<u8>>(id)
            .ok()
            .and_then(|b| String::from_utf8(b).ok());
        let at = redis::from_redis_value::<f64>(at)
            .ok()
            .filter(|v| !v.is_nan());
        match (id, at) {
            (Some(id), Some(at)) => {
                out.push((id, at.clamp(i64::MIN as f64, i64::MAX as f64) as i64))
            }
            _ => *unreadable += 1,
        }
    }
    out
}

/// One write, atomic in Redis: the entry (a subject's cutoff only moves later), the
/// pruning of `jti`s revoked before ARGV[4] (when > 0: their tokens have expired), the new
/// version and the publication of `<version> <previous version> <kind> <ms> <id>`.
///
/// A version must not be used twice, even by a Redis that came back with older data (a
/// snapshot restored, a failover to a replica that missed the last writes), or a replica
/// holding the lost write's version would take its copy for current. It is the later of
/// the previous one + 1 and Redis's clock in microseconds, plus a random step from the
/// writer (ARGV[6], 1..=65536): a lost write and the next one share a version only if they
/// drew the same step, even when the stored version ran ahead of the clock. A version key
/// that does not hold a usable version (not a number, negative, past 2^52, where Lua's
/// doubles stop being exact after a step) fails the write before anything is written.
const REVOKE: &str = r#"
if redis.replicate_commands then pcall(redis.replicate_commands) end
local kind, id, at, prune = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local previous = tonumber(redis.call('GET', KEYS[3]) or '0')
if not previous or previous ~= previous or previous < 0 or previous > 4503599627370496 then
  return redis.error_reply(KEYS[3] .. ' does not hold a usable version: SET it to 0 (every replica then reads the list whole) and write again')
end
if kind == 'jti' then
  redis.call('ZADD', KEYS[1], at, id)
else
  local cur = redis.call('HGET', KEYS[2], id)
  if cur and tonumber(cur) >= at then
    return {0, string.format('%.0f', previous)}
  end
  redis.call('HSET', KEYS[2], id, at)
end
if prune > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. prune)
end
local now = redis.call('TIME')
local v = math.max(previous + 1, tonumber(now[1]) * 1000000 + tonumber(now[2])) + tonumber(ARGV[6])
local version, before = string.format('%.0f', v), string.format('%.0f', previous)
redis.call('SET', KEYS[3], version)
redis.call('PUBLISH', ARGV[5], version .. ' ' .. before .. ' ' .. kind .. ' ' .. ARGV[3] .. ' ' .. id)
return {1, version}
"#;

/// Deadline of background reads and of `authgate revoke`'s calls.
const BULK_TIMEOUT: Duration = Duration::from_secs(10);

/// Commands waiting for the connection at once; more fail at once (`Unavailable`).
const PIPELINE: usize = 256;
/// Commands in flight at once.
const IN_FLIGHT: usize = 512;

/// How many calls in a row may time out on one connection before it is replaced.
const SILENT_LIMIT: u32 = 2;
/// The shortest time between two replacements of one connection.
const RENEW_GAP: Duration = Duration::from_secs(1);

/// One of the store's connections, replaced when it stops answering.
///
/// `ConnectionManager` connects again when its connection breaks (a reset, a closed
/// socket), but not when it goes silent: a Redis behind a hung proxy or a dropped NAT entry
/// keeps a socket that never errs, and every call on it times out for as long as the
/// process runs. So calls that time out `SILENT_LIMIT` times in a row on the same
/// connection put a new one (a new socket, a new handshake) in its place, at most once per
/// `RENEW_GAP`; calls in flight on the old one end by their deadline.
struct Link {
    current: ArcSwap<ConnectionManager>,
    client: Client,
    config: ConnectionManagerConfig,
    /// Timeouts in a row on `current`.
    timeouts: AtomicU32,
    renewed: Mutex<Option<std::time::Instant>>,
}

impl Link {
    fn open(client: Client, config: ConnectionManagerConfig) -> redis::RedisResult<Arc<Self>> {
        let first = ConnectionManager::new_lazy_with_config(client.clone(), config.clone())?;
        Ok(Arc::new(Self {
            current: ArcSwap::from_pointee(first),
            client,
            config,
            timeouts: AtomicU32::new(0),
            renewed: Mutex::new(None),
        }))
    }

    fn answered(&self) {
        if self.timeouts.load(Ordering::Relaxed) != 0 {
            self.timeouts.store(0, Ordering::Relaxed);
        }
    }

    /// A call on `used` timed out: whether that replaced it.
    fn silent(&self, used: &Arc<ConnectionManager>) -> bool {
        if self.timeouts.fetch_add(1, Ordering::Relaxed) + 1 < SILENT_LIMIT {
            return false;
        }
        let mut renewed = self.renewed.lock().unwrap_or_else(|p| p.into_inner());
        if renewed.is_some_and(|t| t.elapsed() < RENEW_GAP)
            || !Arc::ptr_eq(&self.current.load(), used)
        {
            return false;
        }
        let Ok(fresh) =
            ConnectionManager::new_lazy_with_config(self.client.clone(), self.config.clone())
        else {
            return false;
        };
        self.current.store(Arc::new(fresh));
        self.timeouts.store(0, Ordering::Relaxed);
        *renewed = Some(std::time::Instant::now());
        tracing::warn!("a store connection stopped answering; connecting again");
        true
    }
}

impl Store {
    /// Opens the connection lazily: nothing is sent until the first call (a store that is
    /// down at start is an error of that call, not of the gateway's start). The connection's
    /// task runs on `rt`.
    pub fn open(
        settings: &StoreConfig,
        rt: &tokio::runtime::Handle,
        metrics: Arc<Metrics>,
    ) -> Result<Self, StoreError> {
        let _on = rt.enter();
        let bad = |e: redis::RedisError| StoreError::Misconfigured(e.to_string());
        let info = settings
            .redis_url
            .as_str()
            .into_connection_info()
            .map_err(bad)?;
        if info.redis_settings().password().is_some() {
            return Err(StoreError::Misconfigured(
                "the URL carries a password: put it in a file".to_owned(),
            ));
        }
        let mut redis = info.redis_settings().clone();
        if let Some(p) = &settings.password {
            redis = redis.set_password(p.clone());
        }
        let tcp = TcpSettings::default()
            .set_nodelay(true)
            .set_user_timeout(settings.timeout.max(Duration::from_secs(1)) * 3);
        let info = info.set_redis_settings(redis).set_tcp_settings(tcp);
        let client = match &settings.ca {
            Some(ca) => Client::build_with_tls(
                info,
                TlsCertificates {
                    client_tls: None,
                    root_cert: Some(ca.clone()),
                },
            ),
            None => Client::open(info),
        }
        .map_err(bad)?;
        let config = |timeout| {
            ConnectionManagerConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout))
                .set_number_of_retries(1)
                .set_min_delay(Duration::from_millis(100))
                .set_max_delay(Duration::from_secs(5))
                .set_pipeline_buffer_size(PIPELINE)
                .set_concurrency_limit(IN_FLIGHT)
        };
        let conn = Link::open(client.clone(), config(settings.timeout)).map_err(bad)?;
        let bulk = Link::open(client.clone(), config(BULK_TIMEOUT)).map_err(bad)?;
        Ok(Self {
            conn,
            bulk,
            client,
            timeout: settings.timeout,
            key_prefix: settings.key_prefix.clone(),
            metrics,
            copies: Arc::default(),
            feed: Arc::new(std::sync::Once::new()),
        })
    }

    pub fn key_prefix(&self) -> &str {
        &self.key_prefix
    }

    /// Writes one revocation for `provider` and publishes it to every replica: `(applied,
    /// version)`; not applied when the subject already has a later cutoff. With
    /// `prune_before_ms`, `jti`s revoked before it are dropped (their tokens have expired).
    pub async fn revoke(
        &self,
        provider: &str,
        what: &Revoke,
        now_ms: i64,
        prune_before_ms: Option<i64>,
    ) -> Result<(bool, u64), StoreError> {
        let keys = RevocationKeys::new(&self.key_prefix, provider);
        let (kind, id, at) = match what {
            Revoke::Jti(jti) => ("jti", jti.as_str(), now_ms),
            Revoke::Subject { sub, before_ms } => ("sub", sub.as_str(), *before_ms),
        };
        let script = redis::Script::new(REVOKE);
        let mut invocation = script.prepare_invoke();
        invocation
            .key(&keys.jti)
            .key(&keys.sub)
            .key(&keys.version)
            .arg(kind)
            .arg(id)
            .arg(at)
            .arg(prune_before_ms.unwrap_or(0))
            .arg(&keys.channel)
            .arg(rand::random_range(1..=65_536u32));
        let (applied, version): (i64, u64) = self
            .timed("revoke", &self.bulk, BULK_TIMEOUT, |mut c| {
                let invocation = &invocation;
                async move { invocation.invoke_async(&mut c).await }
            })
            .await?;
        Ok((applied == 1, version))
    }

    /// Every revocation of `provider`, read at one version (`MULTI`). An entry that does not
    /// read as one (written by hand: a cutoff that is not a number, an id that is not
    /// UTF-8, a key of another type) is left out and counted in `unreadable`: one bad entry
    /// must not keep every later revocation from being read.
    pub async fn read_revocations(&self, provider: &str) -> Result<StoredRevocations, StoreError> {
        let keys = RevocationKeys::new(&self.key_prefix, provider);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .get(&keys.version)
            .zrange_withscores(&keys.jti, 0, -1)
            .hgetall(&keys.sub)
            .ignore_errors();
        let parts: Vec<redis::RedisResult<redis::Value>> = self
            .timed("read_revocations", &self.bulk, BULK_TIMEOUT, |mut c| {
                let pipe = &pipe;
                async move { pipe.query_async(&mut c).await }
            })
            .await?;
        let [version, jtis, subjects] = <[_; 3]>::try_from(parts)
            .map_err(|p| StoreError::Unavailable(format!("a read of {} parts, not 3", p.len())))?;
        // The version is what every check compares: one that does not read is an error.
        let version: Option<u64> = version
            .and_then(|v| redis::from_redis_value(v).map_err(Into::into))
            .map_err(|e| {
                StoreError::Unavailable(format!("{} does not read as a version: {e}", keys.version))
            })?;
        let mut read = StoredRevocations {
            version: version.unwrap_or(0),
            ..StoredRevocations::default()
        };
        read.jtis = entries(jtis, &mut read.unreadable);
        read.subjects = entries(subjects, &mut read.unreadable);
        Ok(read)
    }

    /// The version of `provider`'s revocations (0: none written yet).
    pub async fn revocation_version(&self, provider: &str) -> Result<u64, StoreError> {
        let keys = RevocationKeys::new(&self.key_prefix, provider);
        let get = redis::cmd("GET").arg(&keys.version).clone();
        let v: Option<u64> = self
            .timed(
                "revocation_version",
                &self.bulk,
                BULK_TIMEOUT.min(self.timeout * 4),
                |mut c| {
                    let get = &get;
                    async move { get.query_async(&mut c).await }
                },
            )
            .await?;
        Ok(v.unwrap_or(0))
    }

    /// `SET key 1 NX PX ttl_ms`: `true` for the first writer of `key` within `ttl_ms`,
    /// `false` when it is already there. Atomic across every replica.
    pub async fn first_use(&self, key: &str, ttl_ms: u64) -> Result<bool, StoreError> {
        let cmd = redis::cmd("SET")
            .arg(key)
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms.max(1))
            .clone();
        let answer: Option<String> = self.call("first_use", cmd).await?;
        Ok(answer.is_some())
    }

    /// `PING`: whether the store answers now.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let _: String = self.call("ping", redis::cmd("PING").clone()).await?;
        Ok(())
    }

    /// One command on the request path's connection under the store's deadline, counted
    /// and timed as `op`.
    async fn call<T: redis::FromRedisValue>(
        &self,
        op: &'static str,
        cmd: redis::Cmd,
    ) -> Result<T, StoreError> {
        self.timed(op, &self.conn, self.timeout, |mut c| {
            let cmd = &cmd;
            async move { cmd.query_async::<T>(&mut c).await }
        })
        .await
    }

    /// `call`, for any command on either connection under any deadline. A connection that
    /// times out `SILENT_LIMIT` times in a row is replaced (`Link`). A call that finds its
    /// connection gone (refused: the last attempt to connect again failed while Redis was
    /// down; dropped: Redis closed it while it sat idle, or restarted) is made once more on a
    /// new one within the deadline, so the first call after Redis is back, or after an idle
    /// close, is answered. Such a call was not executed, but for one case: Redis executed it
    /// and died before answering. Then a proof's `SET NX` sent again finds its own first
    /// write and the proof is refused as a replay: a refusal, as the failure would be.
    async fn timed<T, F>(
        &self,
        op: &'static str,
        link: &Link,
        deadline: Duration,
        call: impl Fn(ConnectionManager) -> F,
    ) -> Result<T, StoreError>
    where
        F: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let started = std::time::Instant::now();
        let end = tokio::time::Instant::now() + deadline;
        let mut tries = 0;
        let (used, result) = loop {
            tries += 1;
            let used = link.current.load_full();
            let answer = tokio::time::timeout_at(end, call((*used).clone())).await;
            match answer {
                Ok(Err(e))
                    if (e.is_connection_refusal() || e.is_connection_dropped()) && tries < 2 =>
                {
                    continue
                }
                Err(_) => break (used, Err(StoreError::Timeout(deadline))),
                Ok(Err(e)) if e.is_timeout() => break (used, Err(StoreError::Timeout(deadline))),
                Ok(Err(e)) => break (used, Err(StoreError::Unavailable(e.to_string()))),
                Ok(Ok(v)) => break (used, Ok(v)),
            }
        };
        match &result {
            Err(StoreError::Timeout(_)) => {
                if link.silent(&used) {
                    self.metrics.store_reconnects.inc();
                }
            }
            _ => link.answered(),
        }
        let m = &self.metrics;
        m.store_duration
            .with_label_values(&[op])
            .observe(started.elapsed().as_secs_f64());
        let outcome = match &result {
            Ok(_) => "ok",
            Err(StoreError::Timeout(_)) => "timeout",
            Err(_) => "error",
        };
        m.store_requests.with_label_values(&[op, outcome]).inc();
        result
    }
}
