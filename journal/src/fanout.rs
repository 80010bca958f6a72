//! Where the writer publishes committed events: one live buffer for the
//! whole journal, and one per stream that has subscribers, so a subscriber
//! to one stream is woken only by that stream's events (a thousand
//! subscribers to different streams cost one push per event, not a
//! thousand).
//!
//! A buffer holds each record once, however many subscribers read it, and
//! only for as long as one of them still has to: a record every subscriber
//! has read is dropped at once. It is bounded in events and in bytes. A
//! subscriber that falls further behind than either bound is cut loose: the
//! records it alone was holding are dropped, and on its next read it is told
//! it lagged, rejoins at the newest record, and catches up from the store
//! (`tail` does that). So a reader that stops reading costs at most the
//! bound, shared with every other reader, and never the journal's growth.
//!
//! Owns the buffers, their accounting and their wake-ups. It must never
//! block the writer (publishing takes one short lock per buffer and never
//! waits for a reader), never let a buffer pass its bounds, and never
//! publish anything the writer has not committed.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use tokio::sync::Notify;

use crate::record::EventRecord;
use crate::stream::StreamId;

/// Most events one stream's buffer holds. Small on purpose: a buffer is made
/// per subscribed stream, and a subscriber that falls behind catches up from
/// the store anyway.
const PER_STREAM_EVENTS: usize = 256;

/// Most bytes one stream's buffer holds.
const PER_STREAM_BYTES: usize = 1024 * 1024;

/// A buffer's bounds: a subscriber further behind than either is cut loose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bounds {
    pub events: usize,
    pub bytes: usize,
}

/// What a record costs in a buffer: its heap parts and its own size.
pub(crate) fn record_bytes(record: &EventRecord) -> usize {
    std::mem::size_of::<EventRecord>() + record.kind.len() + record.payload.len()
}

type Streams = Mutex<HashMap<StreamId, Arc<Channel>>>;

#[derive(Debug)]
pub(crate) struct Fanout {
    all: Arc<Channel>,
    per_stream: Arc<Streams>,
    stream_bounds: Bounds,
}

/// A poisoned lock still guards consistent data: every critical section
/// below leaves its data whole before anything in it can panic.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Fanout {
    /// Buffers of at most `events` events and `bytes` bytes for the whole
    /// journal; per stream, the smaller of those and the per-stream bounds.
    pub(crate) fn new(events: usize, bytes: usize) -> Fanout {
        let all = Bounds {
            events: events.max(1),
            bytes: bytes.max(1),
        };
        Fanout {
            all: Arc::new(Channel::new(all, None)),
            per_stream: Arc::new(Mutex::new(HashMap::new())),
            stream_bounds: Bounds {
                events: all.events.min(PER_STREAM_EVENTS),
                bytes: all.bytes.min(PER_STREAM_BYTES),
            },
        }
    }

    pub(crate) fn subscribe_all(&self) -> Receiver {
        Receiver::join(self.all.clone())
    }

    pub(crate) fn subscribe(&self, stream: StreamId) -> Receiver {
        let mut map = lock(&self.per_stream);
        let channel = map
            .entry(stream)
            .or_insert_with(|| {
                let home = (Arc::downgrade(&self.per_stream), stream);
                Arc::new(Channel::new(self.stream_bounds, Some(home)))
            })
            .clone();
        // Joined under the map's lock, so a publish cannot slip between
        // finding the buffer and joining it, and the last receiver of
        // another moment cannot remove it meanwhile.
        Receiver::join(channel)
    }

    /// Publishes a committed group, in order, and wakes its readers.
    pub(crate) fn publish(&self, records: Vec<Arc<EventRecord>>) {
        let mut woken: Vec<Arc<Channel>> = Vec::new();
        {
            let map = lock(&self.per_stream);
            if !map.is_empty() {
                for record in &records {
                    if let Some(channel) = map.get(&record.stream) {
                        channel.push(std::iter::once(record.clone()));
                        if !woken.iter().any(|w| Arc::ptr_eq(w, channel)) {
                            woken.push(channel.clone());
                        }
                    }
                }
            }
        }
        self.all.push(records);
        for channel in woken {
            channel.wake.notify_waiters();
        }
        self.all.wake.notify_waiters();
    }

    /// How many records and bytes the whole journal's buffer holds now.
    #[cfg(test)]
    fn held(&self) -> (usize, usize) {
        let ring = lock(&self.all.ring);
        (ring.records.len(), ring.bytes)
    }

    /// How many per-stream buffers exist now.
    #[cfg(test)]
    fn streams(&self) -> usize {
        lock(&self.per_stream).len()
    }
}

