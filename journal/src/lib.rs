//! retrace-journal: the append-only event store everything in retrace stands
//! on. It knows nothing about workflows: it keeps, per stream id, a dense
//! sequence of opaque events, chained by hash. (To the engine a stream is one
//! execution's history; the journal does not care.)
//!
//! The [`Journal`] trait is the interface and states what every
//! implementation promises; the conformance kit (`testkit`, behind the
//! `testkit` feature) checks those promises against any implementation.
//! [`EventLog`] is the implementation here, over an ordered key-value
//! [`store`] (sled on disk; in memory; or an overlay that keeps its writes
//! to itself).
//!
//! # Record format
//! Each event is one record `{ format version, stream id, seq, position,
//! prev_position, recorded_at_ms, kind, payload, hash }`, encoded with
//! bincode 2 (fixed-width little-endian integers) behind a format-version
//! byte, with `hash = blake3(prev_hash || encoded record)` chaining each
//! stream's history from 32 zero bytes. `seq` is dense per stream from 1;
//! in `EventLog`, `position` is dense over the whole journal from 1 (the
//! commit order). The byte-level layout, keys and indexes are in
//! `docs/journal-format.md` and in the `record` and `keys` modules.
//!
//! # Durability promise
//! A durable journal (the default) acknowledges an append only after the
//! store has flushed it to disk; a reader never sees an event before that.
//! Appends from all streams are group-committed: the one writer thread
//! gathers what is queued into one atomic batch and one flush, then
//! acknowledges them all. An append names the `seq` it expects to write
//! first and is refused (writing nothing) if that is not the next one, so two
//! writers can never interleave one stream's history. Everything that is
//! not an event record (the seq index, stream heads, snapshots) is
//! derived and can be rebuilt from the records.
//!
//! # Modules
//! Each module says what it owns and what it must never do. Each imports only
//! from modules on the lines above its own (so no two import each other):
//!
//! ```text
//! stream, options          ids; how the sled journal opens
//! error                    the error type                    ← stream
//! record                   one record's bytes                ← error, stream
//! subscription, keys,      the subscription handle; the key  ← record, error, stream
//!   fanout                   layout; live channels
//! journal, store           the trait; the key-value stores   ← subscription / keys
//! snapshot, recovery       snapshot bytes; opening, replay   ← journal, keys / store
//! shared, verify           reads under the watermark; checks ← recovery, store, keys
//! tail                     the stored-then-live follower     ← shared, journal
//! writer                   every write, group commit         ← shared, verify, recovery, fanout
//! log                      `EventLog`: opening, the handle   ← writer, tail, …
//! testkit                  the conformance kit               ← the public API only
//! ```
//!
//! # What it must never do
//! Interpret payloads, read a clock, or acknowledge anything it has not
//! flushed (unless opened with `durable: false`).

mod error;
mod fanout;
mod journal;
mod keys;
mod log;
mod options;
mod partition;
pub mod record;
mod recovery;
mod shared;
mod snapshot;
pub mod store;
mod stream;
mod subscription;
mod tail;
#[cfg(feature = "testkit")]
pub mod testkit;
mod verify;
mod writer;

pub use error::{BoxedSource, Error, Result, StorageError};
pub use journal::{Appended, Health, Journal, Snapshot, StreamHead, Tail};
pub use log::EventLog;
pub use options::{MIN_FREE_BYTES_DEFAULT, Options};
pub use partition::{Delivery, Share, is_home, partition_of};
pub use record::{EventRecord, NewEvent};
pub use shared::Stats;
pub use stream::StreamId;
pub use subscription::Subscription;
pub use verify::{Defect, DefectKind, VerifyReport, verify_store};
