//! Capability limits on a running engine: setting and removing them (the
//! API's, over the server configuration's), handing them to the agent
//! registry that enforces them at each claim, recording the claims a rate
//! window counts before the agent hears of them, and the loop that wakes
//! waiting polls when a full window has room again.
//!
//! A change is refused whole, appended, then folded. A claim of a limited
//! capability is appended (`capability_tasks_claimed`: how many, for a
//! rate window; which tasks, for a concurrency limit) before the poll
//! answers; if the journal refuses, the claims go back to their queues and
//! the poll fails. So every claim an agent ever heard of is in the window a
//! restart rebuilds, and a task recorded as claimed and still outstanding
//! at a restart holds its concurrency slot until it is reported, withdrawn,
//! or its lease would have run out (`agents::caps`).
//!
//! Owns the order of those writes. It must never decide a claim (the
//! registry does).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, MutexGuard, PoisonError};

use super::Engine;
use super::recover::upgrade;
use crate::agents::ClaimedTask;
use crate::error::{Error, LimitsError};
use crate::limits::{CapabilityLimits, HeldBy, LimitsEvent, LimitsTable};
use crate::model::check_capability;
use crate::store::reserved::SNAPSHOT_EVERY;

/// Where a capability's limits in force come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitsSource {
    /// Set through the API (`PUT /v1/capabilities/{c}/limits`).
    Api {
        set_at_ms: u64,
        set_by: Option<String>,
    },
    /// The server's configuration.
    Config,
}

/// A capability's limits in force and where it stands under them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapabilityLimitsInfo {
    pub capability: String,
    pub limits: CapabilityLimits,
    pub source: LimitsSource,
    /// Tasks claimed now, plus tasks outstanding at a restart that may
    /// still run.
    pub running: usize,
    /// Claims within the rate window now.
    pub in_window: usize,
    /// Tasks of it queued now.
    pub queued: usize,
}

