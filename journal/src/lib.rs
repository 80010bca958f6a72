//! retrace-journal: the append-only event store everything in retrace stands
//! on. It knows nothing about workflows: it keeps, per execution id, a dense
//! sequence of opaque events, chained by hash.
//!
//! # Record format
//! Each event is one record `{ format version, execution id, seq, position,
//! recorded_at_ms, kind, payload, hash }`, encoded with bincode 2 (fixed-width
//! little-endian integers) behind a format-version byte, with
//! `hash = blake3(prev_hash || encoded record)` chaining each execution's
//! history from 32 zero bytes. `seq` is dense per execution from 1;
//! `position` is dense over the whole journal from 1 (the commit order). The
//! byte-level layout, keys and indexes are in `docs/journal-format.md` and in
//! the `record` and `keys` modules.
//!
//! # Durability promise
//! A durable journal (the default) acknowledges an append only after the
//! store has flushed it to disk; a reader never sees an event before that.
//! Appends from all executions are group-committed: the one writer thread
//! gathers what is queued into one atomic batch and one flush, then
//! acknowledges them all. An append names the `seq` it expects to write
//! first and is refused (writing nothing) if that is not the next one, so two
//! writers can never interleave one execution's history. Everything that is
//! not an event record (global order index, execution heads, snapshots) is
//! derived and can be rebuilt from the records.
//!
//! # What it must never do
//! Interpret payloads, read a clock, or acknowledge anything it has not
//! flushed (unless opened with `durable: false`).

mod error;
mod fanout;
mod id;
mod journal;
mod keys;
mod log;
pub mod record;
mod snapshot;
pub mod store;
mod subscription;
mod verify;
mod writer;

pub use error::{Error, Result};
pub use id::ExecutionId;
pub use journal::{Appended, ExecutionHead, Journal, Snapshot, Stats, Tail};
pub use log::{EventLog, Options};
pub use record::{EventRecord, NewEvent};
pub use subscription::Subscription;
pub use verify::{Problem, ProblemKind, VerifyReport, verify_store};
