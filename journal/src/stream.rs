//! Stream ids: 16 bytes, shown as a UUID. A stream is nothing more than a
//! named, dense sequence of events; what a stream stands for (to the engine,
//! one execution's history) is its caller's business.
//!
//! Owns the id type. It must never carry meaning beyond identity and order.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The id of one event stream.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StreamId(Uuid);

impl StreamId {
    /// The all-zero id. Callers may reserve it for a stream of their own.
    pub const NIL: StreamId = StreamId(Uuid::nil());

    /// A fresh id (the runtime calls this; it is recorded in events, so replay
    /// never needs to call it again). Ids are UUIDv7: time-ordered, so new
    /// streams' index keys land together at the end of the key space (as
    /// the log's do, which is what the store writes fastest), and listing by
    /// id lists by creation time.
    pub fn random() -> Self {
        StreamId(Uuid::now_v7())
    }

    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        StreamId(Uuid::from_bytes(bytes))
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl fmt::Debug for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamId({})", self.0.hyphenated())
    }
}

impl FromStr for StreamId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(StreamId)
    }
}
