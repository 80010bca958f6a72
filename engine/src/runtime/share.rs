//! Sharing the journal with other servers: the executions this engine
//! drives are those of the partitions its journal holds.
//!
//! A journal shared by several servers ([`Journal::share`]) splits the
//! executions into partitions by a hash of their ids, and each server's
//! journal holds some of them at a time (appends to the others are refused
//! by the journal's fences). The engine follows what its journal holds:
//! it recovers the executions of a partition the journal gains (as opening
//! recovers every execution: rebuilt, their effects re-armed), drops from
//! memory those of a partition it loses (their timers and listeners
//! disarmed, their `http` calls stopped, forgotten by the index and the
//! limiter; nothing recorded, and their tasks for agents left queued at the
//! home for the new holder, see `dispatch`), and starts new executions only
//! in partitions it holds. Without a share
//! the engine holds every execution, as it always did.
//!
//! Owns which partitions the engine drives (`owned`, which trails the
//! journal's: a partition is owned once its executions are recovered, and
//! no longer once the journal lost it). It must never record anything for
//! an execution it drops: the server that took the partition drives it,
//! and the journal's fences refuse whatever this one still sends.
//!
//! [`Journal::share`]: crate::store::Journal::share

use std::collections::BTreeSet;
use std::sync::Arc;

use tokio::sync::{Mutex, watch};

use super::drive::Live;
use super::{Engine, upgrade};
use crate::ExecutionId;
use crate::error::Error;
use crate::machine::{Effect, Placement, Versions, limits_partition};
use crate::model::HTTP_CAPABILITY;
use crate::store::rebuild::{Rebuild, rebuild_all};
use crate::store::{JournalError, StorageError, stream_of};

/// What an engine on a shared journal holds.
#[derive(Debug)]
pub(super) struct Owned {
    /// The journal's share (`None`: the engine holds every execution).
    pub share: Option<crate::store::Share>,
    /// The partitions whose executions this engine drives.
    partitions: std::sync::RwLock<BTreeSet<u32>>,
    /// The same, told once a change is done (the executions of a partition
    /// gained recovered, of one lost dropped).
    told: watch::Sender<BTreeSet<u32>>,
}

impl Owned {
    pub(super) fn new(share: Option<crate::store::Share>) -> Owned {
        Owned {
            share,
            partitions: std::sync::RwLock::new(BTreeSet::new()),
            told: watch::Sender::new(BTreeSet::new()),
        }
    }

    fn partitions(&self) -> std::sync::RwLockReadGuard<'_, BTreeSet<u32>> {
        self.partitions.read().unwrap_or_else(|p| p.into_inner())
    }

    fn change(&self, change: impl FnOnce(&mut BTreeSet<u32>)) {
        change(&mut self.partitions.write().unwrap_or_else(|p| p.into_inner()))
    }

    /// Every partition owned now.
    pub(super) fn all(&self) -> BTreeSet<u32> {
        self.partitions().clone()
    }

    /// Tells the watchers what is owned now.
    fn tell(&self) {
        let now = self.partitions().clone();
        self.told.send_replace(now);
    }
}

impl Engine {
    /// Whether this engine drives execution `id` (always, without a share).
    pub(super) fn owns(&self, id: ExecutionId) -> bool {
        self.drives_partition(self.partition_of(id))
    }

    /// The partition of execution `id` (0 without a share).
    pub(super) fn partition_of(&self, id: ExecutionId) -> u32 {
        self.execution_partition(id).unwrap_or(0)
    }

    /// The partition of execution `id` on a journal several servers share
    /// (`None` otherwise: this engine drives every execution).
    pub fn execution_partition(&self, id: ExecutionId) -> Option<u32> {
        let share = self.inner.owned.share.as_ref()?;
        Some(share.partition_of(stream_of(id)))
    }

    /// How many partitions a journal several servers share has (`None`
    /// otherwise).
    pub fn partition_count(&self) -> Option<u32> {
        Some(self.inner.owned.share.as_ref()?.partitions)
    }

    /// Whether this engine drives the executions of `partition` now (has
    /// recovered them); always, when it does not share its journal.
    pub fn drives_partition(&self, partition: u32) -> bool {
        self.inner.owned.share.is_none() || self.inner.owned.partitions().contains(&partition)
    }

