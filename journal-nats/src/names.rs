//! Names: the JetStream stream and bucket, the subject of each journal
//! stream, its partition, and the mapping between message sequences and
//! event positions.
//!
//! Owns every string and number that says where something is in NATS. It
//! must never change a mapping once written: data written by one version is
//! read by the next (the partition count is kept in the stream's metadata).

use retrace_journal::StreamId;
use retrace_journal::record::MAX_EVENTS_PER_APPEND;

/// Events one message can hold: positions leave this many slots per
/// message sequence.
pub const EVENTS_PER_MESSAGE: u64 = 4096;
const INDEX_BITS: u32 = 12;
const _: () = assert!(1 << INDEX_BITS == EVENTS_PER_MESSAGE);
const _: () = assert!(MAX_EVENTS_PER_APPEND as u64 <= EVENTS_PER_MESSAGE);

/// Partitions a new journal is cut into (a fixed number: a stream's
/// partition never changes).
pub const PARTITIONS_DEFAULT: u32 = 64;

/// The stream metadata key that records the partition count.
pub(crate) const PARTITIONS_KEY: &str = "retrace.partitions";

/// The stream metadata key that records how streams are placed in
/// partitions, and the rule this build places them by (2: home streams in
/// partition 0, see `retrace_journal::is_home`; before, no key).
pub(crate) const LAYOUT_KEY: &str = "retrace.layout";
pub(crate) const LAYOUT: &str = "2";

/// The position of event `index` of the message at `sequence`.
pub(crate) fn position(sequence: u64, index: usize) -> u64 {
    (sequence << INDEX_BITS) | index as u64
}

/// The message sequence a position belongs to.
pub(crate) fn sequence_of(position: u64) -> u64 {
    position >> INDEX_BITS
}

/// The names of one journal in NATS.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    /// Subject prefix, e.g. `retrace`.
    pub prefix: String,
    /// The JetStream stream of events, e.g. `RETRACE_EVENTS`.
    pub events: String,
    /// The key-value bucket of snapshots, e.g. `RETRACE_SNAPSHOTS`.
    pub snapshots: String,
    /// The work-queue stream of messages between servers, e.g.
    /// `RETRACE_INBOX` (see `inbox`).
    pub inbox: String,
    pub partitions: u32,
}

impl Names {
    pub fn new(prefix: &str, partitions: u32) -> Names {
        let upper: String = prefix
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        Names {
            prefix: prefix.to_owned(),
            events: format!("{upper}_EVENTS"),
            snapshots: format!("{upper}_SNAPSHOTS"),
            inbox: format!("{upper}_INBOX"),
            partitions,
        }
    }

    /// Every event subject.
    pub fn all_events(&self) -> String {
        format!("{}.ev.>", self.prefix)
    }

    /// The event subjects of one partition.
    pub fn partition_events(&self, partition: u32) -> String {
        format!("{}.ev.{partition}.>", self.prefix)
    }

    /// The subject of the messages to a partition's holder (see `inbox`).
    pub fn inbox_subject(&self, partition: u32) -> String {
        format!("{}.in.{partition}", self.prefix)
    }

    /// Every partition's inbox subject.
    pub fn all_inboxes(&self) -> String {
        format!("{}.in.>", self.prefix)
    }

    /// A partition's fence subject (see `lease`).
    pub fn fence(&self, partition: u32) -> String {
        format!("{}.fence.{partition}", self.prefix)
    }

    /// Every partition's fence subject.
    pub fn all_fences(&self) -> String {
        format!("{}.fence.>", self.prefix)
    }

    /// Where the stream republishes what it stored (the live feed).
    pub fn stored_events(&self) -> String {
        format!("{}.stored.>", self.prefix)
    }

    /// The partition of a stream (see [`retrace_journal::partition_of`]).
    pub fn partition(&self, stream: StreamId) -> u32 {
        retrace_journal::partition_of(stream, self.partitions)
    }

    /// The subject a stream's appends are published on.
    pub fn subject(&self, stream: StreamId) -> String {
        format!(
            "{}.ev.{}.{}",
            self.prefix,
            self.partition(stream),
            hex(stream.as_bytes())
        )
    }

    /// The stream a subject belongs to, if it is an event subject of ours.
    pub fn stream_of(&self, subject: &str) -> Option<StreamId> {
        let rest = subject.strip_prefix(&self.prefix)?.strip_prefix(".ev.")?;
        let (_, id) = rest.split_once('.')?;
        let bytes = unhex(id)?;
        Some(StreamId::from_bytes(bytes))
    }

    /// The key of a stream's snapshot.
    pub fn snapshot_key(&self, stream: StreamId) -> String {
        hex(stream.as_bytes())
    }
}

fn hex(bytes: &[u8; 16]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<[u8; 16]> {
    if text.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_name_their_stream_and_sort_as_ids_do() {
        let names = Names::new("retrace", 64);
        let a = StreamId::from_bytes([1; 16]);
        let b = StreamId::from_bytes([0xfe; 16]);
        assert_eq!(names.stream_of(&names.subject(a)), Some(a));
        assert_eq!(names.stream_of(&names.subject(b)), Some(b));
        assert!(names.snapshot_key(a) < names.snapshot_key(b));
        assert_eq!(names.stream_of("retrace.ev.3.zz"), None);
        assert_eq!(names.stream_of("other.ev.3.0101"), None);
        assert!(names.partition(b) < 64);
        assert_eq!(names.events, "RETRACE_EVENTS");
        assert_eq!(Names::new("a-b.c", 4).snapshots, "A_B_C_SNAPSHOTS");
    }

    #[test]
    fn positions_order_as_messages_then_indexes() {
        assert_eq!(position(1, 0), 4096);
        assert!(position(1, 4095) < position(2, 0));
        assert_eq!(sequence_of(position(77, 12)), 77);
        assert_eq!(sequence_of(0), 0);
    }
}