impl Drop for Fanout {
    /// The journal is closing: every reader ends once it has read what was
    /// published.
    fn drop(&mut self) {
        self.all.close();
        let channels: Vec<Arc<Channel>> = lock(&self.per_stream).values().cloned().collect();
        for channel in channels {
            channel.close();
        }
    }
}

/// One live buffer and the readers' wake-up.
#[derive(Debug)]
struct Channel {
    ring: Mutex<Ring>,
    wake: Notify,
    bounds: Bounds,
    /// For a stream's buffer: the map it is in, removed from it with its last
    /// receiver.
    home: Option<(Weak<Streams>, StreamId)>,
}

/// The records of one buffer and where its readers are.
///
/// Records are numbered in publishing order; `records` holds numbers
/// `first..first + len`. A receiver is *joined* while its cursor (the number
/// it reads next) is at least `first`, and counted in `cursors`; `first` is
/// always the smallest joined cursor (or the next number, with none), so a
/// record leaves as soon as every joined reader has read it. A receiver
/// whose cursor is below `first` was cut loose.
#[derive(Debug, Default)]
struct Ring {
    records: VecDeque<Arc<EventRecord>>,
    first: u64,
    /// The bytes of `records` ([`record_bytes`]).
    bytes: usize,
    /// Joined cursors: number -> how many receivers are at it.
    cursors: BTreeMap<u64, usize>,
    /// Receivers alive, joined or cut loose.
    receivers: usize,
    closed: bool,
}

impl Ring {
    fn next(&self) -> u64 {
        self.first + self.records.len() as u64
    }

    /// A receiver joins at the next record.
    fn join(&mut self) -> u64 {
        let at = self.next();
        *self.cursors.entry(at).or_insert(0) += 1;
        at
    }

    /// A joined receiver at `at` leaves it.
    fn leave(&mut self, at: u64) {
        if let Some(n) = self.cursors.get_mut(&at) {
            *n -= 1;
            if *n == 0 {
                self.cursors.remove(&at);
            }
        }
        self.drop_read();
    }

    /// Drops the records every joined receiver has read.
    fn drop_read(&mut self) {
        let keep_from = self
            .cursors
            .first_key_value()
            .map_or(self.next(), |(&at, _)| at);
        while self.first < keep_from {
            let Some(record) = self.records.pop_front() else {
                break;
            };
            self.bytes -= record_bytes(&record);
            self.first += 1;
        }
        // A burst's allocation is not kept once it has been read.
        if self.records.is_empty() && self.records.capacity() > 1024 {
            self.records = VecDeque::new();
        }
    }

    fn push(&mut self, record: Arc<EventRecord>, bounds: Bounds) {
        if self.cursors.is_empty() {
            // Nobody is joined: nobody will read it here.
            self.first += 1;
            return;
        }
        self.bytes += record_bytes(&record);
        self.records.push_back(record);
        // Past a bound, the slowest readers are cut loose until it holds.
        while self.records.len() > bounds.events || self.bytes > bounds.bytes {
            let Some((&slowest, _)) = self.cursors.first_key_value() else {
                break;
            };
            self.cursors.remove(&slowest);
            self.drop_read();
        }
    }
}

impl Channel {
    fn new(bounds: Bounds, home: Option<(Weak<Streams>, StreamId)>) -> Channel {
        Channel {
            ring: Mutex::new(Ring::default()),
            wake: Notify::new(),
            bounds,
            home,
        }
    }

    fn push(&self, records: impl IntoIterator<Item = Arc<EventRecord>>) {
        let mut ring = lock(&self.ring);
        for record in records {
            ring.push(record, self.bounds);
        }
    }

    fn close(&self) {
        lock(&self.ring).closed = true;
        self.wake.notify_waiters();
    }
}