    /// Whether this engine drives any partition now (always, when it does
    /// not share its journal).
    pub fn drives_any(&self) -> bool {
        self.inner.owned.share.is_none() || !self.inner.owned.partitions().is_empty()
    }

    /// The partitions this engine drives, now and as they change, when it
    /// shares the journal with other servers (`None`: it drives every
    /// execution). Let a borrow of it go at once: the engine's next change
    /// waits for it.
    pub fn partitions(&self) -> Option<watch::Receiver<BTreeSet<u32>>> {
        self.inner.owned.share.as_ref()?;
        Some(self.inner.owned.told.subscribe())
    }

    /// How the shared journal places executions (`None` without a share),
    /// for the machine's child ids.
    pub(super) fn placement(&self) -> Option<Placement> {
        let share = self.inner.owned.share.as_ref()?;
        Some(Placement {
            partitions: share.partitions,
            partition_of: |id, partitions| retrace_journal::partition_of(stream_of(id), partitions),
        })
    }

    /// The partition a new execution of `workflow` started with
    /// idempotency key `key` must fall in, on a journal several servers
    /// share (`None`: any this server holds, or no share). A workflow one
    /// of whose versions declares limits starts in its own partition
    /// ([`limits_partition`]), so one server counts all its executions,
    /// children and schedule fires included, and decides its keys; another
    /// with a key, in the key's partition ([`Engine::key_partition`]).
    pub fn start_partition(&self, workflow: &str, key: Option<&str>) -> Option<u32> {
        let placement = self.placement()?;
        let limited = self
            .read_catalog()
            .is_ok_and(|catalog| catalog.limited(workflow));
        if limited {
            return Some(limits_partition(workflow, &placement));
        }
        self.key_partition(key?)
    }

    /// A fresh execution id (UUIDv7: time-ordered), in a partition this
    /// engine drives: drawn again until one falls there (with P partitions
    /// of which it holds H, about P / H draws). In `wanted` if given (see
    /// [`Engine::start_partition`]; about P draws), refused if another
    /// server holds it.
    pub(super) fn fresh_id(&self, wanted: Option<u32>) -> Result<ExecutionId, Error> {
        let draw = || ExecutionId::from_bytes(*uuid::Uuid::now_v7().as_bytes());
        let owned = &self.inner.owned;
        let Some(share) = &owned.share else {
            return Ok(draw());
        };
        let held = owned.partitions();
        let unavailable = |why: String| {
            Error::Journal(JournalError::Unavailable(Arc::new(JournalError::Storage(
                StorageError::Other(why),
            ))))
        };
        let wanted = match wanted {
            Some(partition) if !held.contains(&partition) => {
                return Err(unavailable(format!(
                    "this execution starts in partition {partition} (its workflow's limits' \
                     or its idempotency key's), which another server holds"
                )));
            }
            Some(partition) => Some(partition),
            // Brief: while the servers sharing the journal settle.
            None if held.is_empty() => {
                return Err(unavailable(
                    "this server holds no partition of the journal yet".into(),
                ));
            }
            None => None,
        };
        loop {
            let id = draw();
            let partition = share.partition_of(stream_of(id));
            if wanted.map_or(held.contains(&partition), |w| w == partition) {
                return Ok(id);
            }
        }
    }

