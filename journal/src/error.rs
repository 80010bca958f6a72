//! The journal's one error type. Expected conditions a caller must handle
//! (a sequence conflict, a record that fails its checks) are variants with
//! their own stable names, so callers match on them instead of on text.

use crate::ExecutionId;

/// Everything that can go wrong in the journal.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Optimistic concurrency: the caller expected a different next `seq`.
    /// Nothing was written.
    #[error(
        "[JOURNAL-SEQ] sequence conflict on execution {execution}: the append expected next seq {expected}, but the next seq is {actual}"
    )]
    SeqConflict {
        execution: ExecutionId,
        expected: u64,
        actual: u64,
    },

    /// The append itself is malformed (empty batch, oversized event, bad kind).
    /// Nothing was written.
    #[error("[JOURNAL-INVALID] invalid append: {0}")]
    InvalidAppend(String),

    /// A stored record failed its checks when it was read: it does not decode,
    /// its hash does not chain, or it is not where its key says it is.
    #[error("[JOURNAL-CORRUPT] corrupt record: execution {execution} seq {seq}: {reason}")]
    Corrupt {
        execution: ExecutionId,
        seq: u64,
        reason: String,
    },

    /// A stored index or snapshot entry failed its checks.
    #[error("[JOURNAL-CORRUPT] corrupt journal index: {0}")]
    CorruptIndex(String),

    /// The data folder was written by a format this build does not know.
    #[error(
        "[JOURNAL-FORMAT] unsupported journal format version {found} (this build reads version {supported})"
    )]
    UnsupportedFormat { found: u8, supported: u8 },

    /// Another process holds the data folder.
    #[error(
        "[JOURNAL-LOCKED] the journal at {path} is in use by another process (only one retrace may open a data folder)"
    )]
    Locked { path: String },

    /// The storage layer failed. After a failed write or flush the journal
    /// stops accepting appends (fail-stop): an acknowledgement must always mean
    /// "on disk", and after an IO error we can no longer promise that.
    #[error("[JOURNAL-STORAGE] storage error: {0}")]
    Storage(String),

    /// A previous write or flush failed; the journal refuses further appends.
    #[error(
        "[JOURNAL-POISONED] the journal stopped accepting appends after a storage failure: {0}"
    )]
    Poisoned(String),

    /// The journal has been closed (its writer has stopped).
    #[error("[JOURNAL-CLOSED] the journal is closed")]
    Closed,
}

impl From<sled::Error> for Error {
    fn from(e: sled::Error) -> Self {
        Error::Storage(e.to_string())
    }
}

/// Shorthand used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
