//! The sled journal's subscriptions: stored events first, then live ones,
//! with no gap and no duplicate at the seam.
//!
//! How the seam is kept: the subscriber joins the live buffer *before*
//! reading the store, and the writer publishes a group only *after* moving
//! the committed watermark that bounds store reads. So every event is either
//! in the store read or in the live buffer (or both — duplicates are dropped
//! by `seq`/`position`). A subscriber that falls further behind than the live
//! buffer's bounds (in events or in bytes, see `fanout`) is cut loose and told
//! so: it has already rejoined at the newest event, and goes back to the
//! store from the last event it delivered, so nothing is lost, nothing is
//! delivered twice, and the writer never waits for a slow reader.
//!
//! What a subscriber holds is bounded in bytes too: its share of the live
//! buffer, and one read of the store of about `READ_BYTES` (a record larger
//! than that is read alone).
//!
//! Owns the follower loop. It must never write, never read past the
//! committed watermark (it reads only through `Shared`), and never make the
//! writer wait for it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::fanout::{Receiver, Recv, record_bytes};
use crate::journal::Tail;
use crate::record::EventRecord;
use crate::shared::Shared;
use crate::subscription::Subscription;

/// Most stored events one read takes.
const READ_CHUNK: usize = 1024;

/// About how many bytes of stored events one read takes: what a subscriber
/// that stops reading in the middle of catching up holds at most.
const READ_BYTES: usize = 256 * 1024;

/// How many events the first read takes, before their size is known.
const FIRST_CHUNK: usize = 64;

/// How many events the next read takes: about `READ_BYTES` of events the
/// size of those just read.
fn next_chunk(read: &[EventRecord]) -> usize {
    let bytes: usize = read.iter().map(record_bytes).sum();
    let mean = (bytes / read.len().max(1)).max(1);
    (READ_BYTES / mean).clamp(1, READ_CHUNK)
}

