//! The storage under the journal: one ordered key-value space with atomic
//! batches and an explicit flush. The journal's logic (framing, chaining,
//! group commit, indexes, verify) is written once against this trait; sled is
//! the embedded default and an in-memory store serves tests.
//!
//! A store never interprets keys or values.

pub mod memory;
pub mod sled;

use crate::Result;

/// One write in an atomic batch.
#[derive(Debug, Clone)]
pub enum Op {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
}

/// An ordered key-value space.
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Up to `limit` entries with `from <= key < to`, in key order.
    fn scan(&self, from: &[u8], to: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;
    /// The entry with the largest key in `from <= key < to`.
    fn last(&self, from: &[u8], to: &[u8]) -> Result<Option<(Vec<u8>, Vec<u8>)>>;
    /// Applies every op or none (also across a crash).
    fn apply(&self, ops: Vec<Op>) -> Result<()>;
    /// Returns once everything applied before it is on stable storage.
    fn flush(&self) -> Result<()>;
}