/// What a receiver reads next.
#[derive(Debug)]
pub(crate) enum Recv {
    Record(Arc<EventRecord>),
    /// It fell further behind than the bounds and was cut loose: what it
    /// missed is in the store. It has rejoined at the newest record.
    Lagged,
    /// The journal closed and everything published has been read.
    Closed,
}

/// One subscriber's place in a buffer.
#[derive(Debug)]
pub(crate) struct Receiver {
    channel: Arc<Channel>,
    cursor: u64,
}

impl Receiver {
    fn join(channel: Arc<Channel>) -> Receiver {
        let cursor = {
            let mut ring = lock(&channel.ring);
            ring.receivers += 1;
            ring.join()
        };
        Receiver { channel, cursor }
    }

    /// The next record, or news that this receiver lagged or the journal
    /// closed.
    pub(crate) async fn recv(&mut self) -> Recv {
        let channel = self.channel.clone();
        loop {
            let notified = channel.wake.notified();
            tokio::pin!(notified);
            // Registered before looking, so a publish in between still wakes it.
            notified.as_mut().enable();
            if let Some(next) = self.try_recv() {
                return next;
            }
            notified.await;
        }
    }

    fn try_recv(&mut self) -> Option<Recv> {
        let mut ring = lock(&self.channel.ring);
        if self.cursor < ring.first {
            self.cursor = ring.join();
            return Some(Recv::Lagged);
        }
        let Some(record) = ring.records.get((self.cursor - ring.first) as usize) else {
            return ring.closed.then_some(Recv::Closed);
        };
        let record = record.clone();
        let at = self.cursor;
        self.cursor += 1;
        *ring.cursors.entry(self.cursor).or_insert(0) += 1;
        ring.leave(at);
        Some(Recv::Record(record))
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        // The map (for a stream's buffer) before the ring, in the order
        // `subscribe` and `publish` take them.
        let home = self
            .channel
            .home
            .as_ref()
            .and_then(|(map, stream)| Some((map.upgrade()?, *stream)));
        let mut map = home.as_ref().map(|(map, stream)| (lock(map), stream));
        let mut ring = lock(&self.channel.ring);
        if self.cursor >= ring.first {
            ring.leave(self.cursor);
        }
        ring.receivers -= 1;
        if ring.receivers == 0
            && let Some((map, stream)) = map.as_mut()
            && map
                .get(*stream)
                .is_some_and(|c| Arc::ptr_eq(c, &self.channel))
        {
            map.remove(*stream);
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;

    fn record(stream: u128, position: u64, payload: usize) -> Arc<EventRecord> {
        Arc::new(EventRecord {
            stream: stream_id(stream),
            seq: position,
            position,
            prev_position: 0,
            recorded_at_ms: 0,
            kind: "k".into(),
            payload: vec![0; payload],
            hash: [0; 32],
            format: crate::record::FORMAT_VERSION,
        })
    }

    fn stream_id(n: u128) -> StreamId {
        StreamId::from_bytes(n.to_be_bytes())
    }

    fn now(rx: &mut Receiver) -> Option<Recv> {
        rx.recv().now_or_never()
    }

    fn position(next: Option<Recv>) -> u64 {
        match next {
            Some(Recv::Record(r)) => r.position,
            other => panic!("expected a record, got {other:?}"),
        }
    }

    #[test]
    fn a_record_every_reader_has_read_is_dropped_at_once() {
        let fanout = Fanout::new(1024, 1 << 20);
        let mut a = fanout.subscribe_all();
        let mut b = fanout.subscribe_all();
        fanout.publish(vec![record(1, 1, 100), record(1, 2, 100)]);
        assert_eq!(fanout.held().0, 2);
        assert_eq!(position(now(&mut a)), 1);
        assert_eq!(fanout.held().0, 2, "b has not read it");
        assert_eq!(position(now(&mut b)), 1);
        assert_eq!(fanout.held().0, 1);
        assert_eq!(position(now(&mut a)), 2);
        drop(b);
        assert_eq!(fanout.held(), (0, 0), "the last reader of it left");
        assert!(now(&mut a).is_none(), "nothing more yet");
    }

    #[test]
    fn nothing_is_held_without_readers() {
        let fanout = Fanout::new(1024, 1 << 20);
        fanout.publish(vec![record(1, 1, 100)]);
        assert_eq!(fanout.held(), (0, 0));
        let mut late = fanout.subscribe_all();
        assert!(
            now(&mut late).is_none(),
            "it joins after what was published"
        );
        fanout.publish(vec![record(1, 2, 100)]);
        assert_eq!(position(now(&mut late)), 2);
    }

    #[test]
    fn a_reader_past_the_byte_bound_is_cut_loose_and_the_bytes_are_freed() {
        let size = record_bytes(&record(1, 1, 1000));
        let fanout = Fanout::new(1024, 10 * size);
        let mut slow = fanout.subscribe_all();
        let mut quick = fanout.subscribe_all();
        for p in 1..=25 {
            fanout.publish(vec![record(1, p, 1000)]);
            assert_eq!(position(now(&mut quick)), p);
            let (events, bytes) = fanout.held();
            assert!(bytes <= 10 * size, "{bytes} bytes held");
            assert!(events <= 10);
        }
        assert_eq!(fanout.held(), (0, 0), "only the cut reader held them");
        assert!(matches!(now(&mut slow), Some(Recv::Lagged)));
        // Rejoined at the newest record.
        assert!(now(&mut slow).is_none());
        fanout.publish(vec![record(1, 26, 1000)]);
        assert_eq!(position(now(&mut slow)), 26);
        assert_eq!(position(now(&mut quick)), 26);
    }

    #[test]
    fn a_reader_past_the_event_bound_is_cut_loose() {
        let fanout = Fanout::new(4, 1 << 30);
        let mut slow = fanout.subscribe_all();
        fanout.publish((1..=5).map(|p| record(1, p, 1)).collect());
        assert_eq!(fanout.held(), (0, 0));
        assert!(matches!(now(&mut slow), Some(Recv::Lagged)));
    }

    #[test]
    fn a_record_larger_than_the_bound_cuts_every_reader_loose() {
        let fanout = Fanout::new(1024, 1000);
        let mut reader = fanout.subscribe_all();
        fanout.publish(vec![record(1, 1, 5000)]);
        assert_eq!(fanout.held(), (0, 0));
        assert!(matches!(now(&mut reader), Some(Recv::Lagged)));
    }

    #[test]
    fn a_streams_buffer_goes_with_its_last_reader() {
        let fanout = Fanout::new(1024, 1 << 20);
        let mut one = fanout.subscribe(stream_id(7));
        let two = fanout.subscribe(stream_id(7));
        assert_eq!(fanout.streams(), 1);
        fanout.publish(vec![record(7, 1, 10), record(8, 2, 10)]);
        assert_eq!(position(now(&mut one)), 1);
        assert!(now(&mut one).is_none(), "only its stream's events");
        drop(two);
        assert_eq!(fanout.streams(), 1);
        drop(one);
        assert_eq!(fanout.streams(), 0, "no buffer is kept for nobody");
    }

    #[test]
    fn readers_end_after_the_rest_once_the_journal_closes() {
        let fanout = Fanout::new(1024, 1 << 20);
        let mut all = fanout.subscribe_all();
        let mut one = fanout.subscribe(stream_id(1));
        fanout.publish(vec![record(1, 1, 10)]);
        drop(fanout);
        assert_eq!(position(now(&mut all)), 1);
        assert!(matches!(now(&mut all), Some(Recv::Closed)));
        assert_eq!(position(now(&mut one)), 1);
        assert!(matches!(now(&mut one), Some(Recv::Closed)));
    }

    #[tokio::test]
    async fn a_waiting_reader_is_woken_by_a_publish() {
        let fanout = Fanout::new(1024, 1 << 20);
        let mut reader = fanout.subscribe_all();
        let mut next = Box::pin(reader.recv());
        assert!(futures::poll!(&mut next).is_pending());
        fanout.publish(vec![record(1, 1, 10)]);
        // Only a wake-up polls it again.
        let woken = tokio::time::timeout(std::time::Duration::from_secs(60), next).await;
        assert_eq!(position(woken.ok()), 1);
    }
}
