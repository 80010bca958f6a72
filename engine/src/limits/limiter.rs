//! [`Limiter`]: the workflow limits of every execution that has any, as
//! derived state: who holds a concurrency slot, when each start in a rate
//! window happened, who waits, and who may go next.
//!
//! Fed with states ([`Limiter::observe`]) after each of their events is
//! stored, and at recovery with every stored state
//! ([`Limiter::recovered`]). A grant ([`Limiter::grant`]) counts at once,
//! before the execution records it, so two grants can never share one
//! slot; one the execution could not record is taken back
//! ([`Limiter::refused`]). After a crash only what was recorded counts,
//! which is never more than what was granted. That is the invariant:
//! **a limit is never exceeded, across crashes** (invariant 33).
//!
//! Order: executions wait in queues of one workflow declaring the same
//! limits with the same keys, oldest start first; a queue is served while
//! its oldest fits every one of its limits. Pure: told the time, never
//! reads a clock, never records anything.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::ExecutionId;
use crate::machine::{ExecutionState, LimitKey, Status};

const RATE: &str = "rateLimit";

/// One counter: a workflow's limit of one name, for one key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Gauge {
    workflow: String,
    name: String,
    key: String,
}

impl Gauge {
    fn of(workflow: &str, limit: &LimitKey) -> Gauge {
        Gauge {
            workflow: workflow.to_owned(),
            name: limit.name.clone(),
            key: limit.key.clone(),
        }
    }
}

/// Executions of one workflow with the same limits and keys.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct QueueId {
    workflow: String,
    limits: Vec<LimitKey>,
}

/// Interned: every look-up on the hot path is by number, and nothing is
/// cloned once a queue or a gauge exists.
type Qid = u32;
type Gid = u32;

#[derive(Debug)]
struct GaugeState {
    gauge: Gauge,
    /// Executions holding a slot (granted or recorded).
    held: usize,
    /// For a rate limit: its starts.
    window: Window,
    /// The queues that count against it.
    queues: BTreeSet<Qid>,
}

#[derive(Debug)]
struct QueueState {
    id: QueueId,
    /// Its gauges, each with the limit as its executions declared it.
    gauges: Vec<(Gid, u32, Option<u64>)>,
    /// Waiting executions, oldest start first.
    waiting: BTreeSet<(u64, ExecutionId)>,
    /// Executions the limiter knows in it (waiting, granted or holding).
    members: usize,
}

/// What the limiter holds about one execution.
#[derive(Debug, Clone, Copy)]
enum Known {
    /// In its queue since `started_at_ms`.
    Waiting { queue: Qid, started_at_ms: u64 },
    /// Let go at `at_ms`, not recorded yet: counts as holding, and its
    /// start is in the rate windows.
    Granted { queue: Qid, at_ms: u64 },
    /// Recorded as let go: holds its concurrency slots until it ends.
    Holding { queue: Qid },
}

impl Known {
    fn queue(self) -> Qid {
        match self {
            Known::Waiting { queue, .. }
            | Known::Granted { queue, .. }
            | Known::Holding { queue } => queue,
        }
    }
}

/// Which of its limits holds a waiting execution, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldBy {
    pub name: String,
    pub key: String,
    pub limit: u32,
    /// Counted against it now: slots held, or starts in the window.
    pub in_use: usize,
}

/// Every limited execution's standing; see the module doc.
#[derive(Debug, Default)]
pub struct Limiter {
    known: HashMap<ExecutionId, Known>,
    queue_ids: HashMap<QueueId, Qid>,
    queues: HashMap<Qid, QueueState>,
    gauge_ids: HashMap<Gauge, Gid>,
    gauges: HashMap<Gid, GaugeState>,
    next_id: u32,
    /// Executions waiting, over all queues.
    waiting: usize,
    /// Queues to look at on the next [`Limiter::grant`].
    dirty: BTreeSet<Qid>,
    /// Queues held by a rate window, and when it lets their oldest go.
    due: BTreeSet<(u64, Qid)>,
}

