//! The storage under the journal: one ordered key-value space with atomic
//! batches and an explicit flush. The journal's logic (framing, chaining,
//! group commit, indexes, verify) is written once against this trait; sled is
//! the embedded default, an in-memory store serves tests, and an overlay
//! opens an existing store read-only (writes stay in memory).
//!
//! A store never interprets keys or values (but [`holds_journal`], which
//! knows the one key that marks a journal).

pub mod memory;
pub mod overlay;
pub mod sled;

use std::sync::Arc;

use crate::error::Result;
use crate::keys;

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
    /// Makes the store take writes again after a write or flush failed, if
    /// it can now (the disk has room again): the journal's writer calls it,
    /// between groups, while it refuses appends. What it keeps is what the
    /// store had made durable. The default has nothing to repair.
    fn recover(&self) -> Result<()> {
        Ok(())
    }
    /// The free space on the disk under the store, if it has one: the
    /// writer refuses a group while less than its reserve is free.
    fn free_bytes(&self) -> Result<Option<u64>> {
        Ok(None)
    }
}

/// A shared store is a store (so overlays can be stacked over a `dyn Store`).
impl<S: Store + ?Sized> Store for Arc<S> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        (**self).get(key)
    }
    fn scan(&self, from: &[u8], to: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        (**self).scan(from, to, limit)
    }
    fn last(&self, from: &[u8], to: &[u8]) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        (**self).last(from, to)
    }
    fn apply(&self, ops: Vec<Op>) -> Result<()> {
        (**self).apply(ops)
    }
    fn flush(&self) -> Result<()> {
        (**self).flush()
    }
    fn recover(&self) -> Result<()> {
        (**self).recover()
    }
    fn free_bytes(&self) -> Result<Option<u64>> {
        (**self).free_bytes()
    }
}

/// Whether `store` holds a journal: whether it has the format key that
/// opening a journal writes first (whatever its version). Only reads. A
/// journal opened over a store without it would initialise the store as a
/// new, empty journal.
pub fn holds_journal(store: &dyn Store) -> Result<bool> {
    Ok(store.get(keys::META_FORMAT)?.is_some())
}
