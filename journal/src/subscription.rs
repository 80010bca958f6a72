//! `Subscription`: what `Journal::subscribe` hands out, a stream of events
//! that ends when the journal closes.
//!
//! Owns the handle type and its lag counter, for every backend. It must
//! never know where events come from (the sled journal's follower is in
//! `tail`; a wrapper or a networked journal brings its own stream).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use futures::Stream;

use crate::error::Result;
use crate::record::EventRecord;

/// A stream of events from a [`Tail`]; ends when the journal closes, or with
/// an error if a stored record fails its checks.
///
/// [`Tail`]: crate::Tail
pub struct Subscription {
    stream: Pin<Box<dyn Stream<Item = Result<EventRecord>> + Send>>,
    lagged: Arc<AtomicU64>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("times_lagged", &self.times_lagged())
            .finish_non_exhaustive()
    }
}

impl Subscription {
    /// Wraps any stream as a subscription (for journals that wrap another).
    pub fn from_stream(stream: impl Stream<Item = Result<EventRecord>> + Send + 'static) -> Self {
        Self::counting_lags(stream, Arc::new(AtomicU64::new(0)))
    }

    /// A subscription whose [`times_lagged`](Self::times_lagged) reads
    /// `lagged`, which the stream's producer bumps.
    pub(crate) fn counting_lags(
        stream: impl Stream<Item = Result<EventRecord>> + Send + 'static,
        lagged: Arc<AtomicU64>,
    ) -> Self {
        Subscription {
            stream: Box::pin(stream),
            lagged,
        }
    }

    /// The next event; `None` once the journal has closed.
    pub async fn next(&mut self) -> Option<Result<EventRecord>> {
        futures::StreamExt::next(self).await
    }

    /// How often this subscriber fell behind the live buffer and caught up
    /// from the store instead (nothing is lost when it does).
    pub fn times_lagged(&self) -> u64 {
        self.lagged.load(Ordering::Relaxed)
    }
}

impl Stream for Subscription {
    type Item = Result<EventRecord>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.stream.as_mut().poll_next(cx)
    }
}