#[derive(Debug, Default)]
struct Window {
    at: BTreeMap<u64, u32>,
    period_ms: u64,
}

impl Window {
    fn add(&mut self, at_ms: u64, period_ms: u64) {
        *self.at.entry(at_ms).or_default() += 1;
        self.period_ms = self.period_ms.max(period_ms);
    }

    fn remove(&mut self, at_ms: u64) {
        if let Some(n) = self.at.get_mut(&at_ms) {
            *n -= 1;
            if *n == 0 {
                self.at.remove(&at_ms);
            }
        }
    }

    /// Forgets starts no period counts any more.
    fn prune(&mut self, now_ms: u64) {
        let from = now_ms.saturating_add(1).saturating_sub(self.period_ms);
        while let Some((&at, _)) = self.at.first_key_value() {
            if at >= from {
                break;
            }
            self.at.remove(&at);
        }
    }

    /// Starts within `(now - period, now]`, in time order.
    fn within(&self, now_ms: u64, period_ms: u64) -> impl Iterator<Item = (u64, u32)> + '_ {
        let from = now_ms.saturating_add(1).saturating_sub(period_ms);
        self.at.range(from..).map(|(&at, &n)| (at, n))
    }

    fn count(&self, now_ms: u64, period_ms: u64) -> u64 {
        self.within(now_ms, period_ms)
            .map(|(_, n)| u64::from(n))
            .sum()
    }

    /// Whether `(now - period, now]` has room for one more start under
    /// `limit`; if not, when it will.
    fn room(&self, now_ms: u64, period_ms: u64, limit: u32) -> Result<(), u64> {
        let count = self.count(now_ms, period_ms);
        if count < u64::from(limit) {
            return Ok(());
        }
        // The window has room once `count - limit + 1` of its starts left it.
        let mut leave = count - u64::from(limit) + 1;
        for (at, n) in self.within(now_ms, period_ms) {
            if u64::from(n) >= leave {
                return Err(at.saturating_add(period_ms));
            }
            leave -= u64::from(n);
        }
        Err(now_ms.saturating_add(period_ms))
    }
}

impl Limiter {
    /// A stored state read at recovery, ended or not: its recorded starts
    /// go into the rate windows (then [`Limiter::observe`] places the
    /// unfinished).
    pub fn recovered(&mut self, state: &ExecutionState, now_ms: u64) {
        let Some(gate) = &state.limits else { return };
        for limit in gate.limits.iter().filter(|l| l.name == RATE) {
            let period_ms = limit.period_ms.unwrap_or(0);
            let gid = self.gauge(Gauge::of(&state.workflow, limit));
            if let Some(g) = self.gauges.get_mut(&gid) {
                for &at_ms in &gate.acquired_at_ms {
                    if at_ms.saturating_add(period_ms) > now_ms {
                        g.window.add(at_ms, period_ms);
                    }
                }
            }
        }
    }

    /// Takes an execution's state as stored: it waits, holds, or has let
    /// go. Idempotent; a state with no limits is ignored.
    pub fn observe(&mut self, state: &ExecutionState) {
        let Some(gate) = &state.limits else { return };
        let id = state.id;
        if state.status.is_terminal() {
            self.forget(id);
            return;
        }
        let known = self.known.get(&id).copied();
        if !gate.waiting {
            match known {
                Some(Known::Holding { .. }) => {}
                Some(Known::Granted { queue, .. }) => {
                    self.known.insert(id, Known::Holding { queue });
                }
                Some(Known::Waiting {
                    queue,
                    started_at_ms,
                }) => {
                    // Recorded while queued here (a grant from before a
                    // restart): it holds.
                    self.unqueue(queue, started_at_ms, id);
                    self.hold(queue);
                    self.known.insert(id, Known::Holding { queue });
                }
                None => {
                    // Recovered holding (its start is in the windows).
                    let queue = self.queue(&state.workflow, &gate.limits);
                    self.join(queue);
                    self.hold(queue);
                    self.known.insert(id, Known::Holding { queue });
                }
            }
            return;
        }
        match (known, state.status) {
            // A grant on its way: left be until its record arrives.
            (Some(Known::Granted { .. }), _) => {}
            // Redriven after it failed holding, before its end was seen.
            (Some(Known::Holding { .. }), _) => {
                self.forget(id);
                self.observe(state);
            }
            (Some(Known::Waiting { .. }), Status::Running) => {}
            (None, Status::Running) => {
                let queue = self.queue(&state.workflow, &gate.limits);
                self.join(queue);
                self.enqueue(queue, state.started_at_ms, id);
            }
            // Paused while waiting: out of the queue until it runs again.
            (Some(Known::Waiting { .. }), _) => self.forget(id),
            (None, _) => {}
        }
    }