/// Follows `from`: the store through `shared`, then `live` (which must have
/// been registered before this is called).
pub(crate) fn tail(shared: Arc<Shared>, live: Receiver, from: Tail) -> Subscription {
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
        let mut chunk = FIRST_CHUNK;
        loop {
            loop {
                let stored = match from {
                    Tail::Stream { stream, .. } => shared.read(stream, next, chunk)?,
                    Tail::All { .. } => shared.read_global(next, chunk)?,
                };
                if stored.is_empty() {
                    break;
                }
                chunk = next_chunk(&stored);
                for record in stored {
                    next = key(&record).unwrap_or(next) + 1;
                    yield record;
                }
            }
            let closed = loop {
                match live.recv().await {
                    Recv::Record(record) => match key(&record) {
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
                    // It has rejoined at the newest event already.
                    Recv::Lagged => {
                        counter.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(next, "subscriber fell behind; catching up from the store");
                        break false;
                    }
                    Recv::Closed => break true,
                }
            };
            if closed {
                break;
            }
        }
    };
    Subscription::counting_lags(stream, lagged)
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;
    use proptest::prelude::*;

    use crate::journal::{Journal, Tail};
    use crate::log::EventLog;
    use crate::options::Options;
    use crate::record::{EventRecord, NewEvent};
    use crate::store::memory::MemoryStore;
    use crate::stream::StreamId;
    use crate::subscription::Subscription;

    fn stream(n: u8) -> StreamId {
        StreamId::from_bytes([n; 16])
    }

    fn event(payload_bytes: usize) -> NewEvent {
        NewEvent::new("e", 0, vec![7; payload_bytes])
    }

    /// A journal whose live buffers are tiny: every slow reader overflows.
    fn journal(events: usize, bytes: usize) -> EventLog {
        let options = Options {
            durable: false,
            live_buffer: events,
            live_buffer_bytes: bytes,
            ..Options::default()
        };
        match EventLog::in_memory(MemoryStore::new(), options) {
            Ok(log) => log,
            Err(e) => panic!("cannot open an in-memory journal: {e}"),
        }
    }

    /// The next `n` events of `s` (they exist: each was acknowledged).
    async fn take(s: &mut Subscription, n: usize) -> Vec<EventRecord> {
        let mut got = Vec::with_capacity(n);
        for _ in 0..n {
            match s.next().await {
                Some(Ok(record)) => got.push(record),
                other => panic!("expected an event, got {other:?}"),
            }
        }
        got
    }

    #[tokio::test]
    async fn a_reader_that_stops_reading_is_cut_loose_and_caught_up_from_the_store() {
        let j = journal(16 * 1024, 4 * 1024);
        let mut slow = j.subscribe(Tail::All { from_position: 1 });
        let mut quick = j.subscribe(Tail::All { from_position: 1 });
        let mut one = j.subscribe(Tail::Stream {
            stream: stream(1),
            from_seq: 1,
        });
        // Both wait on the live buffer (the store has nothing yet)...
        assert!(slow.next().now_or_never().is_none());
        assert!(one.next().now_or_never().is_none());
        // ...while 100 KB are appended and they read nothing: far past the
        // 4 KiB bound. `quick` keeps up.
        for seq in 1..=100 {
            j.append(stream(1), seq, vec![event(1000)]).await.unwrap();
            assert_eq!(take(&mut quick, 1).await[0].position, seq);
        }
        for s in [&mut slow, &mut one] {
            let got = take(s, 100).await;
            assert_eq!(
                got.iter().map(|r| r.position).collect::<Vec<_>>(),
                (1..=100).collect::<Vec<_>>(),
                "every event once, in order"
            );
            assert!(s.times_lagged() >= 1, "it was cut loose");
        }
        assert_eq!(quick.times_lagged(), 0, "a reader that keeps up stays live");
        // All three go on live.
        j.append(stream(1), 101, vec![event(10)]).await.unwrap();
        for s in [&mut slow, &mut quick, &mut one] {
            assert_eq!(take(s, 1).await[0].position, 101);
        }
    }

    /// One step of a schedule: append to a stream, or let a reader read.
    #[derive(Debug, Clone)]
    enum Step {
        Append {
            stream: u8,
            events: usize,
            payload_bytes: usize,
        },
        Read {
            reader: usize,
            most: usize,
        },
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0u8..3, 1usize..6, 0usize..700).prop_map(|(stream, events, payload_bytes)| {
                Step::Append {
                    stream,
                    events,
                    payload_bytes,
                }
            }),
            (0usize..4, 0usize..40).prop_map(|(reader, most)| Step::Read { reader, most }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Readers of the whole journal and of one stream, reading at any
        /// pace against buffers of a few events and a few KiB, each get
        /// every event exactly once, in order, with no gap.
        #[test]
        fn readers_at_any_pace_get_every_event_once_in_order(
            events in 1usize..12,
            bytes in 256usize..4096,
            steps in proptest::collection::vec(step(), 1..60),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let j = journal(events, bytes);
                // Readers 0 and 1 follow everything, 2 and 3 stream 0 and 1.
                let mut readers = [
                    j.subscribe(Tail::All { from_position: 1 }),
                    j.subscribe(Tail::All { from_position: 1 }),
                    j.subscribe(Tail::Stream { stream: stream(0), from_seq: 1 }),
                    j.subscribe(Tail::Stream { stream: stream(1), from_seq: 1 }),
                ];
                let mut got: Vec<Vec<EventRecord>> = vec![Vec::new(); 4];
                let mut appended: Vec<(u8, u64, u64)> = Vec::new(); // (stream, seq, position)
                let mut seqs = [0u64; 3];
                let wanted = |reader: usize, appended: &[(u8, u64, u64)]| -> Vec<(u64, u64)> {
                    appended
                        .iter()
                        .filter(|(s, _, _)| reader < 2 || usize::from(*s) + 2 == reader)
                        .map(|&(_, seq, position)| (seq, position))
                        .collect()
                };
                // The schedule, then every reader reads what is left.
                let rest = (0..4).map(|reader| Step::Read { reader, most: usize::MAX });
                for step in steps.iter().cloned().chain(rest) {
                    match step {
                        Step::Append { stream: s, events, payload_bytes } => {
                            let i = usize::from(s);
                            let batch: Vec<NewEvent> = (0..events).map(|_| event(payload_bytes)).collect();
                            let done = j.append(stream(s), seqs[i] + 1, batch).await.unwrap();
                            for k in 0..events as u64 {
                                appended.push((s, seqs[i] + 1 + k, done.first_position + k));
                            }
                            seqs[i] += events as u64;
                        }
                        Step::Read { reader, most } => {
                            let outstanding = wanted(reader, &appended).len() - got[reader].len();
                            let more = take(&mut readers[reader], most.min(outstanding)).await;
                            got[reader].extend(more);
                            if most >= outstanding {
                                // Caught up: it waits on the live buffer
                                // (and has nothing more to give).
                                let extra = readers[reader].next().now_or_never();
                                prop_assert!(extra.is_none(), "reader {} got {:?}", reader, extra);
                            }
                        }
                    }
                }
                for (reader, got) in got.iter().enumerate() {
                    let seen: Vec<(u64, u64)> = got.iter().map(|r| (r.seq, r.position)).collect();
                    prop_assert_eq!(seen, wanted(reader, &appended), "reader {}", reader);
                }
                Ok(())
            })?;
        }
    }
}
