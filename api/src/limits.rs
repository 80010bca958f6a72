//! Limits per access token: how many requests a token may make per second
//! (GCRA, from the `governor` crate, with a burst of one second's worth),
//! and how many SSE streams it may hold open. Past either, `429
//! rate_limited` with `Retry-After`, and nothing is done.
//!
//! Owns the per-token counters. It must never limit a request that carries
//! no token (a server without tokens listens on loopback, where the other
//! limits of [`crate::state`] and the journal apply), and never keep a count
//! for a stream that has closed.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::Error;

/// The limits, shared by every request; cheap to clone.
#[derive(Clone, Default)]
pub struct TokenLimits {
    /// `None`: requests are not limited.
    rate: Option<Arc<DefaultKeyedRateLimiter<String>>>,
    /// The most streams one token holds open; 0: not limited.
    streams_max: usize,
    open: Arc<Mutex<HashMap<String, usize>>>,
}

impl std::fmt::Debug for TokenLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenLimits")
            .field("rate", &self.rate.is_some())
            .field("streams_max", &self.streams_max)
            .finish_non_exhaustive()
    }
}

impl TokenLimits {
    /// `requests_per_s` (0: no limit) and `streams_max` (0: no limit).
    pub fn new(requests_per_s: u32, streams_max: usize) -> TokenLimits {
        let rate = NonZeroU32::new(requests_per_s)
            .map(|n| Arc::new(RateLimiter::keyed(Quota::per_second(n).allow_burst(n))));
        TokenLimits {
            rate,
            streams_max,
            open: Arc::default(),
        }
    }

    /// Counts one request of `token`; refused past its rate.
    pub fn request(&self, token: &str) -> Result<(), Error> {
        let Some(rate) = &self.rate else {
            return Ok(());
        };
        rate.check_key(&token.to_owned()).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            Error::RateLimited {
                message: format!(
                    "the token `{token}` is over its limit of requests per second; retry later"
                ),
                retry_after_s: wait.as_secs() + 1,
            }
        })
    }

    /// Opens a stream for `token`, counted until the guard is dropped;
    /// refused when the token holds as many as allowed.
    pub fn stream(&self, token: &str) -> Result<OpenStream, Error> {
        let mut open = self
            .open
            .lock()
            .map_err(|_| Error::Internal("the stream counts' lock was poisoned".into()))?;
        let count = open.entry(token.to_owned()).or_insert(0);
        if self.streams_max > 0 && *count >= self.streams_max {
            return Err(Error::RateLimited {
                message: format!(
                    "the token `{token}` holds {} open streams already, its most; close one first",
                    self.streams_max
                ),
                retry_after_s: 1,
            });
        }
        *count += 1;
        Ok(OpenStream {
            token: token.to_owned(),
            open: self.open.clone(),
        })
    }

    /// How many streams `token` holds open.
    pub fn streams_of(&self, token: &str) -> usize {
        self.open
            .lock()
            .map(|open| open.get(token).copied().unwrap_or(0))
            .unwrap_or(0)
    }
}

/// One open stream of a token.
#[derive(Debug)]
pub struct OpenStream {
    token: String,
    open: Arc<Mutex<HashMap<String, usize>>>,
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        if let Ok(mut open) = self.open.lock()
            && let Some(count) = open.get_mut(&self.token)
        {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.token);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_token_past_its_rate_is_told_when_to_retry_and_others_are_not_held_up() {
        let limits = TokenLimits::new(5, 0);
        for _ in 0..5 {
            assert!(limits.request("a").is_ok());
        }
        let Err(Error::RateLimited { retry_after_s, .. }) = limits.request("a") else {
            panic!("the sixth request in a burst of five is refused");
        };
        assert!(retry_after_s >= 1);
        assert!(
            limits.request("b").is_ok(),
            "another token has its own budget"
        );
        let off = TokenLimits::new(0, 0);
        assert!((0..10_000).all(|_| off.request("a").is_ok()));
    }

    #[test]
    fn streams_are_counted_while_open() {
        let limits = TokenLimits::new(0, 2);
        let one = limits.stream("a").unwrap();
        let two = limits.stream("a").unwrap();
        assert!(limits.stream("a").is_err());
        assert!(limits.stream("b").is_ok());
        drop(one);
        assert_eq!(limits.streams_of("a"), 1);
        let _three = limits.stream("a").unwrap();
        drop(two);
        assert_eq!(limits.streams_of("a"), 1);
    }
}