    /// The executions let go now, oldest first per queue. Each counts at
    /// once; the caller records each (`limit_acquired`), and reports one
    /// it could not with [`Limiter::refused`].
    pub fn grant(&mut self, now_ms: u64) -> Vec<ExecutionId> {
        while let Some(&(at, queue)) = self.due.first() {
            if at > now_ms {
                break;
            }
            self.due.pop_first();
            self.dirty.insert(queue);
        }
        let mut granted = Vec::new();
        while let Some(queue) = self.dirty.pop_first() {
            while let Some(&(started_at_ms, id)) =
                self.queues.get(&queue).and_then(|q| q.waiting.first())
            {
                match self.fits(queue, now_ms) {
                    Ok(()) => {
                        self.unqueue(queue, started_at_ms, id);
                        self.hold(queue);
                        self.start(queue, now_ms);
                        self.known.insert(
                            id,
                            Known::Granted {
                                queue,
                                at_ms: now_ms,
                            },
                        );
                        granted.push(id);
                    }
                    Err(Some(at)) => {
                        self.due.insert((at, queue));
                        break;
                    }
                    Err(None) => break,
                }
            }
        }
        self.sweep(now_ms);
        granted
    }

    /// A grant the execution did not record (it ended or paused first, or
    /// the write failed for good): taken back, slot, start and all; it
    /// waits again if it still does (the next [`Limiter::observe`] says).
    pub fn refused(&mut self, id: ExecutionId) {
        let Some(Known::Granted { queue, at_ms }) = self.known.get(&id).copied() else {
            return;
        };
        self.release(queue);
        let rates: Vec<Gid> = self.rate_gauges(queue).collect();
        for gid in rates {
            if let Some(g) = self.gauges.get_mut(&gid) {
                g.window.remove(at_ms);
            }
            self.wake(gid);
        }
        self.known.remove(&id);
        self.leave(queue);
    }

    /// When a rate window next lets a waiting execution go, if one waits
    /// for that.
    pub fn next_due_ms(&self) -> Option<u64> {
        self.due.first().map(|(at, _)| *at)
    }

    /// Whether [`Limiter::grant`] has queues to look at now.
    pub fn has_work(&self, now_ms: u64) -> bool {
        !self.dirty.is_empty() || self.next_due_ms().is_some_and(|at| at <= now_ms)
    }

    /// Forgets an execution another server drives now (its partition
    /// moved): it neither waits nor holds here any more.
    pub fn let_go(&mut self, id: ExecutionId) {
        self.forget(id);
    }

    /// What holds a waiting execution: the first of its limits with no
    /// room, or (all have room: it is next) its first.
    pub fn held_by(&self, state: &ExecutionState, now_ms: u64) -> Option<HeldBy> {
        let gate = state.limits.as_ref().filter(|g| g.waiting)?;
        let standing: Vec<HeldBy> = gate
            .limits
            .iter()
            .map(|limit| {
                let g = self
                    .gauge_ids
                    .get(&Gauge::of(&state.workflow, limit))
                    .and_then(|gid| self.gauges.get(gid));
                let in_use = match g {
                    None => 0,
                    Some(g) if limit.name == RATE => {
                        let n = g.window.count(now_ms, limit.period_ms.unwrap_or(0));
                        usize::try_from(n).unwrap_or(usize::MAX)
                    }
                    Some(g) => g.held,
                };
                HeldBy {
                    name: limit.name.clone(),
                    key: limit.key.clone(),
                    limit: limit.limit,
                    in_use,
                }
            })
            .collect();
        let full = standing
            .iter()
            .position(|h| h.in_use >= usize::try_from(h.limit).unwrap_or(usize::MAX));
        standing.into_iter().nth(full.unwrap_or(0))
    }

