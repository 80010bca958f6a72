//! Capability limits as the registry enforces them: whether one more task
//! of a capability may be claimed now, across all agents.
//!
//! - `concurrency`: tasks claimed at once. After a restart, a task that
//!   was claimed (the runtime records claims of limited capabilities) and
//!   is still outstanding holds a slot (a *phantom*: its agent may still be
//!   working on it) until its result arrives, it is withdrawn, or its
//!   lease would have run out. A phantom task may be claimed again while
//!   phantoms and claims together are within the limit (its claim takes
//!   its own slot over, so the sum does not grow); any other task only
//!   while they are below it. So never more run at once than the limit
//!   allows, old claims included.
//! - `rateLimit`: tasks claimed per period, a sliding window of claim
//!   instants; after a restart it starts with the claims the journal
//!   recorded (the runtime records each claim of a rate-limited capability
//!   before the agent hears of it).
//!
//! Owns the windows and the phantoms. It must never read a clock or touch
//! the journal: told the time, and told the claimed count by the queue.

use std::collections::{HashMap, VecDeque};

use crate::limits::CapabilityLimits;

#[derive(Debug, Default)]
struct Cap {
    limits: Option<CapabilityLimits>,
    /// Claim instants, oldest first (at most the rate limit's worth).
    window: VecDeque<u64>,
    /// Tasks outstanding at a restart, and until when each holds a slot.
    phantoms: HashMap<String, u64>,
}

/// Where a capability stands under its limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapabilityStanding {
    /// Tasks claimed now, plus those outstanding at a restart that may
    /// still run.
    pub running: usize,
    /// Claims within the rate window now.
    pub in_window: usize,
    /// Whether one more may be claimed now.
    pub room: bool,
}

#[derive(Debug, Default)]
pub(super) struct Caps {
    by_capability: HashMap<String, Cap>,
}

impl Caps {
    pub(super) fn set(&mut self, capability: &str, limits: Option<CapabilityLimits>) {
        let cap = self.by_capability.entry(capability.to_owned()).or_default();
        cap.limits = limits;
        cap.trim();
    }

    pub(super) fn limits(&self, capability: &str) -> Option<CapabilityLimits> {
        self.by_capability.get(capability).and_then(|c| c.limits)
    }

    /// Claims recorded before a restart, oldest first.
    pub(super) fn seed(&mut self, capability: &str, claims: impl IntoIterator<Item = u64>) {
        let cap = self.by_capability.entry(capability.to_owned()).or_default();
        cap.window.extend(claims);
        cap.trim();
    }

    /// A task outstanding at a restart holds a slot until `until_ms`.
    pub(super) fn phantom(&mut self, capability: &str, task: &str, until_ms: u64) {
        self.by_capability
            .entry(capability.to_owned())
            .or_default()
            .phantoms
            .insert(task.to_owned(), until_ms);
    }

    /// The task's result arrived, or it is no longer wanted: its phantom
    /// slot, if any, is free.
    pub(super) fn gone(&mut self, capability: &str, task: &str) {
        if let Some(cap) = self.by_capability.get_mut(capability) {
            cap.phantoms.remove(task);
        }
    }

    /// Whether `task` of `capability` may be claimed now, `claimed` saying
    /// how many of its tasks are (asked only if it has a concurrency
    /// limit). The same rule as [`Caps::standing`], on the claim's path.
    pub(super) fn room(
        &mut self,
        capability: &str,
        task: &str,
        claimed: impl FnOnce() -> usize,
        now_ms: u64,
    ) -> bool {
        let Some(cap) = self.by_capability.get_mut(capability) else {
            return true;
        };
        let Some(limits) = cap.limits else {
            return true;
        };
        if let Some(n) = limits.concurrency {
            if !cap.phantoms.is_empty() {
                cap.phantoms.retain(|_, until| *until > now_ms);
            }
            let own = usize::from(cap.phantoms.contains_key(task));
            if claimed() + cap.phantoms.len() - own >= n as usize {
                return false;
            }
        }
        limits
            .rate_limit
            .is_none_or(|r| cap.in_window(now_ms) < r.limit as usize)
    }

    /// Where `capability` stands; with `task`, as seen by a claim of it
    /// (its own phantom slot is its to take).
    pub(super) fn standing(
        &mut self,
        capability: &str,
        task: Option<&str>,
        claimed: usize,
        now_ms: u64,
    ) -> CapabilityStanding {
        let Some(cap) = self.by_capability.get_mut(capability) else {
            return CapabilityStanding {
                running: claimed,
                in_window: 0,
                room: true,
            };
        };
        cap.phantoms.retain(|_, until| *until > now_ms);
        let own = task.is_some_and(|t| cap.phantoms.contains_key(t));
        let running = claimed + cap.phantoms.len();
        let in_window = cap.in_window(now_ms);
        let Some(limits) = cap.limits else {
            return CapabilityStanding {
                running,
                in_window,
                room: true,
            };
        };
        let concurrency_room = limits
            .concurrency
            .is_none_or(|n| running - usize::from(own) < n as usize);
        let rate_room = limits
            .rate_limit
            .is_none_or(|r| in_window < r.limit as usize);
        CapabilityStanding {
            running,
            in_window,
            room: concurrency_room && rate_room,
        }
    }

    /// `task` of `capability` was claimed at `now_ms`.
    pub(super) fn claimed(&mut self, capability: &str, task: &str, now_ms: u64) {
        let Some(cap) = self.by_capability.get_mut(capability) else {
            return;
        };
        cap.phantoms.remove(task);
        if cap.limits.is_some_and(|l| l.rate_limit.is_some()) {
            cap.window.push_back(now_ms);
            cap.trim();
        }
    }

    /// Whether claims of `capability` are counted in a rate window (and so
    /// must be recorded).
    pub(super) fn rate_limited(&self, capability: &str) -> bool {
        self.limits(capability)
            .is_some_and(|l| l.rate_limit.is_some())
    }

    /// When the first rate window that is full now has room again.
    pub(super) fn next_room_ms(&self, now_ms: u64) -> Option<u64> {
        self.by_capability
            .values()
            .filter_map(|cap| {
                let rate = cap.limits?.rate_limit?;
                (cap.in_window(now_ms) >= rate.limit as usize)
                    .then(|| {
                        cap.window
                            .front()
                            .map(|at| at.saturating_add(rate.period_ms))
                    })
                    .flatten()
            })
            .min()
    }
}

impl Cap {
    fn in_window(&self, now_ms: u64) -> usize {
        let Some(rate) = self.limits.and_then(|l| l.rate_limit) else {
            return 0;
        };
        let from = now_ms.saturating_add(1).saturating_sub(rate.period_ms);
        // Sorted: claims are recorded as they happen, on one clock.
        self.window.len() - self.window.partition_point(|at| *at < from)
    }

    /// Keeps no more claim instants than the rate limit counts.
    fn trim(&mut self) {
        let keep = self
            .limits
            .and_then(|l| l.rate_limit)
            .map_or(0, |r| r.limit as usize);
        while self.window.len() > keep {
            self.window.pop_front();
        }
    }
}