/// Checks the server configuration's limits (at open).
pub(super) fn check_config(config: &BTreeMap<String, CapabilityLimits>) -> Result<(), Error> {
    let mut problems = Vec::new();
    for (capability, limits) in config {
        if let Err(p) = check_capability(capability) {
            problems.push(format!("capability_limits.{capability}: {p}"));
        }
        if let Err(p) = limits.check() {
            problems.extend(
                p.into_iter()
                    .map(|p| format!("capability_limits.{capability}: {p}")),
            );
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(LimitsError::Invalid(problems).into())
    }
}

impl Engine {
    fn limits_table(&self) -> MutexGuard<'_, LimitsTable> {
        self.inner
            .limits_table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The limits in force for `capability`, and where they come from.
    fn in_force(&self, capability: &str) -> Option<(CapabilityLimits, LimitsSource)> {
        let table = self.limits_table();
        if let Some(recorded) = table.by_capability.get(capability)
            && let Some(limits) = recorded.limits
        {
            let source = LimitsSource::Api {
                set_at_ms: recorded.set_at_ms,
                set_by: recorded.set_by.clone(),
            };
            return Some((limits, source));
        }
        drop(table);
        self.inner
            .config_limits
            .get(capability)
            .map(|limits| (*limits, LimitsSource::Config))
    }

    /// Hands every capability's limits in force and recorded claims to the
    /// registry (at open).
    pub(super) fn load_capability_limits(&self) {
        let mut capabilities: BTreeSet<String> = self.inner.config_limits.keys().cloned().collect();
        let recorded: Vec<(String, Vec<u64>)> = self
            .limits_table()
            .by_capability
            .iter()
            .map(|(c, r)| (c.clone(), r.claims.iter().copied().collect()))
            .collect();
        capabilities.extend(recorded.iter().map(|(c, _)| c.clone()));
        for capability in capabilities {
            let limits = self.in_force(&capability).map(|(limits, _)| limits);
            self.inner.agents.set_capability_limits(&capability, limits);
        }
        // After the limits: a window keeps as many claims as its limit.
        for (capability, claims) in recorded {
            self.inner
                .agents
                .seed_capability_claims(&capability, claims);
        }
    }

    /// Sets `capability`'s limits on behalf of `by`, over the
    /// configuration's. Refused whole, with nothing recorded, if the
    /// capability or the limits are not sound.
    pub async fn set_capability_limits(
        &self,
        capability: &str,
        limits: CapabilityLimits,
        by: Option<&str>,
        reason: Option<&str>,
    ) -> Result<CapabilityLimitsInfo, Error> {
        let mut problems = Vec::new();
        if let Err(p) = check_capability(capability) {
            problems.push(p);
        }
        if let Err(p) = limits.check() {
            problems.extend(p);
        }
        if !problems.is_empty() {
            return Err(LimitsError::Invalid(problems).into());
        }
        let event = LimitsEvent::CapabilityLimitsSet {
            capability: capability.to_owned(),
            limits,
            by: by.map(str::to_owned),
            reason: reason.map(str::to_owned),
        };
        self.record_limits(&[event]).await?;
        self.inner
            .agents
            .set_capability_limits(capability, Some(limits));
        self.capability_limit(capability)
    }

    /// Removes the limits set through the API for `capability` (the
    /// configuration's, if any, are in force again).
    pub async fn remove_capability_limits(
        &self,
        capability: &str,
        by: Option<&str>,
        reason: Option<&str>,
    ) -> Result<(), Error> {
        let set = self
            .limits_table()
            .by_capability
            .get(capability)
            .is_some_and(|r| r.limits.is_some());
        if !set {
            return Err(LimitsError::Unknown(capability.to_owned()).into());
        }
        let event = LimitsEvent::CapabilityLimitsRemoved {
            capability: capability.to_owned(),
            by: by.map(str::to_owned),
            reason: reason.map(str::to_owned),
        };
        self.record_limits(&[event]).await?;
        let limits = self.in_force(capability).map(|(limits, _)| limits);
        self.inner.agents.set_capability_limits(capability, limits);
        Ok(())
    }

    /// Every capability with limits in force, by name.
    pub fn capability_limits(&self) -> Vec<CapabilityLimitsInfo> {
        let mut capabilities: BTreeSet<String> = self.inner.config_limits.keys().cloned().collect();
        capabilities.extend(
            self.limits_table()
                .by_capability
                .iter()
                .filter(|(_, r)| r.limits.is_some())
                .map(|(c, _)| c.clone()),
        );
        capabilities
            .into_iter()
            .filter_map(|c| self.capability_limit(&c).ok())
            .collect()
    }

    /// `capability`'s limits in force and where it stands under them.
    pub fn capability_limit(&self, capability: &str) -> Result<CapabilityLimitsInfo, Error> {
        let (limits, source) = self
            .in_force(capability)
            .ok_or_else(|| LimitsError::Unknown(capability.to_owned()))?;
        let (standing, queued) = self.inner.agents.capability_standing(capability);
        Ok(CapabilityLimitsInfo {
            capability: capability.to_owned(),
            limits,
            source,
            running: standing.running,
            in_window: standing.in_window,
            queued,
        })
    }

    /// Which limit keeps `capability`'s tasks queued now (`None`: it has
    /// room, or no limits). The key is the capability.
    pub fn capability_held(&self, capability: &str) -> Option<HeldBy> {
        let limits = self.inner.agents.capability_limits(capability)?;
        let (standing, _) = self.inner.agents.capability_standing(capability);
        if standing.room {
            return None;
        }
        let concurrency_full = limits
            .concurrency
            .filter(|n| standing.running >= *n as usize);
        let (name, limit, in_use) = match (concurrency_full, limits.rate_limit) {
            (Some(n), _) => ("concurrency", n, standing.running),
            (None, Some(rate)) => ("rateLimit", rate.limit, standing.in_window),
            (None, None) => return None,
        };
        Some(HeldBy {
            name: name.to_owned(),
            key: capability.to_owned(),
            limit,
            in_use,
        })
    }

    /// Records the claims of limited capabilities before the agent hears
    /// of them: how many a rate window counts, and which tasks a
    /// concurrency limit must know may be running after a restart. If the
    /// journal refuses, every claim goes back to its queue and the poll
    /// fails.
    pub(super) async fn record_claims(&self, claimed: &[ClaimedTask]) -> Result<(), Error> {
        let mut by_capability: BTreeMap<&str, (u32, Vec<String>)> = BTreeMap::new();
        for claim in claimed {
            let capability = claim.spec.capability.as_str();
            let Some(limits) = self.inner.agents.capability_limits(capability) else {
                continue;
            };
            let entry = by_capability.entry(capability).or_default();
            if limits.rate_limit.is_some() {
                entry.0 += 1;
            }
            if limits.concurrency.is_some() {
                entry.1.push(claim.spec.id.clone());
            }
        }
        if by_capability.is_empty() {
            return Ok(());
        }
        let events: Vec<LimitsEvent> = by_capability
            .into_iter()
            .map(
                |(capability, (count, tasks))| LimitsEvent::CapabilityTasksClaimed {
                    capability: capability.to_owned(),
                    count,
                    tasks,
                },
            )
            .collect();
        if let Err(e) = self.record_limits(&events).await {
            let ids: Vec<String> = claimed.iter().map(|c| c.spec.id.clone()).collect();
            self.inner.agents.give_back(&ids);
            return Err(e);
        }
        // A window may be full now: the loop looks when it has room.
        self.inner.capability_rooms.notify_one();
        Ok(())
    }

    /// Whether `task` of `capability` was recorded as claimed: queued
    /// again at a restart, an agent may still be running it.
    pub(super) fn was_claimed(&self, capability: &str, task: &str) -> bool {
        self.limits_table().was_claimed(capability, task)
    }

    /// Appends `events` to the limits stream, one record each, and folds
    /// them; keeps the table as the stream's snapshot now and then.
    async fn record_limits(&self, events: &[LimitsEvent]) -> Result<(), Error> {
        let _exclusive = self.inner.changing_limits.lock().await;
        let now = self.inner.clock.now_ms();
        let first = self.limits_table().seq + 1;
        self.inner.store.append_limits(first, events, now).await?;
        let snapshot = {
            let mut table = self.limits_table();
            for (seq, event) in (first..).zip(events) {
                table.apply(seq, now, event);
            }
            let crossed = (first..=table.seq).any(|seq| seq % SNAPSHOT_EVERY == 0);
            crossed.then(|| {
                // Only tasks still outstanding may be running after a
                // restart: the others need not be kept.
                let agents = &self.inner.agents;
                table.retain_outstanding(|task| agents.is_outstanding(task));
                self.inner.store.put_table_snapshot(&*table)
            })
        };
        if let Some(Ok(written)) = snapshot {
            self.inner.tasks.spawn(async move {
                if let Err(e) = written.await {
                    tracing::warn!(error = %e, "limits snapshot not written");
                }
            });
        }
        Ok(())
    }

    /// Wakes waiting polls when a full rate window has room again: sleeps
    /// until the earliest such moment, or until a claim was recorded.
    pub(super) fn run_capability_rooms(&self) {
        let weak = Arc::downgrade(&self.inner);
        let notify = self.inner.capability_rooms.clone();
        let clock = self.inner.clock.clone();
        self.inner.tasks.spawn(async move {
            let mut due: Option<u64> = None;
            loop {
                let Some(engine) = upgrade(&weak) else { return };
                if due.is_some_and(|at| at <= clock.now_ms()) {
                    engine.inner.agents.wake();
                }
                due = engine.inner.agents.next_capability_room_ms();
                drop(engine);
                super::recover::sleep_or_woken(&clock, due, &notify).await;
            }
        });
    }
}
