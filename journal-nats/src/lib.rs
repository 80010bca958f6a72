//! retrace-journal-nats: the [`Journal`](retrace_journal::Journal) on a NATS
//! JetStream stream, so the journal outlives any one machine. JetStream is a
//! Raft-replicated log: what an event-sourced journal is. This crate keeps
//! the same promises as the sled journal (it runs the same conformance kit)
//! and adds nothing the engine must know about.
//!
//! # Layout
//! - One JetStream stream (`<PREFIX>_EVENTS` by default `RETRACE_EVENTS`)
//!   holds every event, one message per append, on the subject
//!   `<prefix>.ev.<partition>.<stream id>`: the stream's sequence is the
//!   commit order of appends.
//! - A message is an *envelope*: the position of the stream's previous
//!   event, then the append's records in the journal's record format
//!   [`FORMAT_PLACED_BY_STORE`](retrace_journal::record::FORMAT_PLACED_BY_STORE):
//!   hash-chained exactly as on sled, but without their position inside the
//!   hashed bytes, since JetStream numbers a message only when it commits it.
//! - An event's position is `message sequence × 4096 + its index in the
//!   message` (an append holds at most 4,096 events): strictly increasing in
//!   commit order, with gaps, which the trait allows.
//! - Appends to a stream are conditional on the message sequence of the
//!   stream's last append (`Nats-Expected-Last-Subject-Sequence`), so an
//!   append that does not follow the history it was built on is refused by
//!   the server, from any writer.
//! - A server that appends holds every partition's lease (bucket
//!   `<PREFIX>_LEASES`) and fences its appends with it, so a second server
//!   on the same journal cannot start, and one that lost a partition cannot
//!   write to it (see `lease`).
//! - Snapshots live in a key-value bucket (`<PREFIX>_SNAPSHOTS`), one key
//!   per stream, history 1.
//!
//! # Modules
//! ```text
//! names      subjects, stream names, partitions, positions
//! envelope   one append's message: encoding, decoding, chain checks
//! direct     batched direct reads of stored messages
//! heads      what is known of each stream's last event; the stream ids
//! reader     reads: one stream, everything, a head, the last position
//! writer     the append pipeline: one task, requests in call order
//! lease      partitions' leases and the fences appends carry
//! share      partitions shared among several servers (rendezvous hashing)
//! live       the live feed: what the stream stored, republished
//! tail       subscriptions: stored messages, then the live feed
//! journal    `NatsJournal`: opening, the `Journal` implementation
//! server     (feature `testkit`) real nats-server processes for tests
//! ```
//!
//! # What it must never do
//! Interpret payloads, acknowledge an append the server has not
//! acknowledged, or hide a NATS error: every failure reaches the caller as
//! a journal error naming what was asked of NATS.

mod direct;
mod envelope;
mod heads;
mod inbox;
mod journal;
mod lease;
mod live;
mod names;
mod patience;
mod reader;
#[cfg(feature = "testkit")]
pub mod server;
mod share;
mod tail;
mod writer;

pub use journal::{NatsCredentials, NatsJournal, NatsOptions};
pub use lease::{Holder, Ownership};
pub use names::{EVENTS_PER_MESSAGE, PARTITIONS_DEFAULT};
pub use share::preferred;