    /// Executions waiting, over all workflows.
    pub fn waiting(&self) -> usize {
        self.waiting
    }

    /// The queue of `workflow`'s executions with `limits`, made if new.
    fn queue(&mut self, workflow: &str, limits: &[LimitKey]) -> Qid {
        let id = QueueId {
            workflow: workflow.to_owned(),
            limits: limits.to_vec(),
        };
        if let Some(&qid) = self.queue_ids.get(&id) {
            return qid;
        }
        let qid = self.fresh_id();
        let gauges = limits
            .iter()
            .map(|l| {
                let gid = self.gauge(Gauge::of(workflow, l));
                if let Some(g) = self.gauges.get_mut(&gid) {
                    g.queues.insert(qid);
                }
                (
                    gid,
                    l.limit,
                    (l.name == RATE).then(|| l.period_ms.unwrap_or(0)),
                )
            })
            .collect();
        self.queue_ids.insert(id.clone(), qid);
        self.queues.insert(
            qid,
            QueueState {
                id,
                gauges,
                waiting: BTreeSet::new(),
                members: 0,
            },
        );
        qid
    }

    /// The gauge, made if new.
    fn gauge(&mut self, gauge: Gauge) -> Gid {
        if let Some(&gid) = self.gauge_ids.get(&gauge) {
            return gid;
        }
        let gid = self.fresh_id();
        self.gauge_ids.insert(gauge.clone(), gid);
        self.gauges.insert(
            gid,
            GaugeState {
                gauge,
                held: 0,
                window: Window::default(),
                queues: BTreeSet::new(),
            },
        );
        gid
    }

    fn fresh_id(&mut self) -> u32 {
        // Ids are reused only after 2^32 queues and gauges were made; one
        // still alive then is skipped.
        loop {
            let id = self.next_id;
            self.next_id = self.next_id.wrapping_add(1);
            if !self.queues.contains_key(&id) && !self.gauges.contains_key(&id) {
                return id;
            }
        }
    }

