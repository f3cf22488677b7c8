//! A provider's revocations from the fleet store, copied into this replica's memory so the
//! request path never waits on Redis.
//!
//! The copy is kept current three ways:
//! - the feed: one subscription (`PSUBSCRIBE <prefix>:revocations:*`) per process; every
//!   write publishes its change with the version it made, applied here at once when it is
//!   the next version (a gap, or a lost subscription, asks for a full read);
//! - a check every `CHECK_EVERY`: the stored version against the copy's, and a full read
//!   when they differ. This also bounds how stale a copy can be without the feed, and each
//!   check that finds the copy current is what its age (`authgate_revocation_age_seconds`)
//!   counts from;
//! - a full read every `RESYNC_EVERY` whatever the version says (an entry edited by hand,
//!   `jti`s pruned by `authgate revoke`).
//!
//! When the store is unreachable the last copy keeps serving and grows old. Before the
//! first copy is read, `verdict` says `NoCopy` (fail closed) unless the config says
//! `revocation_without_copy = "fail_open"`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use futures_util::{FutureExt as _, StreamExt as _};
use tokio::sync::Notify;

use super::{RevocationKeys, Store, StoreError, StoredRevocations};
use crate::formats::revocation::{Change, RevocationSet, Revocations, Verdict, Versions};

/// How often the stored version is compared with the copy's.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);
/// How often the whole list is read again regardless.
pub const RESYNC_EVERY: Duration = Duration::from_secs(60);
/// Longest wait between two attempts to subscribe again: Redis back after a restart is
/// heard from within this (one connection attempt a second per replica is cheap).
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// How often the subscription's connection must answer a ping.
const PING_EVERY: Duration = Duration::from_secs(5);
/// Changes applied in one step (one copy of the list) when many arrive at once.
const BATCH: usize = 1024;

/// One provider's copy.
pub struct StoreRevocations {
    pub provider: String,
    copy: ArcSwapOption<RevocationSet>,
    /// The version of `copy` (its writers hold this lock; readers never take it).
    version: Mutex<u64>,
    /// Unix ms when the copy was last found current; 0: never.
    confirmed_ms: AtomicU64,
    /// Entries of the last full read that did not read as revocations.
    unreadable: AtomicU64,
    created: Instant,
    fail_open: bool,
    /// Wakes the check at once (a gap in the feed, a new subscription).
    wake: Notify,
}

// === impl StoreRevocations ===

impl StoreRevocations {
    fn new(provider: &str, fail_open: bool) -> Self {
        Self {
            provider: provider.to_owned(),
            copy: ArcSwapOption::empty(),
            version: Mutex::new(0),
            confirmed_ms: AtomicU64::new(0),
            unreadable: AtomicU64::new(0),
            created: Instant::now(),
            fail_open,
            wake: Notify::new(),
        }
    }

    /// A copy that is never read (the store's settings could not open one): its tokens
    /// follow `revocation_without_copy` for as long as the process runs.
    pub fn never_read(provider: &str, fail_open: bool) -> Arc<Self> {
        Arc::new(Self::new(provider, fail_open))
    }

    /// Whether a copy has been read.
    pub fn is_loaded(&self) -> bool {
        self.copy.load().is_some()
    }

