//! The agent types: ids, options, the public view ([`AgentInfo`]) and the
//! registry's private record of one agent ([`Agent`]) with its statistics.
//!
//! Owns how status, load, statistics and health (its effective slots and
//! score, from `health`) are derived from the record. It must never read a
//! clock or touch a task queue: the caller passes `now_ms` and keeps the
//! set of claimed task ids in step with the queues.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::health::{Health, Recent, Score};

/// The id of one registration. A fresh one each time an agent registers.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AgentId(Uuid);

impl AgentId {
    /// A fresh random id.
    pub fn random() -> Self {
        AgentId(Uuid::new_v4())
    }

    pub const fn from_uuid(uuid: Uuid) -> Self {
        AgentId(uuid)
    }

    pub const fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl fmt::Debug for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AgentId({})", self.0.hyphenated())
    }
}

impl FromStr for AgentId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(AgentId)
    }
}

/// Whether an agent can take work now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    /// Seen recently, with a free slot.
    Online,
    /// Seen recently, every slot it has now taken (its effective slots,
    /// fewer than `max_concurrency` while it fails: see [`Health`]).
    Busy,
    /// Not seen for longer than `offline_after_ms` (polling or heartbeating
    /// makes it online again).
    Offline,
}

/// What the registry shows about one agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentInfo {
    pub id: AgentId,
    pub name: String,
    /// Deduplicated and sorted.
    pub capabilities: Vec<String>,
    pub max_concurrency: u32,
    pub status: AgentStatus,
    /// Tasks it holds now.
    pub active_tasks: u32,
    /// Tasks it held that ended: settled or timed out.
    pub task_count: u64,
    /// Succeeded / `task_count` (timeouts count as failures); 1.0 when none.
    pub success_rate: f64,
    /// Mean time from claim to settle or timeout; 0.0 when none.
    pub average_task_ms: f64,
    /// `active_tasks / max_concurrency`, in `0..=1`.
    pub load_factor: f64,
    /// Its last poll, heartbeat or task heartbeat; now while it is waiting in
    /// a long poll.
    pub last_seen_ms: u64,
    pub registered_at_ms: u64,
    /// The access token it registered with (its name), when the server
    /// has tokens: only that token may poll for it and report its tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The version it declared, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// How long it may stay silent before it is shown offline: its own,
    /// else the registry's default.
    pub heartbeat_timeout_ms: u64,
    /// Its recent results and what routing makes of them.
    #[serde(default)]
    pub health: Health,
}

/// Limits and defaults of the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentOptions {
    /// An agent not seen for longer than this is shown offline.
    pub offline_after_ms: u64,
    /// The longest a poll waits for work (real time).
    pub poll_wait_max_ms: u64,
    /// The most tasks one poll claims.
    pub poll_max_tasks: usize,
    /// Slots of an agent that registers without saying.
    pub max_concurrency_default: u32,
}

impl Default for AgentOptions {
    fn default() -> Self {
        AgentOptions {
            offline_after_ms: 30_000,
            poll_wait_max_ms: 60_000,
            poll_max_tasks: 100,
            max_concurrency_default: 10,
        }
    }
}

/// Counts of the tasks an agent held that ended.
#[derive(Debug, Clone, Copy, Default)]
struct Stats {
    ended: u64,
    succeeded: u64,
    held_ms_total: u64,
}

/// A registration that passed `validate`: what a new agent record is made of.
#[derive(Debug)]
pub(super) struct Registration {
    pub(super) name: String,
    pub(super) capabilities: BTreeSet<String>,
    pub(super) max_concurrency: u32,
    pub(super) version: Option<semver::Version>,
    pub(super) heartbeat_timeout_ms: Option<u64>,
}

