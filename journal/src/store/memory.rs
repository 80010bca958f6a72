//! An in-memory store for tests and simulations. `flush` is a no-op; nothing
//! survives the process.
//!
//! Owns one shared ordered map. It must never be mistaken for durable: it is
//! for tests, simulations and benchmarks.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Op, Store};
use crate::error::Result;

/// A shared in-memory ordered map. Clones share the same data, so a test can
/// drop a journal and open a new one over the same store (a "restart").
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    map: Arc<Mutex<BTreeMap<Vec<u8>, Vec<u8>>>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<Vec<u8>, Vec<u8>>> {
        // A panic while holding the lock cannot leave the map half-written
        // (every mutation is a single insert/remove loop below), so a
        // poisoned lock is safe to keep using.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An independent copy of everything stored now: what a disk holds at
    /// the instant of a crash. Whatever the old store's users do afterwards
    /// does not reach the copy, as nothing a dead process does reaches disk.
    pub fn duplicate(&self) -> MemoryStore {
        let map = self.lock().clone();
        MemoryStore {
            map: Arc::new(Mutex::new(map)),
        }
    }

    /// Overwrites one raw entry, bypassing the journal: for tampering tests.
    pub fn raw_put(&self, key: Vec<u8>, value: Vec<u8>) {
        self.lock().insert(key, value);
    }

    /// Every raw entry, for tampering tests.
    pub fn raw_entries(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

impl Store for MemoryStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.lock().get(key).cloned())
    }

    fn scan(&self, from: &[u8], to: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        if from >= to {
            return Ok(Vec::new());
        }
        Ok(self
            .lock()
            .range(from.to_vec()..to.to_vec())
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn last(&self, from: &[u8], to: &[u8]) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        if from >= to {
            return Ok(None);
        }
        Ok(self
            .lock()
            .range(from.to_vec()..to.to_vec())
            .next_back()
            .map(|(k, v)| (k.clone(), v.clone())))
    }

    fn apply(&self, ops: Vec<Op>) -> Result<()> {
        let mut map = self.lock();
        for op in ops {
            match op {
                Op::Put(k, v) => {
                    map.insert(k, v);
                }
                Op::Delete(k) => {
                    map.remove(&k);
                }
            }
        }
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }
}
