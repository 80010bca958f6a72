//! Time for the runtime: the only way the engine learns what time it is.
//!
//! The state machine never reads a clock; the runtime reads this one and
//! passes the time in with every trigger, where it is recorded in events. A
//! simulated clock lets tests (and the recovery property tests) skip time
//! deterministically instead of sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::watch;

/// A source of time.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
    /// Completes once `now_ms() >= at_ms`.
    fn sleep_until(&self, at_ms: u64) -> BoxFuture<'static, ()>;
}

/// The machine's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }

    fn sleep_until(&self, at_ms: u64) -> BoxFuture<'static, ()> {
        let wait = at_ms.saturating_sub(self.now_ms());
        tokio::time::sleep(Duration::from_millis(wait)).boxed()
    }
}

/// A clock that moves only when told to. Clones share the same time.
#[derive(Debug, Clone)]
pub struct SimClock {
    now: Arc<AtomicU64>,
    tick: Arc<watch::Sender<u64>>,
}

impl SimClock {
    pub fn new(start_ms: u64) -> Self {
        let (tick, _) = watch::channel(start_ms);
        SimClock {
            now: Arc::new(AtomicU64::new(start_ms)),
            tick: Arc::new(tick),
        }
    }

    /// Moves time forward by `ms` and wakes every sleeper now due.
    pub fn advance(&self, ms: u64) {
        let now = self.now.fetch_add(ms, Ordering::SeqCst) + ms;
        self.tick.send_replace(now);
    }

    /// Moves time to `at_ms` (never backwards).
    pub fn set(&self, at_ms: u64) {
        let now = self.now.fetch_max(at_ms, Ordering::SeqCst).max(at_ms);
        self.tick.send_replace(now);
    }
}

impl Clock for SimClock {
    fn now_ms(&self) -> u64 {
        self.now.load(Ordering::SeqCst)
    }

    fn sleep_until(&self, at_ms: u64) -> BoxFuture<'static, ()> {
        let mut rx = self.tick.subscribe();
        async move {
            // `wait_for` checks the current value first, so no wake-up is lost.
            let _ = rx.wait_for(|now| *now >= at_ms).await;
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_sim_sleeper_wakes_exactly_when_time_reaches_it() {
        let clock = SimClock::new(1_000);
        let mut sleeper = clock.sleep_until(1_500);
        assert!((&mut sleeper).now_or_never().is_none());
        clock.advance(499);
        assert!((&mut sleeper).now_or_never().is_none());
        clock.advance(1);
        assert!(sleeper.now_or_never().is_some());
        assert_eq!(clock.now_ms(), 1_500);
        assert!(
            clock.sleep_until(10).now_or_never().is_some(),
            "the past is due at once"
        );
    }
}