/// The registry's record of one registered agent.
#[derive(Debug)]
pub(super) struct Agent {
    /// Registration order, for listing.
    pub(super) seq: u64,
    pub(super) name: String,
    pub(super) capabilities: BTreeSet<String>,
    pub(super) max_concurrency: u32,
    /// Ids of the tasks it holds; the queues hold the same claims.
    pub(super) claimed: BTreeSet<String>,
    pub(super) last_seen_ms: u64,
    pub(super) registered_at_ms: u64,
    /// The access token it registered with.
    pub(super) token: Option<String>,
    /// Its version, if it declared one.
    pub(super) version: Option<semver::Version>,
    /// Its own offline threshold, if it declared one.
    pub(super) heartbeat_timeout_ms: Option<u64>,
    /// Long polls of this agent waiting right now: while one waits, the agent
    /// is plainly alive even if it has not called in for a while.
    pub(super) polls_waiting: u32,
    /// The most tasks its waiting polls would take together (each poll's
    /// `max`, capped by the poll limit).
    pub(super) waiting_max: usize,
    /// Another agent's claim left a task for this one since it last woke
    /// the polls: when it stops waiting or takes tasks, the polls must
    /// look again (see `state`).
    pub(super) counted_on: bool,
    stats: Stats,
    recent: Recent,
}

impl Agent {
    pub(super) fn new(
        seq: u64,
        registration: Registration,
        token: Option<String>,
        now_ms: u64,
    ) -> Self {
        Agent {
            token,
            seq,
            name: registration.name,
            capabilities: registration.capabilities,
            max_concurrency: registration.max_concurrency,
            version: registration.version,
            heartbeat_timeout_ms: registration.heartbeat_timeout_ms,
            claimed: BTreeSet::new(),
            last_seen_ms: now_ms,
            registered_at_ms: now_ms,
            polls_waiting: 0,
            waiting_max: 0,
            counted_on: false,
            stats: Stats::default(),
            recent: Recent::default(),
        }
    }

    /// How many tasks it may hold at once now: fewer than its
    /// `max_concurrency` while its recent tasks fail (see `health`).
    pub(super) fn slots(&self) -> usize {
        self.recent.slots(self.max_concurrency) as usize
    }

    /// Slots left for new claims.
    pub(super) fn free_slots(&self) -> usize {
        self.slots().saturating_sub(self.claimed.len())
    }

    /// Its routing score now (see `health`).
    pub(super) fn score(&self) -> Score {
        self.recent.score(self.max_concurrency, self.claimed.len())
    }

    /// Records a held task that ended: settled, or timed out (a failure).
    pub(super) fn record(&mut self, succeeded: bool, held_ms: u64) {
        self.stats.ended += 1;
        self.stats.succeeded += u64::from(succeeded);
        self.stats.held_ms_total = self.stats.held_ms_total.saturating_add(held_ms);
        self.recent.record(succeeded, held_ms);
    }

    /// When it was last seen, counting a waiting long poll as seen now.
    fn seen_ms(&self, now_ms: u64) -> u64 {
        if self.polls_waiting > 0 {
            now_ms.max(self.last_seen_ms)
        } else {
            self.last_seen_ms
        }
    }

    pub(super) fn info(&self, id: AgentId, options: &AgentOptions, now_ms: u64) -> AgentInfo {
        let active = self.claimed.len();
        let last_seen_ms = self.seen_ms(now_ms);
        let offline_after_ms = self
            .heartbeat_timeout_ms
            .unwrap_or(options.offline_after_ms);
        let status = if now_ms.saturating_sub(last_seen_ms) > offline_after_ms {
            AgentStatus::Offline
        } else if self.free_slots() == 0 {
            AgentStatus::Busy
        } else {
            AgentStatus::Online
        };
        let Stats {
            ended,
            succeeded,
            held_ms_total,
        } = self.stats;
        AgentInfo {
            id,
            name: self.name.clone(),
            capabilities: self.capabilities.iter().cloned().collect(),
            max_concurrency: self.max_concurrency,
            status,
            active_tasks: u32::try_from(active).unwrap_or(u32::MAX),
            task_count: ended,
            success_rate: ratio(succeeded, ended, 1.0),
            average_task_ms: ratio(held_ms_total, ended, 0.0),
            load_factor: ratio(active as u64, u64::from(self.max_concurrency), 0.0).min(1.0),
            last_seen_ms,
            registered_at_ms: self.registered_at_ms,
            token: self.token.clone(),
            version: self.version.as_ref().map(ToString::to_string),
            heartbeat_timeout_ms: offline_after_ms,
            health: self.recent.health(self.max_concurrency, active),
        }
    }
}

/// `part / whole`, or `if_none` when `whole` is zero.
fn ratio(part: u64, whole: u64, if_none: f64) -> f64 {
    if whole == 0 {
        if_none
    } else {
        part as f64 / whole as f64
    }
}
