//! The fleet store (issue 16, in progress): Redis, shared by every replica, for what one
//! process cannot know alone (a DPoP proof used at another replica, a revocation written
//! elsewhere). Not configurable yet: the `[store]` table comes with the features that use it.
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

use std::sync::Arc;
use std::time::Duration;

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

/// A connection to the store, cheap to clone (one multiplexed connection underneath).
#[derive(Clone)]
pub struct Store {
    conn: ConnectionManager,
    timeout: Duration,
    metrics: Arc<Metrics>,
}

/// Commands waiting for the connection at once; more fail at once (`Unavailable`).
const PIPELINE: usize = 256;
/// Commands in flight at once.
const IN_FLIGHT: usize = 512;

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
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.timeout))
            .set_response_timeout(Some(settings.timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(100))
            .set_max_delay(Duration::from_secs(5))
            .set_pipeline_buffer_size(PIPELINE)
            .set_concurrency_limit(IN_FLIGHT);
        let conn = ConnectionManager::new_lazy_with_config(client, config).map_err(bad)?;
        Ok(Self {
            conn,
            timeout: settings.timeout,
            metrics,
        })
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

    /// One command under the store's deadline, counted and timed as `op`.
    async fn call<T: redis::FromRedisValue>(
        &self,
        op: &'static str,
        cmd: redis::Cmd,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn.clone();
        let started = std::time::Instant::now();
        let result = match tokio::time::timeout(self.timeout, cmd.query_async::<T>(&mut conn)).await
        {
            Err(_) => Err(StoreError::Timeout(self.timeout)),
            Ok(Err(e)) if e.is_timeout() => Err(StoreError::Timeout(self.timeout)),
            Ok(Err(e)) => Err(StoreError::Unavailable(e.to_string())),
            Ok(Ok(v)) => Ok(v),
        };
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