    fn rate_gauges(&self, queue: Qid) -> impl Iterator<Item = Gid> + '_ {
        self.queues
            .get(&queue)
            .into_iter()
            .flat_map(|q| q.gauges.iter())
            .filter(|(_, _, period)| period.is_some())
            .map(|(gid, _, _)| *gid)
    }

    /// Whether every limit of `queue` has room for one more at `now_ms`;
    /// if not, when a rate window will (`None`: a slot must free first).
    fn fits(&mut self, queue: Qid, now_ms: u64) -> Result<(), Option<u64>> {
        let Some(q) = self.queues.get(&queue) else {
            return Err(None);
        };
        let mut later: Option<u64> = None;
        for &(gid, limit, period) in &q.gauges {
            let Some(g) = self.gauges.get_mut(&gid) else {
                continue;
            };
            match period {
                Some(period_ms) => {
                    g.window.prune(now_ms);
                    if let Err(at) = g.window.room(now_ms, period_ms, limit) {
                        later = Some(later.map_or(at, |l| l.max(at)));
                    }
                }
                None => {
                    if g.held >= usize::try_from(limit).unwrap_or(usize::MAX) {
                        return Err(None);
                    }
                }
            }
        }
        match later {
            None => Ok(()),
            Some(at) => Err(Some(at)),
        }
    }

    /// One more execution known in `queue`.
    fn join(&mut self, queue: Qid) {
        if let Some(q) = self.queues.get_mut(&queue) {
            q.members += 1;
        }
    }

    /// One fewer: a queue no execution is in is dropped.
    fn leave(&mut self, queue: Qid) {
        let Some(q) = self.queues.get_mut(&queue) else {
            return;
        };
        q.members = q.members.saturating_sub(1);
        if q.members > 0 {
            return;
        }
        if let Some(q) = self.queues.remove(&queue) {
            self.queue_ids.remove(&q.id);
            for (gid, _, _) in q.gauges {
                if let Some(g) = self.gauges.get_mut(&gid) {
                    g.queues.remove(&queue);
                }
            }
        }
        self.dirty.remove(&queue);
        self.due.retain(|(_, q)| *q != queue);
    }

    fn enqueue(&mut self, queue: Qid, started_at_ms: u64, id: ExecutionId) {
        if let Some(q) = self.queues.get_mut(&queue)
            && q.waiting.insert((started_at_ms, id))
        {
            self.waiting += 1;
        }
        self.dirty.insert(queue);
        self.known.insert(
            id,
            Known::Waiting {
                queue,
                started_at_ms,
            },
        );
    }

    /// Takes a waiting execution out of its queue (its `known` entry and
    /// membership are the caller's to change).
    fn unqueue(&mut self, queue: Qid, started_at_ms: u64, id: ExecutionId) {
        if let Some(q) = self.queues.get_mut(&queue)
            && q.waiting.remove(&(started_at_ms, id))
        {
            self.waiting -= 1;
            // Its oldest may have changed.
            self.dirty.insert(queue);
        }
    }

    /// Takes a slot of each of `queue`'s concurrency limits.
    fn hold(&mut self, queue: Qid) {
        let Some(q) = self.queues.get(&queue) else {
            return;
        };
        for (gid, _, period) in &q.gauges {
            if period.is_none()
                && let Some(g) = self.gauges.get_mut(gid)
            {
                g.held += 1;
            }
        }
    }

    /// A start in each of `queue`'s rate windows.
    fn start(&mut self, queue: Qid, now_ms: u64) {
        let Some(q) = self.queues.get(&queue) else {
            return;
        };
        for (gid, _, period) in &q.gauges {
            if let (Some(period_ms), Some(g)) = (period, self.gauges.get_mut(gid)) {
                g.window.add(now_ms, *period_ms);
            }
        }
    }

    /// Gives back a slot of each of `queue`'s concurrency limits.
    fn release(&mut self, queue: Qid) {
        let Some(q) = self.queues.get(&queue) else {
            return;
        };
        let held: Vec<Gid> = q
            .gauges
            .iter()
            .filter(|(_, _, period)| period.is_none())
            .map(|(gid, _, _)| *gid)
            .collect();
        for gid in held {
            if let Some(g) = self.gauges.get_mut(&gid) {
                g.held = g.held.saturating_sub(1);
            }
            self.wake(gid);
        }
    }

    /// The queues waiting on `gauge` are looked at again.
    fn wake(&mut self, gid: Gid) {
        if let Some(g) = self.gauges.get(&gid) {
            for queue in &g.queues {
                if self
                    .queues
                    .get(queue)
                    .is_some_and(|q| !q.waiting.is_empty())
                {
                    self.dirty.insert(*queue);
                }
            }
        }
    }

    /// The execution is out: its slots (granted or held) freed, out of its
    /// queue. Its starts stay in the rate windows.
    fn forget(&mut self, id: ExecutionId) {
        let Some(known) = self.known.remove(&id) else {
            return;
        };
        match known {
            Known::Waiting {
                queue,
                started_at_ms,
            } => self.unqueue(queue, started_at_ms, id),
            Known::Granted { queue, .. } | Known::Holding { queue } => self.release(queue),
        }
        self.leave(known.queue());
    }

    /// Now and then, drops the gauges nothing counts in any more (no
    /// queue, no slot held, no start left in the window).
    fn sweep(&mut self, now_ms: u64) {
        if self.gauges.len() <= 1_024 + 2 * self.queues.len() {
            return;
        }
        let gauge_ids = &mut self.gauge_ids;
        self.gauges.retain(|_, g| {
            g.window.prune(now_ms);
            let alive = !g.queues.is_empty() || g.held > 0 || !g.window.at.is_empty();
            if !alive {
                gauge_ids.remove(&g.gauge);
            }
            alive
        });
    }
}