    /// Entries in the copy.
    pub fn len(&self) -> usize {
        self.copy.load().as_ref().map_or(0, |c| c.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entries of the last full read left out because they do not read as revocations.
    pub fn unreadable(&self) -> u64 {
        self.unreadable.load(Ordering::Relaxed)
    }

    pub fn fails_open(&self) -> bool {
        self.fail_open
    }

    /// Seconds since the copy was last found current at `now_ms` (since it was created,
    /// when it never was).
    pub fn age(&self, now_ms: u64) -> f64 {
        match self.confirmed_ms.load(Ordering::Acquire) {
            0 => self.created.elapsed().as_secs_f64(),
            at => now_ms.saturating_sub(at) as f64 / 1000.0,
        }
    }

    /// Puts a full read in force. A version lower than the copy's means the store lost
    /// writes (a Redis restarted without persistence) or a change arrived while this was
    /// read: the read stands (the store is the truth) and the check runs again at once.
    fn replace(&self, read: StoredRevocations, now_ms: u64) {
        let unreadable = u64::try_from(read.unreadable).unwrap_or(u64::MAX);
        if unreadable > 0 && self.unreadable.load(Ordering::Relaxed) != unreadable {
            tracing::warn!(provider = %self.provider, entries = unreadable, "entries in the store that do not read as revocations are left out (written by hand? `authgate revoke --list` shows what is read)");
        }
        self.unreadable.store(unreadable, Ordering::Relaxed);
        let set = RevocationSet::from_parts(
            read.jtis.into_iter().map(|(j, _)| j),
            read.subjects
                .into_iter()
                .map(|(s, ms)| (s, ms as f64 / 1000.0)),
        );
        let mut version = self.version.lock().unwrap_or_else(|p| p.into_inner());
        let went_back = self.is_loaded() && read.version < *version;
        self.copy.store(Some(Arc::new(set)));
        *version = read.version;
        drop(version);
        self.confirmed_ms.store(now_ms.max(1), Ordering::Release);
        if went_back {
            tracing::warn!(provider = %self.provider, version = read.version, "the store's revocation version went back: a change arrived during the read, or Redis lost writes (run it with persistence)");
            self.wake.notify_one();
        }
    }

    /// Applies published changes, each when it was written on the copy's version; one
    /// written on another (a message missed, a Redis that came back with other data) or no
    /// copy yet asks for a full read.
    fn apply(&self, changes: Vec<(Versions, Change)>) {
        let mut version = self.version.lock().unwrap_or_else(|p| p.into_inner());
        let Some(current) = self.copy.load_full() else {
            drop(version);
            self.wake.notify_one();
            return;
        };
        let mut next = None::<RevocationSet>;
        let mut gap = false;
        for (v, change) in changes {
            if v.version <= *version {
                continue;
            }
            if v.previous != *version {
                gap = true;
                break;
            }
            next.get_or_insert_with(|| (*current).clone()).apply(change);
            *version = v.version;
        }
        if let Some(set) = next {
            self.copy.store(Some(Arc::new(set)));
        }
        drop(version);
        if gap {
            self.wake.notify_one();
        }
    }

    /// One check: the stored version, and a full read when it is not the copy's (or when
    /// `full`).
    async fn check(&self, store: &Store, full: bool) -> Result<(), StoreError> {
        if !full && self.is_loaded() {
            let stored = store.revocation_version(&self.provider).await?;
            let mine = *self.version.lock().unwrap_or_else(|p| p.into_inner());
            if stored == mine {
                self.confirmed_ms.store(unix_ms().max(1), Ordering::Release);
                return Ok(());
            }
        }
        let read = store.read_revocations(&self.provider).await?;
        self.replace(read, unix_ms());
        Ok(())
    }
}

impl Revocations for StoreRevocations {
    fn verdict(&self, jti: Option<&str>, sub: Option<&str>, iat: Option<f64>) -> Verdict {
        match self.copy.load().as_ref() {
            Some(set) => set.verdict(jti, sub, iat),
            None if self.fail_open => Verdict::Clear,
            None => Verdict::NoCopy,
        }
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

// === the store's side ===

impl Store {
    /// The copy of `provider`'s revocations, kept current for as long as it is held: the
    /// running one when there is one (a reload keeps it), else a new one whose check starts
    /// on `rt` (and the feed with it, once per process).
    pub fn revocations(
        &self,
        provider: &str,
        fail_open: bool,
        rt: &tokio::runtime::Handle,
    ) -> Arc<StoreRevocations> {
        let mut copies = self.copies.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(running) = copies.get(provider).and_then(Weak::upgrade) {
            if running.fail_open == fail_open {
                return running;
            }
        }
        let copy = Arc::new(StoreRevocations::new(provider, fail_open));
        copies.retain(|_, c| c.strong_count() > 0);
        copies.insert(provider.to_owned(), Arc::downgrade(&copy));
        drop(copies);
        rt.spawn(keep_current(self.clone(), Arc::downgrade(&copy)));
        let store = self.clone();
        self.feed.call_once(|| {
            rt.spawn(feed(store));
        });
        copy
    }

    /// The live copies, by provider.
    fn copy_of(&self, provider: &str) -> Option<Arc<StoreRevocations>> {
        let copies = self.copies.lock().unwrap_or_else(|p| p.into_inner());
        copies.get(provider).and_then(Weak::upgrade)
    }

    fn wake_all(&self) {
        let copies = self.copies.lock().unwrap_or_else(|p| p.into_inner());
        for copy in copies.values().filter_map(Weak::upgrade) {
            copy.wake.notify_one();
        }
    }
}

/// Checks `copy` every `CHECK_EVERY` (or when woken), reading it whole at first, on a
/// version change and every `RESYNC_EVERY`, until the copy is dropped.
async fn keep_current(store: Store, copy: Weak<StoreRevocations>) {
    let mut last_full: Option<Instant> = None;
    let mut failing_since: Option<Instant> = None;
    let mut last_warned: Option<Instant> = None;
    loop {
        let Some(c) = copy.upgrade() else { return };
        let full = last_full.is_none_or(|t| t.elapsed() >= RESYNC_EVERY);
        let loaded = c.is_loaded();
        match c.check(&store, full).await {
            Ok(()) => {
                if full || !loaded {
                    last_full = Some(Instant::now());
                }
                if !loaded {
                    tracing::info!(provider = %c.provider, entries = c.len(), "revocations read from the store");
                } else if let Some(since) = failing_since {
                    tracing::info!(provider = %c.provider, after = ?since.elapsed(), "revocations current again");
                }
                failing_since = None;
            }
            Err(e) => {
                let since = *failing_since.get_or_insert_with(Instant::now);
                if last_warned.is_none_or(|t| t.elapsed() >= Duration::from_secs(30)) {
                    last_warned = Some(Instant::now());
                    tracing::warn!(provider = %c.provider, error = %e, failing_for = ?since.elapsed(), loaded = c.is_loaded(), "cannot read revocations from the store; the last copy serves");
                }
            }
        }
        // Held while waiting: a copy dropped meanwhile lives at most `CHECK_EVERY` longer.
        tokio::select! {
            () = tokio::time::sleep(CHECK_EVERY) => {}
            () = c.wake.notified() => {}
        }
    }
}

/// The subscription: every published change, applied to its provider's copy. A lost
/// connection is made again with backoff, and every copy is then checked at once (changes
/// published meanwhile were missed).
async fn feed(store: Store) {
    let pattern = RevocationKeys::pattern(store.key_prefix());
    let mut backoff = Duration::from_millis(100);
    let mut subscribed_before = false;
    let mut last_warned: Option<Instant> = None;
    let mut last_malformed: Option<Instant> = None;
    let mut malformed = 0usize;
    loop {
        let connect = async {
            let mut pubsub = store.client.get_async_pubsub().await?;
            pubsub.psubscribe(&pattern).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        let connected =
            tokio::time::timeout(store.timeout.max(Duration::from_secs(1)), connect).await;
        let pubsub = match connected {
            Ok(Ok(p)) => p,
            failed => {
                let error = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "timed out".to_owned(),
                };
                // A refusal (an ACL without the channel pattern) would otherwise go unseen:
                // revocations would arrive by the version check alone.
                if last_warned.is_none_or(|t| t.elapsed() >= Duration::from_secs(30)) {
                    last_warned = Some(Instant::now());
                    tracing::warn!(%error, "cannot subscribe to revocations; retrying (meanwhile they arrive by the check each second)");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        if subscribed_before {
            store.metrics.store_reconnects.inc();
            tracing::info!("subscribed to revocations again");
        }
        subscribed_before = true;
        store.wake_all();
        let since = Instant::now();
        let (mut sink, mut messages) = pubsub.split();
        let mut ping =
            tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
        let deadline = store.timeout.max(Duration::from_secs(1));
        let lost = loop {
            let first = tokio::select! {
                m = messages.next() => match m {
                    Some(m) => m,
                    None => break "closed",
                },
                _ = ping.tick() => {
                    // A subscription whose connection went silent (a hung proxy, a dropped
                    // NAT entry) never ends by itself: it must answer a ping.
                    match tokio::time::timeout(deadline, sink.ping::<redis::Value>()).await {
                        Ok(Ok(_)) => continue,
                        _ => break "silent",
                    }
                }
            };
            // What has arrived already goes in the same step (one copy of each list).
            let mut batch = vec![first];
            while batch.len() < BATCH {
                match messages.next().now_or_never() {
                    Some(Some(m)) => batch.push(m),
                    _ => break,
                }
            }
            malformed += dispatch(&store, batch);
            // Anyone who may publish on the channels could flood the log: one line per
            // 30 s, with the count.
            if malformed > 0
                && last_malformed.is_none_or(|t| t.elapsed() >= Duration::from_secs(30))
            {
                last_malformed = Some(Instant::now());
                tracing::warn!(messages = malformed, "messages on the revocation channels that are not revocation changes; checking the store instead");
                malformed = 0;
            }
        };
        drop((sink, messages));
        tracing::warn!(
            why = lost,
            "the revocation subscription was lost; subscribing again"
        );
        last_warned = Some(Instant::now());
        if since.elapsed() > Duration::from_secs(10) {
            backoff = Duration::from_millis(100);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Hands each message to its provider's copy, in order: how many were not revocation
/// changes (their copies are checked against the store instead).
fn dispatch(store: &Store, batch: Vec<redis::Msg>) -> usize {
    let mut malformed = 0;
    let mut by_provider: Vec<(String, Vec<(Versions, Change)>)> = Vec::new();
    for m in batch {
        let Some(provider) = RevocationKeys::provider_of(store.key_prefix(), m.get_channel_name())
        else {
            continue;
        };
        let parsed = std::str::from_utf8(m.get_payload_bytes())
            .ok()
            .and_then(Change::parse);
        let Some(change) = parsed else {
            malformed += 1;
            if let Some(copy) = store.copy_of(provider) {
                copy.wake.notify_one();
            }
            continue;
        };
        match by_provider.iter_mut().find(|(p, _)| p == provider) {
            Some((_, list)) => list.push(change),
            None => by_provider.push((provider.to_owned(), vec![change])),
        }
    }
    for (provider, changes) in by_provider {
        if let Some(copy) = store.copy_of(&provider) {
            copy.apply(changes);
        }
    }
    malformed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(version: u64, jtis: &[&str]) -> StoredRevocations {
        StoredRevocations {
            version,
            jtis: jtis.iter().map(|j| (j.to_string(), 0)).collect(),
            subjects: vec![],
            unreadable: 0,
        }
    }

    fn at(version: u64, previous: u64) -> Versions {
        Versions { version, previous }
    }

    #[test]
    fn changes_apply_in_version_order() {
        let copy = StoreRevocations::new("p", false);
        assert_eq!(copy.verdict(Some("a"), None, None), Verdict::NoCopy);
        copy.apply(vec![(at(1, 0), Change::Jti("a".into()))]);
        assert_eq!(
            copy.verdict(Some("a"), None, None),
            Verdict::NoCopy,
            "a change without a copy is not a copy"
        );
        copy.replace(read(30, &["a"]), 1);
        assert_eq!(copy.verdict(Some("a"), None, None), Verdict::Revoked);
        copy.apply(vec![
            (at(30, 20), Change::Jti("old".into())),
            (at(40, 30), Change::Jti("b".into())),
            (at(60, 50), Change::Jti("c".into())),
        ]);
        assert_eq!(
            copy.verdict(Some("old"), None, None),
            Verdict::Clear,
            "already in the read"
        );
        assert_eq!(copy.verdict(Some("b"), None, None), Verdict::Revoked);
        assert_eq!(
            copy.verdict(Some("c"), None, None),
            Verdict::Clear,
            "after a gap: waits for the full read"
        );
        assert_eq!(*copy.version.lock().unwrap(), 40);
        // Redis came back with older data (version 35) and took a write on it: the change
        // follows a version this copy never had, so it is not applied over the copy.
        copy.apply(vec![(at(70, 35), Change::Jti("d".into()))]);
        assert_eq!(copy.verdict(Some("d"), None, None), Verdict::Clear);
        assert_eq!(*copy.version.lock().unwrap(), 40);
        copy.replace(read(10, &[]), 2);
        assert_eq!(
            copy.verdict(Some("a"), None, None),
            Verdict::Clear,
            "a full read is the truth, even one that went back"
        );
    }

    #[test]
    fn fail_open_before_the_first_copy_only() {
        let copy = StoreRevocations::new("p", true);
        assert_eq!(copy.verdict(Some("a"), None, None), Verdict::Clear);
        copy.replace(read(1, &["a"]), 1_000);
        assert_eq!(copy.verdict(Some("a"), None, None), Verdict::Revoked);
        assert_eq!(copy.age(4_000), 3.0);
    }
}
