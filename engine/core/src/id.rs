//! Execution ids: 16 bytes, shown as a UUID.
//!
//! Owns the id type the language, the machine and every layer above share.
//! It never makes an id up: fresh ids come from the runtime (which reads the
//! clock for a time-ordered UUIDv7) and are recorded in events, and a child's
//! id is derived from its parent's (`machine::child_id`), so replay never
//! needs a new one.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The id of one execution (and of its history in the journal).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ExecutionId(Uuid);

impl ExecutionId {
    /// The all-zero id, the smallest there is (a bound for ranges).
    pub const NIL: ExecutionId = ExecutionId(Uuid::nil());

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