    /// The partition whose holder starts the executions with idempotency
    /// key `key`, on a journal several servers share (`None` otherwise).
    pub fn key_partition(&self, key: &str) -> Option<u32> {
        let share = self.inner.owned.share.as_ref()?;
        let hash = blake3::hash(key.as_bytes());
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&hash.as_bytes()[..16]);
        Some(share.partition_of(retrace_journal::StreamId::from_bytes(bytes)))
    }

    /// Takes, as the engine opens, the partitions the journal holds then:
    /// recovery rebuilds only their executions.
    pub(super) fn own_what_is_held(&self) {
        if let Some(share) = &self.inner.owned.share {
            let held = share.held();
            self.inner.owned.change(|owned| *owned = held);
            self.inner.owned.tell();
        }
    }

    /// Follows the journal's share from now on: recovers what it gains,
    /// drops what it loses, one change at a time.
    pub(super) fn follow_share(&self) {
        let Some(share) = &self.inner.owned.share else {
            return;
        };
        let mut held = share.held.clone();
        let share_partitions = share.partitions;
        let weak = Arc::downgrade(&self.inner);
        self.inner.tasks.spawn(async move {
            loop {
                let now = held.borrow_and_update().clone();
                let Some(engine) = upgrade(&weak) else { return };
                let owned = engine.inner.owned.partitions().clone();
                let lost: BTreeSet<u32> = owned.difference(&now).copied().collect();
                let gained: BTreeSet<u32> = now.difference(&owned).copied().collect();
                if !lost.is_empty() {
                    engine.drop_partitions(&lost).await;
                    if lost.contains(&0) {
                        engine.left_home();
                    }
                }
                if !gained.is_empty()
                    && let Err(e) = engine.gain_partitions(&gained).await
                {
                    // Not owned, so tried again at the next change; the
                    // journal still holds them, so nobody else drives
                    // them meanwhile.
                    tracing::warn!(error = %e, partitions = ?gained,
                        "cannot recover the executions of partitions taken; they wait for the next change");
                } else if gained.contains(&0) {
                    engine.became_home(share_partitions);
                }
                drop(engine);
                if held.changed().await.is_err() {
                    return;
                }
            }
        });
    }

    /// Recovers the executions of `partitions` (taken by the journal) and
    /// drives them from now on.
    async fn gain_partitions(&self, partitions: &BTreeSet<u32>) -> Result<(), Error> {
        if self.inner.owned.share.is_none() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let heads: Vec<_> = (self.read().all_executions_in(partitions).await?)
            .into_iter()
            .map(|stored| (stored.id, stored.last_seq))
            .collect();
        let states = rebuild_all(self.inner.store.journal(), &heads, Rebuild::Auto).await?;
        let lives = self.make_live(states)?;
        let unfinished = lives.len();
        self.inner
            .owned
            .change(|owned| owned.extend(partitions.iter().copied()));
        self.reconcile_recovered(lives).await;
        self.inner.owned.tell();
        tracing::info!(partitions = ?partitions, executions = heads.len(), unfinished,
            ms = started.elapsed().as_millis() as u64,
            "partitions taken: their executions recovered");
        Ok(())
    }

    /// Stops driving the executions of `partitions` (the journal lost or
    /// gave them up): forgets them, disarms their timers and listeners.
    /// Nothing is recorded.
    async fn drop_partitions(&self, partitions: &BTreeSet<u32>) {
        let Some(share) = &self.inner.owned.share else {
            return;
        };
        self.inner.owned.change(|owned| {
            owned.retain(|p| !partitions.contains(p));
        });
        let theirs = |id: ExecutionId| partitions.contains(&share.partition_of(stream_of(id)));
        let dropped: Vec<Arc<Mutex<Live>>> = {
            let mut live = self.lock_live();
            let ids: Vec<ExecutionId> = live.keys().copied().filter(|id| theirs(*id)).collect();
            ids.iter().filter_map(|id| live.remove(id)).collect()
        };
        let count = dropped.len();
        for live in dropped {
            let mut live = live.lock().await;
            let id = live.state.id;
            // Its agents' tasks stay queued at the home (the new holder
            // queues the same task ids again, and a withdrawal sent now
            // could arrive after that); its `http` calls stop. Its timers
            // and waits are forgotten below, with every dropped one's.
            for (_, effect) in live.armed.drain() {
                if let Effect::Task {
                    task, capability, ..
                } = effect
                {
                    self.no_longer_asked(&task);
                    if capability == HTTP_CAPABILITY {
                        self.withdraw_http(&task);
                    }
                }
            }
            self.limiter().let_go(id);
            // A later trigger finds it gone, not deciding on what it held.
            live.stale = true;
        }
        self.inner.timers.forget_where(theirs);
        let forgotten = self.inner.index.forget_where(theirs);
        self.inner.owned.tell();
        tracing::info!(partitions = ?partitions, executions = forgotten, unfinished = count,
            "partitions given up: their executions dropped here");
    }
}
