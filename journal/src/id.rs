//! Execution ids: 16 bytes, shown as a UUID. The journal treats an execution
//! as nothing more than a named stream of events; it knows nothing of workflows.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The id of one event stream (one execution's history).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ExecutionId(Uuid);

impl ExecutionId {
    /// The all-zero id. Callers may reserve it for a stream of their own.
    pub const NIL: ExecutionId = ExecutionId(Uuid::nil());

    /// A fresh id (the runtime calls this; it is recorded in events, so replay
    /// never needs to call it again). Ids are UUIDv7: time-ordered, so new
    /// executions' index keys land together at the end of the key space (as
    /// the log's do, which is what the store writes fastest), and listing by
    /// id lists by start time.
    pub fn random() -> Self {
        ExecutionId(Uuid::now_v7())
    }

    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        ExecutionId(Uuid::from_bytes(bytes))
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }
}

impl fmt::Display for ExecutionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl fmt::Debug for ExecutionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ExecutionId({})", self.0.hyphenated())
    }
}

impl FromStr for ExecutionId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(ExecutionId)
    }
}
