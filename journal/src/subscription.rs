//! Subscriptions: stored events first, then live ones, with no gap and no
//! duplicate at the seam.
//!
//! How the seam is kept: the subscriber registers for live events *before*
//! reading the store, and the writer publishes a group only *after* moving
//! the committed watermark that bounds store reads. So every event is either
//! in the store read or in the live queue (or both — duplicates are dropped by
//! `seq`/`position`). A subscriber that falls more than the live buffer behind
//! is told so by the live queue; it then re-registers and goes back to the
//! store from its last position, so nothing is lost and the writer never waits
//! for a slow reader.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use futures::Stream;
use tokio::sync::broadcast;

use crate::log::Shared;
use crate::{EventRecord, Result, Tail};

/// How many stored events one read takes.
const READ_CHUNK: usize = 1024;

/// A stream of events from a [`Tail`]; ends when the journal closes, or with
/// an error if a stored record fails its checks.
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
        Subscription {
            stream: Box::pin(stream),
            lagged: Arc::new(AtomicU64::new(0)),
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

pub(crate) fn tail(
    shared: Arc<Shared>,
    live: broadcast::Receiver<Arc<EventRecord>>,
    from: Tail,
) -> Subscription {
    let lagged = Arc::new(AtomicU64::new(0));
    let counter = lagged.clone();
    let stream = async_stream::try_stream! {
        let mut live = live;
        // The next seq (one execution) or position (everything) to deliver.
        let mut next = match from {
            Tail::Execution { from_seq, .. } => from_seq.max(1),
            Tail::All { from_position } => from_position.max(1),
        };
        let key = move |r: &EventRecord| match from {
            Tail::Execution { execution, .. } => (r.execution == execution).then_some(r.seq),
            Tail::All { .. } => Some(r.position),
        };
        loop {
            loop {
                let stored = match from {
                    Tail::Execution { execution, .. } => shared.read(execution, next, READ_CHUNK)?,
                    Tail::All { .. } => shared.read_global(next, READ_CHUNK)?,
                };
                if stored.is_empty() {
                    break;
                }
                for record in stored {
                    next = key(&record).unwrap_or(next) + 1;
                    yield record;
                }
            }
            let closed = loop {
                match live.recv().await {
                    Ok(record) => match key(&record) {
                        Some(k) if k == next => {
                            next += 1;
                            yield EventRecord::clone(&record);
                        }
                        // Already delivered from the store.
                        Some(k) if k < next => {}
                        // Cannot happen by the argument above; if it ever
                        // does, the store has what we missed.
                        Some(_) => break false,
                        None => {}
                    },
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        counter.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(missed, "subscriber fell behind; catching up from the store");
                        live = live.resubscribe();
                        break false;
                    }
                    Err(broadcast::error::RecvError::Closed) => break true,
                }
            };
            if closed {
                break;
            }
        }
    };
    Subscription {
        stream: Box::pin(stream),
        lagged,
    }
}
