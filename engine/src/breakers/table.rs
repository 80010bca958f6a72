//! Every breaker as the reserved `BREAKERS` stream records it: the events
//! (settings set or removed, and each change of state) and the table they
//! fold into. The fold needs no clock: an opening's instant is when it was
//! recorded.
//!
//! Owns the events' shapes and the fold; never decides a transition
//! (`breaker` does) nor does IO.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::breaker::{Breaker, BreakerSettings, BreakerState, Transition};

/// One event of the breakers stream; the record's kind is the tag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BreakerEvent {
    #[serde(rename_all = "camelCase")]
    BreakerSet {
        capability: String,
        settings: BreakerSettings,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    #[serde(rename_all = "camelCase")]
    BreakerRemoved {
        capability: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// `failures` failures within the window (1: a failed probe).
    #[serde(rename_all = "camelCase")]
    BreakerOpened { capability: String, failures: u32 },
    #[serde(rename_all = "camelCase")]
    BreakerHalfOpened { capability: String },
    #[serde(rename_all = "camelCase")]
    BreakerClosed { capability: String },
}

impl BreakerEvent {
    pub const KINDS: [&'static str; 5] = [
        "breaker_set",
        "breaker_removed",
        "breaker_opened",
        "breaker_half_opened",
        "breaker_closed",
    ];

    pub fn kind(&self) -> &'static str {
        match self {
            BreakerEvent::BreakerSet { .. } => "breaker_set",
            BreakerEvent::BreakerRemoved { .. } => "breaker_removed",
            BreakerEvent::BreakerOpened { .. } => "breaker_opened",
            BreakerEvent::BreakerHalfOpened { .. } => "breaker_half_opened",
            BreakerEvent::BreakerClosed { .. } => "breaker_closed",
        }
    }

    pub fn capability(&self) -> &str {
        match self {
            BreakerEvent::BreakerSet { capability, .. }
            | BreakerEvent::BreakerRemoved { capability, .. }
            | BreakerEvent::BreakerOpened { capability, .. }
            | BreakerEvent::BreakerHalfOpened { capability }
            | BreakerEvent::BreakerClosed { capability } => capability,
        }
    }

    /// The event that records `transition` of `capability`'s breaker.
    pub fn of(capability: &str, transition: Transition) -> BreakerEvent {
        let capability = capability.to_owned();
        match transition {
            Transition::Opened { failures } => BreakerEvent::BreakerOpened {
                capability,
                failures,
            },
            Transition::HalfOpened => BreakerEvent::BreakerHalfOpened { capability },
            Transition::Closed => BreakerEvent::BreakerClosed { capability },
        }
    }
}

/// One capability's breaker, and when it last changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub breaker: Breaker,
    pub set_at_ms: u64,
    pub set_by: Option<String>,
    /// When its state last changed (or it was set).
    pub changed_at_ms: u64,
    /// How many times it has opened.
    pub opened: u64,
}

/// Every breaker, by capability.
#[derive(Debug, Clone, Default)]
pub struct Breakers {
    by_capability: BTreeMap<String, Entry>,
    /// The stream's last seq.
    pub seq: u64,
}

impl Breakers {
    pub fn get(&self, capability: &str) -> Option<&Entry> {
        self.by_capability.get(capability)
    }

    pub fn get_mut(&mut self, capability: &str) -> Option<&mut Entry> {
        self.by_capability.get_mut(capability)
    }

    pub fn list(&self) -> impl Iterator<Item = (&String, &Entry)> {
        self.by_capability.iter()
    }

    /// Folds the event stored at `seq`, recorded at `at_ms`. A state change
    /// is folded whether or not the in-memory breaker made it already (the
    /// runtime changes the breaker, then records), so folding is also how a
    /// restart gets the state back.
    pub fn apply(&mut self, seq: u64, at_ms: u64, event: &BreakerEvent) {
        self.seq = seq;
        let capability = event.capability();
        match event {
            BreakerEvent::BreakerSet { settings, by, .. } => {
                match self.by_capability.get_mut(capability) {
                    // New settings keep the state it is in.
                    Some(entry) => {
                        entry.breaker.settings = *settings;
                        entry.set_at_ms = at_ms;
                        entry.set_by = by.clone();
                    }
                    None => {
                        self.by_capability.insert(
                            capability.to_owned(),
                            Entry {
                                breaker: Breaker::new(*settings, BreakerState::Closed),
                                set_at_ms: at_ms,
                                set_by: by.clone(),
                                changed_at_ms: at_ms,
                                opened: 0,
                            },
                        );
                    }
                }
            }
            BreakerEvent::BreakerRemoved { .. } => {
                self.by_capability.remove(capability);
            }
            BreakerEvent::BreakerOpened { .. }
            | BreakerEvent::BreakerHalfOpened { .. }
            | BreakerEvent::BreakerClosed { .. } => {
                let Some(entry) = self.by_capability.get_mut(capability) else {
                    return;
                };
                let state = match event {
                    BreakerEvent::BreakerOpened { .. } => {
                        entry.opened += 1;
                        BreakerState::Open { since_ms: at_ms }
                    }
                    BreakerEvent::BreakerHalfOpened { .. } => BreakerState::HalfOpen,
                    _ => BreakerState::Closed,
                };
                // The live breaker may be ahead (it changed, then recorded):
                // only a restart's fold sets the state from the record.
                entry.breaker.restore(state);
                entry.changed_at_ms = at_ms;
            }
        }
    }
}
