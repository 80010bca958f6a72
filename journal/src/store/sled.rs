//! The sled store: one sled tree; batches are sled batches (atomic across a
//! crash) and `flush` is sled's flush, which fsyncs.
//!
//! After an I/O error (a full disk, say) sled refuses every further write
//! for as long as that database stays open, even once the disk has room
//! again. [`Store::recover`] therefore checks that the folder takes writes
//! and then closes and reopens sled, which brings back exactly what sled had
//! made durable. Closing a sled that failed can hang for good (its final
//! flush waits on a buffer that was never written), so the close runs on a
//! thread of its own and recovery gives up on it after a while, saying a
//! restart is needed. The journal's free-space reserve exists so that this
//! path is the exception: [`Store::free_bytes`] lets it refuse writes before
//! sled ever sees a full disk.
//!
//! Owns the data folder: its lock file and the sled database. It must never
//! open a folder another process holds (it refuses with `Error::Locked`), and
//! never let go of its own lock while it reopens.

use std::fs::{File, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, mpsc};
use std::time::{Duration, Instant};

use super::{Op, Store};
use crate::error::{Error, Result};

/// A store in a sled data folder.
#[derive(Debug, Clone)]
pub struct SledStore {
    /// The open database; `None` only between a failed reopen and the next.
    open: Arc<RwLock<Option<Open>>>,
    /// Whether a write or flush failed since sled was opened: only then
    /// does recovery reopen it.
    failed: Arc<AtomicBool>,
    path: PathBuf,
    cache_bytes: u64,
    /// Our own exclusive lock on the folder, held as long as any clone lives.
    _lock: Arc<File>,
}

#[derive(Debug)]
struct Open {
    db: sled::Db,
    tree: sled::Tree,
}

/// The lock file retrace takes in a data folder before sled opens it.
pub const LOCK_FILE: &str = "retrace.lock";

/// How long to wait for sled to let go of a folder that this process closed
/// a moment ago (sled releases its own lock from background threads).
const SLED_RELEASE_WAIT: Duration = Duration::from_secs(10);

/// sled's own default page cache: 1 GiB.
pub const CACHE_BYTES_DEFAULT: u64 = 1 << 30;

/// How long recovery waits for a failed sled to close.
const SLED_CLOSE_WAIT: Duration = Duration::from_secs(10);

/// The file [`Store::recover`] writes to learn whether the folder takes
/// writes again, and how much it writes: two of sled's 512 KiB segments, so
/// that a reopened sled has room to start its log.
const PROBE_FILE: &str = "retrace.probe";
const PROBE_BYTES: usize = 1 << 20;

impl SledStore {
    /// Opens (or creates) the data folder with sled's default cache. A
    /// folder held by another process is refused at once with
    /// [`Error::Locked`].
    pub fn open(path: &Path) -> Result<SledStore> {
        SledStore::open_with_cache(path, CACHE_BYTES_DEFAULT)
    }

    /// [`SledStore::open`], with sled's page cache bounded at `cache_bytes`
    /// (most of the server's memory once the journal is larger).
    pub fn open_with_cache(path: &Path, cache_bytes: u64) -> Result<SledStore> {
        std::fs::create_dir_all(path)
            .map_err(|e| Error::io(format!("cannot create data folder {}", path.display()), e))?;
        let lock = take_lock(path)?;
        let open = open_sled(path, cache_bytes)?;
        Ok(SledStore {
            open: Arc::new(RwLock::new(Some(open))),
            failed: Arc::new(AtomicBool::new(false)),
            path: path.to_owned(),
            cache_bytes,
            _lock: Arc::new(lock),
        })
    }

    /// Runs `f` on the open database (under a read lock, so a reopen waits).
    fn with<T>(&self, f: impl FnOnce(&Open) -> Result<T>) -> Result<T> {
        let guard = self
            .open
            .read()
            .map_err(|_| Error::Storage("the sled store's lock was poisoned".into()))?;
        match guard.as_ref() {
            Some(open) => f(open),
            None => Err(Error::Storage(
                "the sled database is closed after a failed reopen; it is retried".into(),
            )),
        }
    }
}

/// A sled that failed may never finish closing (see the module doc): the
/// last handle lets go of it without its final flush, which could only
/// fail, so a process that stops during an outage exits. What sled had made
/// durable is on disk; the rest was never acknowledged.
impl Drop for SledStore {
    fn drop(&mut self) {
        if !self.failed.load(Ordering::Acquire) {
            return;
        }
        if let Some(lock) = Arc::get_mut(&mut self.open) {
            let failed = lock.get_mut().ok().and_then(Option::take);
            std::mem::forget(failed);
        }
    }
}

