//! Limits on a capability's tasks across all agents: how many are claimed
//! at once (`concurrency`) and how many are claimed per period
//! (`rateLimit`). Their settings, and the claims a rate window counts, as
//! the events of the reserved stream `LIMITS` and the table they fold into.
//!
//! A claim of a limited capability is recorded (`capability_tasks_claimed`)
//! before the agent is told of it, so the windows rebuilt after a crash
//! hold every claim handed out, and the tasks an agent may still be
//! running are known: both limits hold across restarts. The table keeps, per capability, no more claims
//! than its limit (older ones cannot matter), so it stays small as the
//! stream grows; it is the stream's snapshot.
//!
//! Owns the settings' shape and ranges, the events and the fold. It must
//! never read a clock, decide a claim (`agents` does, told the limits), or
//! do IO.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::model::{LIMIT_MAX, LIMIT_PERIOD_MS_MAX};

/// A capability's limits, as `PUT /v1/capabilities/{capability}/limits`
/// and the server's configuration give them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CapabilityLimits {
    /// Tasks claimed at once, across all agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// Tasks claimed per period, across all agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<CapabilityRate>,
}

/// `rateLimit` of a capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CapabilityRate {
    pub limit: u32,
    pub period_ms: u64,
}

impl CapabilityLimits {
    /// Every problem with the limits as given: at least one of the two, a
    /// limit from 1 to 100,000, a period from 1 ms to 366 days.
    pub fn check(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        let max = u32::try_from(LIMIT_MAX).unwrap_or(u32::MAX);
        if self.concurrency.is_none() && self.rate_limit.is_none() {
            problems.push("give `concurrency`, `rateLimit` or both".to_owned());
        }
        if let Some(n) = self.concurrency
            && !(1..=max).contains(&n)
        {
            problems.push(format!("concurrency: must be from 1 to {max}, not {n}"));
        }
        if let Some(rate) = self.rate_limit {
            if !(1..=max).contains(&rate.limit) {
                problems.push(format!(
                    "rateLimit.limit: must be from 1 to {max}, not {}",
                    rate.limit
                ));
            }
            if !(1..=LIMIT_PERIOD_MS_MAX).contains(&rate.period_ms) {
                problems.push(format!(
                    "rateLimit.periodMs: must be from 1 to {LIMIT_PERIOD_MS_MAX} (366 days), not {}",
                    rate.period_ms
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

/// One event of the limits stream; the record's kind is the tag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LimitsEvent {
    #[serde(rename_all = "camelCase")]
    CapabilityLimitsSet {
        capability: String,
        limits: CapabilityLimits,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    #[serde(rename_all = "camelCase")]
    CapabilityLimitsRemoved {
        capability: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Tasks of a limited capability claimed, at the record's instant:
    /// `count` of them (what a rate window counts), and with a concurrency
    /// limit their ids (`tasks`: which may be running after a restart).
    #[serde(rename_all = "camelCase")]
    CapabilityTasksClaimed {
        capability: String,
        count: u32,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tasks: Vec<String>,
    },
}

impl LimitsEvent {
    pub const KINDS: [&'static str; 3] = [
        "capability_limits_set",
        "capability_limits_removed",
        "capability_tasks_claimed",
    ];

    pub fn kind(&self) -> &'static str {
        match self {
            LimitsEvent::CapabilityLimitsSet { .. } => "capability_limits_set",
            LimitsEvent::CapabilityLimitsRemoved { .. } => "capability_limits_removed",
            LimitsEvent::CapabilityTasksClaimed { .. } => "capability_tasks_claimed",
        }
    }

    pub fn capability(&self) -> &str {
        match self {
            LimitsEvent::CapabilityLimitsSet { capability, .. }
            | LimitsEvent::CapabilityLimitsRemoved { capability, .. }
            | LimitsEvent::CapabilityTasksClaimed { capability, .. } => capability,
        }
    }
}

/// One capability's recorded limits and recent claims.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Recorded {
    /// Set through the API (`None`: none, or removed; the server's
    /// configuration may still give some).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<CapabilityLimits>,
    #[serde(default)]
    pub set_at_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_by: Option<String>,
    /// When its most recent claims were recorded, oldest first: at most
    /// `MAX_KEPT` (more can never matter to a limit of at most that).
    #[serde(default, skip_serializing_if = "VecDeque::is_empty")]
    pub claims: VecDeque<u64>,
    /// Tasks recorded as claimed that may still be outstanding (pruned to
    /// the outstanding ones whenever the table is kept as a snapshot).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub claimed_tasks: BTreeSet<String>,
}

/// The most claims kept per capability: the largest limit.
const MAX_KEPT: usize = LIMIT_MAX as usize;

/// Every capability's recorded limits and claims: the fold of the stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LimitsTable {
    pub by_capability: BTreeMap<String, Recorded>,
    /// The stream's seq this table is folded to.
    pub seq: u64,
}

impl LimitsTable {
    pub fn apply(&mut self, seq: u64, at_ms: u64, event: &LimitsEvent) {
        self.seq = seq;
        let capability = event.capability().to_owned();
        match event {
            LimitsEvent::CapabilityLimitsSet { limits, by, .. } => {
                let entry = self.by_capability.entry(capability).or_default();
                entry.limits = Some(*limits);
                entry.set_at_ms = at_ms;
                entry.set_by = by.clone();
                entry.trim();
            }
            LimitsEvent::CapabilityLimitsRemoved { .. } => {
                if let Some(entry) = self.by_capability.get_mut(&capability) {
                    entry.limits = None;
                    entry.set_by = None;
                    entry.set_at_ms = at_ms;
                }
            }
            LimitsEvent::CapabilityTasksClaimed { count, tasks, .. } => {
                let entry = self.by_capability.entry(capability).or_default();
                for _ in 0..*count {
                    entry.claims.push_back(at_ms);
                }
                entry.claimed_tasks.extend(tasks.iter().cloned());
                entry.trim();
            }
        }
    }
}

impl LimitsTable {
    /// Forgets the claimed tasks that are no longer outstanding.
    pub fn retain_outstanding(&mut self, outstanding: impl Fn(&str) -> bool) {
        for entry in self.by_capability.values_mut() {
            entry.claimed_tasks.retain(|task| outstanding(task));
        }
    }

    /// Whether `task` of `capability` was recorded as claimed (so an agent
    /// may still be running it).
    pub fn was_claimed(&self, capability: &str, task: &str) -> bool {
        self.by_capability
            .get(capability)
            .is_some_and(|e| e.claimed_tasks.contains(task))
    }
}

impl Recorded {
    /// Keeps only the claims its rate limit could count.
    fn trim(&mut self) {
        let keep = self
            .limits
            .and_then(|l| l.rate_limit)
            .map_or(MAX_KEPT, |r| r.limit as usize)
            .min(MAX_KEPT);
        while self.claims.len() > keep {
            self.claims.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn limits_are_checked_whole() {
        let limits: CapabilityLimits = serde_json::from_value(serde_json::json!({"concurrency": 0,
                "rateLimit": {"limit": 100_001, "periodMs": 0}}))
        .unwrap();
        assert_eq!(
            limits.check().unwrap_err(),
            [
                "concurrency: must be from 1 to 100000, not 0",
                "rateLimit.limit: must be from 1 to 100000, not 100001",
                "rateLimit.periodMs: must be from 1 to 31622400000 (366 days), not 0",
            ]
        );
        assert!(CapabilityLimits::default().check().is_err());
        assert!(
            serde_json::from_value::<CapabilityLimits>(serde_json::json!({"rate": 1})).is_err()
        );
    }

    #[test]
    fn the_table_keeps_the_settings_and_no_more_claims_than_the_rate_counts() {
        let mut table = LimitsTable::default();
        let limits = CapabilityLimits {
            concurrency: Some(4),
            rate_limit: Some(CapabilityRate {
                limit: 2,
                period_ms: 1_000,
            }),
        };
        table.apply(
            1,
            10,
            &LimitsEvent::CapabilityLimitsSet {
                capability: "c".into(),
                limits,
                by: Some("ops".into()),
                reason: None,
            },
        );
        table.apply(
            2,
            20,
            &LimitsEvent::CapabilityTasksClaimed {
                capability: "c".into(),
                count: 3,
                tasks: vec!["t1".into()],
            },
        );
        let entry = &table.by_capability["c"];
        assert_eq!(entry.limits, Some(limits));
        assert_eq!(entry.claims, [20, 20]);
        assert!(table.was_claimed("c", "t1"));
        table.retain_outstanding(|_| false);
        assert!(!table.was_claimed("c", "t1"));
        assert_eq!(table.seq, 2);
        table.apply(
            3,
            30,
            &LimitsEvent::CapabilityLimitsRemoved {
                capability: "c".into(),
                by: None,
                reason: None,
            },
        );
        assert_eq!(table.by_capability["c"].limits, None);
    }
}
