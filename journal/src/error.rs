//! The journal's one error type. Expected conditions a caller must handle
//! (a sequence conflict, a record that fails its checks) are variants with
//! their own stable names, so callers match on them instead of on text.
//!
//! Every message starts with a stable code in brackets (`[JOURNAL-SEQ]`,
//! `[JOURNAL-CORRUPT]`, `[JOURNAL-LOCKED]`, …); the rest is for people. A
//! failure that has an underlying error (sled's, the file system's, the
//! record decoder's) keeps it as its [`source`](std::error::Error::source),
//! so a caller can look at it (an `io::ErrorKind`, say); its text is also in
//! the message, so `to_string()` alone reads complete.
//!
//! Owns the error types. It must never decide what a caller does about an
//! error (retry, stop, report): it only says what happened.

use std::sync::Arc;

use crate::stream::StreamId;

/// An underlying error kept as a [`source`](std::error::Error::source).
pub type BoxedSource = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in the journal.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Optimistic concurrency: the caller expected a different next `seq`.
    /// Nothing was written.
    #[error(
        "[JOURNAL-SEQ] sequence conflict on stream {stream}: the append expected next seq {expected}, but the next seq is {actual}"
    )]
    SeqConflict {
        stream: StreamId,
        expected: u64,
        actual: u64,
    },

    /// The append itself is malformed (empty batch, oversized event, bad kind).
    /// Nothing was written.
    #[error("[JOURNAL-INVALID] invalid append: {0}")]
    InvalidAppend(String),

    /// A stored record failed its checks when it was read: it does not decode,
    /// its hash does not chain, or it is not where its key says it is.
    /// `source` is the decoder's error when the record did not decode.
    #[error("[JOURNAL-CORRUPT] corrupt record: stream {stream} seq {seq}: {reason}")]
    Corrupt {
        stream: StreamId,
        seq: u64,
        reason: String,
        #[source]
        source: Option<BoxedSource>,
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
    /// refuses writes until its storage takes them again
    /// ([`Error::Unavailable`]): an acknowledgement must always mean "on
    /// disk", and after an I/O error we can no longer promise that.
    #[error("[JOURNAL-STORAGE] storage error: {0}")]
    Storage(#[from] StorageError),

    /// A write or flush failed (with the error inside) and the storage does
    /// not take writes yet (a full disk, say). Appends, snapshots and
    /// flushes are refused, writing nothing, until the writer's retry finds
    /// the storage writable again; then the journal resumes on its own.
    #[error(
        "[JOURNAL-UNAVAILABLE] the journal refuses writes until its storage takes them again (it retries on its own): {0}"
    )]
    Unavailable(#[source] Arc<Error>),

    /// The journal has been closed (its writer has stopped).
    #[error("[JOURNAL-CLOSED] the journal is closed")]
    Closed,
}

/// What failed underneath the journal (the inside of [`Error::Storage`]).
///
/// A store other than sled describes its failure with a string:
/// `Error::Storage("disk on fire".into())`.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// sled failed.
    #[error("{0}")]
    Sled(#[from] sled::Error),
    /// A file or folder operation failed; `action` says which (e.g. "cannot
    /// create data folder /data").
    #[error("{action}: {source}")]
    Io {
        action: String,
        #[source]
        source: std::io::Error,
    },
    /// The write or flush of the group this request was committed with
    /// failed with this error; every request of that group gets it.
    #[error("{0}")]
    Write(#[source] Arc<Error>),
    /// The disk under the store has less free space than the journal keeps
    /// in reserve: the group was refused before anything was written, so the
    /// disk never fills under the store.
    #[error(
        "the disk under the journal has {free} bytes free, below the {reserve} bytes it keeps in reserve"
    )]
    LowSpace { free: u64, reserve: u64 },
    /// A networked store failed; `action` says what was asked of it (e.g.
    /// "cannot publish to NATS").
    #[error("{action}: {source}")]
    Remote {
        action: String,
        #[source]
        source: BoxedSource,
    },
    /// Anything else, in words (a store that is not sled, a poisoned lock).
    #[error("{0}")]
    Other(String),
}

impl From<String> for StorageError {
    fn from(message: String) -> Self {
        StorageError::Other(message)
    }
}

impl From<&str> for StorageError {
    fn from(message: &str) -> Self {
        StorageError::Other(message.to_owned())
    }
}

impl From<sled::Error> for Error {
    fn from(e: sled::Error) -> Self {
        Error::Storage(StorageError::Sled(e))
    }
}

impl Error {
    /// A record that failed a check of ours (no underlying error).
    pub fn corrupt(stream: StreamId, seq: u64, reason: impl Into<String>) -> Error {
        Error::Corrupt {
            stream,
            seq,
            reason: reason.into(),
            source: None,
        }
    }

    /// A file-system operation that failed.
    pub(crate) fn io(action: impl Into<String>, source: std::io::Error) -> Error {
        Error::Storage(StorageError::Io {
            action: action.into(),
            source,
        })
    }
}

/// Shorthand used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn every_message_keeps_its_code_and_its_cause() {
        let denied = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
        let e = Error::io("cannot create data folder /data", denied);
        assert_eq!(
            e.to_string(),
            "[JOURNAL-STORAGE] storage error: cannot create data folder /data: denied"
        );
        let io = e
            .source()
            .and_then(|s| s.source())
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .unwrap();
        assert_eq!(io.kind(), std::io::ErrorKind::PermissionDenied);

        let described = Error::Storage("disk on fire".into());
        assert_eq!(
            described.to_string(),
            "[JOURNAL-STORAGE] storage error: disk on fire"
        );

        let poisoned = Error::Unavailable(Arc::new(described));
        assert_eq!(
            poisoned.to_string(),
            "[JOURNAL-UNAVAILABLE] the journal refuses writes until its storage takes them \
             again (it retries on its own): [JOURNAL-STORAGE] storage error: disk on fire"
        );
        let cause = poisoned.source().unwrap().downcast_ref::<Arc<Error>>();
        assert!(matches!(cause.map(|c| &**c), Some(Error::Storage(_))));

        let corrupt = Error::corrupt(StreamId::NIL, 3, "record is missing");
        assert!(corrupt.to_string().starts_with("[JOURNAL-CORRUPT] "));
        assert!(corrupt.source().is_none());
    }

    #[test]
    fn sled_errors_are_kept() {
        let e: Error = sled::Error::Unsupported("nope".into()).into();
        assert!(
            e.to_string()
                .starts_with("[JOURNAL-STORAGE] storage error: ")
        );
        let sled = e
            .source()
            .and_then(|s| s.source())
            .and_then(|s| s.downcast_ref::<sled::Error>());
        assert!(matches!(sled, Some(sled::Error::Unsupported(_))));
    }
}
