//! The sled journal's subscriptions: stored events first, then live ones,
//! with no gap and no duplicate at the seam.
//!
//! How the seam is kept: the subscriber registers for live events *before*
//! reading the store, and the writer publishes a group only *after* moving
//! the committed watermark that bounds store reads. So every event is either
//! in the store read or in the live queue (or both — duplicates are dropped by
//! `seq`/`position`). A subscriber that falls more than the live buffer behind
//! is told so by the live queue; it then re-registers and goes back to the
//! store from its last position, so nothing is lost and the writer never waits
//! for a slow reader.
//!
//! Owns the follower loop. It must never write, never read past the
//! committed watermark (it reads only through `Shared`), and never make the
//! writer wait for it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::broadcast;

use crate::journal::Tail;
use crate::record::EventRecord;
use crate::shared::Shared;
use crate::subscription::Subscription;

/// How many stored events one read takes.
const READ_CHUNK: usize = 1024;

/// Follows `from`: the store through `shared`, then `live` (which must have
/// been registered before this is called).
pub(crate) fn tail(
    shared: Arc<Shared>,
    live: broadcast::Receiver<Arc<EventRecord>>,
    from: Tail,
) -> Subscription {
    let lagged = Arc::new(AtomicU64::new(0));
    let counter = lagged.clone();
    let stream = async_stream::try_stream! {
        let mut live = live;
        // The next seq (one stream) or position (everything) to deliver.
        let mut next = match from {
            Tail::Stream { from_seq, .. } => from_seq.max(1),
            Tail::All { from_position } => from_position.max(1),
        };
        let key = move |r: &EventRecord| match from {
            Tail::Stream { stream, .. } => (r.stream == stream).then_some(r.seq),
            Tail::All { .. } => Some(r.position),
        };
        loop {
            loop {
                let stored = match from {
                    Tail::Stream { stream, .. } => shared.read(stream, next, READ_CHUNK)?,
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
    Subscription::counting_lags(stream, lagged)
}
