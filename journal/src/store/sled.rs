//! The sled store: one sled tree; batches are sled batches (atomic across a
//! crash) and `flush` is sled's flush, which fsyncs.
//!
//! Owns the data folder: its lock file and the sled database. It must never
//! open a folder another process holds (it refuses with `Error::Locked`).

use std::fs::{File, TryLockError};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Op, Store};
use crate::error::{Error, Result};

/// A store in a sled data folder.
#[derive(Debug, Clone)]
pub struct SledStore {
    db: sled::Db,
    tree: sled::Tree,
    /// Our own exclusive lock on the folder, held as long as any clone lives.
    _lock: Arc<File>,
}

/// The lock file retrace takes in a data folder before sled opens it.
pub const LOCK_FILE: &str = "retrace.lock";

/// How long to wait for sled to let go of a folder that this process closed
/// a moment ago (sled releases its own lock from background threads).
const SLED_RELEASE_WAIT: Duration = Duration::from_secs(10);

impl SledStore {
    /// Opens (or creates) the data folder. A folder held by another process
    /// is refused at once with [`Error::Locked`].
    pub fn open(path: &Path) -> Result<SledStore> {
        std::fs::create_dir_all(path)
            .map_err(|e| Error::io(format!("cannot create data folder {}", path.display()), e))?;
        let lock = take_lock(path)?;
        // We hold the folder's lock, so a sled lock error can only be sled
        // still releasing a handle this process closed: wait for it, briefly.
        let started = Instant::now();
        let db = loop {
            match sled::Config::new()
                .path(path)
                .mode(sled::Mode::HighThroughput)
                .open()
            {
                Ok(db) => break db,
                Err(sled::Error::Io(io))
                    if io.to_string().contains("could not acquire lock")
                        && started.elapsed() < SLED_RELEASE_WAIT =>
                {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(e.into()),
            }
        };
        let tree = db.open_tree("journal")?;
        Ok(SledStore {
            db,
            tree,
            _lock: Arc::new(lock),
        })
    }
}

fn take_lock(path: &Path) -> Result<File> {
    let lock_path = path.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| Error::io(format!("cannot open {}", lock_path.display()), e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(Error::Locked {
            path: path.display().to_string(),
        }),
        Err(TryLockError::Error(e)) => {
            Err(Error::io(format!("cannot lock {}", lock_path.display()), e))
        }
    }
}

impl Store for SledStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.tree.get(key)?.map(|v| v.to_vec()))
    }

    fn scan(&self, from: &[u8], to: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        if from >= to {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for kv in self.tree.range(from..to).take(limit) {
            let (k, v) = kv?;
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    fn last(&self, from: &[u8], to: &[u8]) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        if from >= to {
            return Ok(None);
        }
        match self.tree.range(from..to).next_back() {
            Some(kv) => {
                let (k, v) = kv?;
                Ok(Some((k.to_vec(), v.to_vec())))
            }
            None => Ok(None),
        }
    }

    fn apply(&self, ops: Vec<Op>) -> Result<()> {
        let mut batch = sled::Batch::default();
        for op in ops {
            match op {
                Op::Put(k, v) => batch.insert(k, v),
                Op::Delete(k) => batch.remove(k),
            }
        }
        self.tree.apply_batch(batch)?;
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }
}
