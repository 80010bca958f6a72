//! Partitions and shares: how a journal that several servers share says
//! which streams this server may append to now.
//!
//! A shared journal splits its streams into a fixed number of partitions by
//! a hash of their ids ([`partition_of`]), and each server holds some of
//! them at a time; the [`Share`] a journal hands out is that count and the
//! set held, kept current. A journal only one process writes (the sled
//! journal) has no share: it holds every stream.
//!
//! Servers sharing a journal talk to each other through it: a message sent
//! to a stream ([`Journal::send`](crate::Journal::send)) arrives, as a
//! [`Delivery`], in the inbox of whichever server holds the stream's
//! partition, and keeps arriving (there, or at the next holder) until one
//! says it is done with it.
//!
//! Owns the hash that places a stream, which every backend and every
//! server must compute alike (a stream's partition is part of where it is
//! stored), and the shape of a delivery. It must never change the hash for
//! a stored journal.

use std::collections::BTreeSet;

use tokio::sync::{oneshot, watch};

use crate::stream::StreamId;

/// The partition of `stream` among `partitions`: FNV-1a of its id's bytes,
/// modulo the count (0 partitions count as one); a home stream's is 0.
pub fn partition_of(stream: StreamId, partitions: u32) -> u32 {
    if is_home(stream) {
        return 0;
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in stream.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % u64::from(partitions.max(1))) as u32
}

/// Whether `stream` is a home stream: the nil id, or one whose first 15
/// bytes are all `0xff` (ids no UUIDv4 or v7 can be, which a journal's user
/// reserves for what is not one history among many: retrace's catalog,
/// tokens, schedules, breakers, limits and webhooks). Home streams all live
/// in partition 0, so one server (its holder) writes every one of them.
pub fn is_home(stream: StreamId) -> bool {
    let bytes = stream.as_bytes();
    stream == StreamId::NIL || bytes[..15].iter().all(|b| *b == 0xff)
}

/// The partitions a server holds of a journal it shares with others.
#[derive(Debug, Clone)]
pub struct Share {
    /// How many partitions the journal has.
    pub partitions: u32,
    /// The partitions this server holds, changed as it gains and loses them.
    /// An append to a stream outside them is refused.
    pub held: watch::Receiver<BTreeSet<u32>>,
}

impl Share {
    /// The partition of `stream`.
    pub fn partition_of(&self, stream: StreamId) -> u32 {
        partition_of(stream, self.partitions)
    }

    /// The partitions held now.
    pub fn held(&self) -> BTreeSet<u32> {
        self.held.borrow().clone()
    }
}

/// A message sent to a stream, as it arrives at the server holding the
/// stream's partition. Say [`Delivery::done`] once it is handled for good;
/// [`Delivery::later`] (or dropping it) has it arrive again.
#[derive(Debug)]
pub struct Delivery {
    /// The stream it was sent to.
    pub to: StreamId,
    pub message: Vec<u8>,
    handled: oneshot::Sender<bool>,
}

impl Delivery {
    /// A delivery, and what its handler will answer (`true`: done).
    pub fn new(to: StreamId, message: Vec<u8>) -> (Delivery, oneshot::Receiver<bool>) {
        let (handled, answer) = oneshot::channel();
        (
            Delivery {
                to,
                message,
                handled,
            },
            answer,
        )
    }

    /// Handled for good: it is not delivered again.
    pub fn done(self) {
        let _ = self.handled.send(true);
    }

    /// Not handled now (this server no longer holds the stream, or cannot
    /// write): delivered again a little later, here or at the next holder.
    pub fn later(self) {
        let _ = self.handled.send(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_falls_in_one_partition_below_the_count() {
        for n in 0..200u8 {
            let stream = StreamId::from_bytes([n; 16]);
            assert!(partition_of(stream, 64) < 64);
            assert_eq!(partition_of(stream, 1), 0);
            assert_eq!(partition_of(stream, 0), 0);
        }
    }

    /// The placement is part of where a stream is stored: pinned, so a
    /// change to the hash shows up here before it strands a journal.
    #[test]
    fn the_placement_of_a_stream_never_changes() {
        assert_eq!(partition_of(StreamId::from_bytes([7; 16]), 64), 53);
        assert_eq!(partition_of(StreamId::from_bytes([0xfe; 16]), 64), 37);
    }

    #[test]
    fn home_streams_live_in_partition_zero() {
        let mut top = [0xff; 16];
        for last in [0x00, 0xfb, 0xfc, 0xfd, 0xfe, 0xff] {
            top[15] = last;
            assert!(is_home(StreamId::from_bytes(top)));
            assert_eq!(partition_of(StreamId::from_bytes(top), 64), 0);
        }
        assert_eq!(partition_of(StreamId::NIL, 64), 0);
        let mut almost = [0xff; 16];
        almost[14] = 0xfe;
        assert!(!is_home(StreamId::from_bytes(almost)));
        assert!(!is_home(StreamId::from_bytes([1; 16])));
    }
}
