//! The fault-injecting journal (`src/faulty.rs`) is a `Journal` like any
//! other: with no crash armed it must keep every promise of the trait, or
//! the crash tests built on it would test a journal that is not one. It runs
//! the journal crate's conformance kit over an in-memory sled journal.

use std::sync::Arc;

use retrace_journal::store::memory::MemoryStore;
use retrace_journal::testkit::{BoxFuture, Harness};
use retrace_journal::{EventLog, Journal, Options};
use retrace_replay_tests::faulty::{CrashPoint, FaultyJournal};

/// A faulty journal that never crashes, over one in-memory store (each open
/// after the last handle is gone is a restart over the same data).
struct NeverCrashes(MemoryStore);

impl Harness for NeverCrashes {
    fn open(&self) -> BoxFuture<'_, Arc<dyn Journal>> {
        let opened = EventLog::in_memory(self.0.clone(), Options::default());
        Box::pin(async move {
            let log = opened.expect("an in-memory journal opens");
            FaultyJournal::new(Arc::new(log), 0, CrashPoint::BeforeFlush) as Arc<dyn Journal>
        })
    }
}

retrace_journal::journal_conformance!(NeverCrashes(MemoryStore::new()));