impl SledStore {
    /// Remembers a failed write or flush, for [`Store::recover`].
    fn noting_failure(&self, result: Result<()>) -> Result<()> {
        if result.is_err() {
            self.failed.store(true, Ordering::Release);
        }
        result
    }
}

/// Closes a sled database that failed, on a thread of its own, waiting at
/// most `wait`: its final flush may never return. If it does not, the
/// thread is left behind (it holds sled's lock on the folder, so the folder
/// cannot be reopened) and the error says to restart.
fn close_within(failed: Open, wait: Duration) -> Result<()> {
    let (closed, done) = mpsc::channel();
    std::thread::Builder::new()
        .name("sled-close".into())
        .spawn(move || {
            drop(failed);
            let _ = closed.send(());
        })
        .map_err(|e| Error::io("cannot start a thread to close sled".to_owned(), e))?;
    done.recv_timeout(wait).map_err(|_| {
        Error::Storage(
            format!(
                "sled did not close within {wait:?} after its write failed; restart the server to resume writes (nothing acknowledged is lost)"
            )
            .into(),
        )
    })
}

/// Opens sled in `path`, whose folder lock this process already holds.
fn open_sled(path: &Path, cache_bytes: u64) -> Result<Open> {
    // We hold the folder's lock, so a sled lock error can only be sled
    // still releasing a handle this process closed: wait for it, briefly.
    let started = Instant::now();
    let db = loop {
        match sled::Config::new()
            .path(path)
            .mode(sled::Mode::HighThroughput)
            .cache_capacity(cache_bytes)
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
    Ok(Open { db, tree })
}

/// Writes, syncs and removes a probe file in `folder`: whether the file
/// system takes writes (has room) again.
fn probe_writes(folder: &Path) -> Result<()> {
    let path = folder.join(PROBE_FILE);
    let written = File::create(&path).and_then(|mut file| {
        file.write_all(&vec![0u8; PROBE_BYTES])?;
        file.sync_all()
    });
    let removed = std::fs::remove_file(&path);
    written.map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
    removed.map_err(|e| Error::io(format!("cannot remove {}", path.display()), e))
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
        self.with(|open| Ok(open.tree.get(key)?.map(|v| v.to_vec())))
    }

    fn scan(&self, from: &[u8], to: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        if from >= to {
            return Ok(Vec::new());
        }
        self.with(|open| {
            let mut out = Vec::new();
            for kv in open.tree.range(from..to).take(limit) {
                let (k, v) = kv?;
                out.push((k.to_vec(), v.to_vec()));
            }
            Ok(out)
        })
    }

    fn last(&self, from: &[u8], to: &[u8]) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        if from >= to {
            return Ok(None);
        }
        self.with(|open| match open.tree.range(from..to).next_back() {
            Some(kv) => {
                let (k, v) = kv?;
                Ok(Some((k.to_vec(), v.to_vec())))
            }
            None => Ok(None),
        })
    }

    fn apply(&self, ops: Vec<Op>) -> Result<()> {
        let mut batch = sled::Batch::default();
        for op in ops {
            match op {
                Op::Put(k, v) => batch.insert(k, v),
                Op::Delete(k) => batch.remove(k),
            }
        }
        self.noting_failure(self.with(|open| Ok(open.tree.apply_batch(batch)?)))
    }

    fn flush(&self) -> Result<()> {
        self.noting_failure(self.with(|open| {
            open.db.flush()?;
            Ok(())
        }))
    }

    fn free_bytes(&self) -> Result<Option<u64>> {
        fs2::available_space(&self.path).map(Some).map_err(|e| {
            Error::io(
                format!("cannot read the free space of {}", self.path.display()),
                e,
            )
        })
    }

    /// Probes the folder with a write; if it takes it, closes sled (which
    /// has stopped taking writes since its I/O error) and opens it again.
    /// While the disk is still full the old database keeps serving reads.
    fn recover(&self) -> Result<()> {
        probe_writes(&self.path)?;
        if !self.failed.load(Ordering::Acquire) {
            // Refused for want of space, never failed: nothing to reopen.
            return Ok(());
        }
        let mut open = self
            .open
            .write()
            .map_err(|_| Error::Storage("the sled store's lock was poisoned".into()))?;
        // Close first: sled holds its own lock on the folder while open.
        if let Some(failed) = open.take() {
            close_within(failed, SLED_CLOSE_WAIT)?;
        }
        *open = Some(open_sled(&self.path, self.cache_bytes)?);
        self.failed.store(false, Ordering::Release);
        Ok(())
    }
}
