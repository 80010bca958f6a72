//! Storage outages: what the engine does while its journal refuses writes
//! (a full disk, say), and when it takes them again.
//!
//! While the journal refuses writes, every command answers its error and
//! changes nothing (a failed append puts the execution back to what is
//! stored). A command's caller sees the error and can retry; a wake-up the
//! engine gives itself (a timer firing, a lease expiring, a child's end,
//! a continuation, an in-process handler's or the `http` capability's
//! result) has no caller. Those are
//! kept here and delivered again once the journal takes writes, so an
//! outage delays executions but never strands one. Delivering one twice is
//! harmless: the machine refuses a trigger that no longer applies.
//!
//! Owns the kept wake-ups and the watch that redelivers them. It must never
//! keep a command someone else asked for (that caller already has its
//! answer), and never decide anything: redelivery goes through `deliver`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::Value;

use super::Engine;
use crate::ExecutionId;
use crate::error::Error;
use crate::machine::{ParentRef, Trigger};
use crate::store::{JournalError, StorageError, StorageHealth};

/// How often, in clock time, a kept wake-up looks whether the journal
/// takes writes again (the journal itself retries its storage every second).
const WATCH_MS: u64 = 250;

/// A wake-up with no caller to retry it.
#[derive(Debug)]
pub(super) enum Wake {
    /// A trigger the engine gives an execution itself.
    Trigger(ExecutionId, Trigger),
    /// An outcome of the built-in `http` capability, recorded with its
    /// performer.
    Report(ExecutionId, Trigger),
    /// A child execution a parent waits for, not started yet.
    Child {
        parent: ParentRef,
        child: ExecutionId,
        workflow: String,
        version: String,
        input: Value,
        priority: u8,
    },
}

/// Wake-ups kept while the journal refuses writes.
#[derive(Debug, Default)]
pub(super) struct Kept {
    triggers: Mutex<Vec<Wake>>,
    /// Whether a watch is waiting to redeliver them.
    watching: AtomicBool,
}

impl Kept {
    pub(super) fn len(&self) -> usize {
        self.triggers
            .lock()
            .map_or_else(|e| e.into_inner().len(), |t| t.len())
    }
}

/// Whether `error` means "the journal's storage refuses writes now" (as
/// opposed to a refusal that would repeat however often it is retried).
pub(crate) fn is_storage_outage(error: &Error) -> bool {
    matches!(
        error,
        Error::Journal(JournalError::Unavailable(_))
            | Error::Journal(JournalError::Storage(StorageError::Write(_)))
    )
}

impl Engine {
    /// Whether the journal takes writes now.
    pub fn storage_health(&self) -> StorageHealth {
        self.inner.store.journal().health()
    }

    /// Keeps a wake-up that failed for a storage outage, to deliver it again
    /// once the journal takes writes.
    pub(super) fn keep_for_later(&self, wake: Wake) {
        let kept = &self.inner.kept;
        match kept.triggers.lock() {
            Ok(mut t) => t.push(wake),
            Err(e) => e.into_inner().push(wake),
        }
        if kept.watching.swap(true, Ordering::AcqRel) {
            return;
        }
        let engine = self.clone();
        self.inner
            .tasks
            .spawn(async move { engine.redeliver_when_writable().await });
    }

    async fn redeliver_when_writable(self) {
        let clock = self.inner.clock.clone();
        while self.storage_health() != StorageHealth::Writable {
            clock.sleep_until(clock.now_ms() + WATCH_MS).await;
        }
        let kept = &self.inner.kept;
        // Stop watching before taking: a wake-up kept from here on starts a
        // new watch, so none is left behind.
        kept.watching.store(false, Ordering::Release);
        let triggers = match kept.triggers.lock() {
            Ok(mut t) => std::mem::take(&mut *t),
            Err(e) => std::mem::take(&mut *e.into_inner()),
        };
        tracing::info!(
            wake_ups = triggers.len(),
            "journal takes writes again: delivering the wake-ups kept during the outage"
        );
        for wake in triggers {
            match wake {
                Wake::Trigger(id, trigger) => self.deliver(id, trigger).await,
                Wake::Report(id, trigger) => self.deliver_report(id, trigger).await,
                Wake::Child {
                    parent,
                    child,
                    workflow,
                    version,
                    input,
                    priority,
                } => {
                    self.start_child(parent, child, workflow, version, input, priority)
                        .await
                }
            }
        }
    }
}
