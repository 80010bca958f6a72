//! Every breaker as the reserved `BREAKERS` stream records it: the events
//! (settings set or removed, and each change of state) and the table they
//! fold into. The fold needs no clock: an opening's instant is when it was
//! recorded.
//!
//! The table is keyed by (capability, agent name): `(c, None)` is the
//! capability's breaker, holding its settings; with `perAgent` settings,
//! `(c, Some(name))` is the breaker of the agent called `name` for `c`,
//! made when that agent's first task of `c` fails (the state events name
//! the agent). Removing a capability's breaker, or switching `perAgent`,
//! drops its agents' breakers.
//!
//! Owns the events' shapes and the fold; never decides a transition
//! (`breaker` does) nor does IO.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::breaker::{Breaker, BreakerSettings, BreakerState, Transition};

/// The most agents' breakers kept for one capability: past it, making
/// another first forgets the closed ones with no failure in their window.
pub const AGENT_BREAKERS_MAX: usize = 1_000;

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
    /// `failures` failures within the window (1: a failed probe); with
    /// `agent`, that agent's breaker of the capability.
    #[serde(rename_all = "camelCase")]
    BreakerOpened {
        capability: String,
        failures: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        agent: Option<String>,
    },
    #[serde(rename_all = "camelCase")]
    BreakerHalfOpened {
        capability: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        agent: Option<String>,
    },
    #[serde(rename_all = "camelCase")]
    BreakerClosed {
        capability: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        agent: Option<String>,
    },
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
            | BreakerEvent::BreakerHalfOpened { capability, .. }
            | BreakerEvent::BreakerClosed { capability, .. } => capability,
        }
    }

    /// The agent whose breaker changed state; `None` for a capability's
    /// own breaker and for settings.
    pub fn agent(&self) -> Option<&str> {
        match self {
            BreakerEvent::BreakerOpened { agent, .. }
            | BreakerEvent::BreakerHalfOpened { agent, .. }
            | BreakerEvent::BreakerClosed { agent, .. } => agent.as_deref(),
            BreakerEvent::BreakerSet { .. } | BreakerEvent::BreakerRemoved { .. } => None,
        }
    }

    /// The event that records `transition` of `capability`'s breaker (of
    /// `agent`'s, with one).
    pub fn of(capability: &str, agent: Option<&str>, transition: Transition) -> BreakerEvent {
        let capability = capability.to_owned();
        let agent = agent.map(str::to_owned);
        match transition {
            Transition::Opened { failures } => BreakerEvent::BreakerOpened {
                capability,
                failures,
                agent,
            },
            Transition::HalfOpened => BreakerEvent::BreakerHalfOpened { capability, agent },
            Transition::Closed => BreakerEvent::BreakerClosed { capability, agent },
        }
    }
}

/// One breaker, and when it last changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub breaker: Breaker,
    /// When the capability's settings were last set (an agent's breaker:
    /// when it was made).
    pub set_at_ms: u64,
    pub set_by: Option<String>,
    /// When its state last changed (or it was set).
    pub changed_at_ms: u64,
    /// How many times it has opened.
    pub opened: u64,
}

impl Entry {
    fn new(settings: BreakerSettings, at_ms: u64, by: Option<String>) -> Entry {
        Entry {
            breaker: Breaker::new(settings, BreakerState::Closed),
            set_at_ms: at_ms,
            set_by: by,
            changed_at_ms: at_ms,
            opened: 0,
        }
    }
}

/// The table's key: a capability, and an agent's name for its breaker of
/// the capability.
type Key = (String, Option<String>);

/// Every breaker, by capability (and agent).
#[derive(Debug, Clone, Default)]
pub struct Breakers {
    by_key: BTreeMap<Key, Entry>,
    /// The stream's last seq.
    pub seq: u64,
}

impl Breakers {
    /// `capability`'s breaker (with its settings).
    pub fn get(&self, capability: &str) -> Option<&Entry> {
        self.by_key.get(&(capability.to_owned(), None))
    }

    pub fn get_mut(&mut self, capability: &str) -> Option<&mut Entry> {
        self.by_key.get_mut(&(capability.to_owned(), None))
    }

    /// Every capability's breaker, by capability.
    pub fn list(&self) -> impl Iterator<Item = (&String, &Entry)> {
        self.by_key
            .iter()
            .filter(|((_, agent), _)| agent.is_none())
            .map(|((capability, _), entry)| (capability, entry))
    }

    /// Whether `capability` has per-agent breakers.
    pub fn per_agent(&self, capability: &str) -> bool {
        self.get(capability)
            .is_some_and(|e| e.breaker.settings.per_agent)
    }

    /// The breaker of the agent called `agent` for `capability`, if it has
    /// one.
    pub fn agent(&self, capability: &str, agent: &str) -> Option<&Entry> {
        self.by_key
            .get(&(capability.to_owned(), Some(agent.to_owned())))
    }

    pub fn agent_mut(&mut self, capability: &str, agent: &str) -> Option<&mut Entry> {
        self.by_key
            .get_mut(&(capability.to_owned(), Some(agent.to_owned())))
    }

    /// The breaker of the agent called `agent` for `capability`, made at
    /// `at_ms` if need be; `None` if `capability` has no per-agent
    /// breakers. Making one past [`AGENT_BREAKERS_MAX`] first forgets the
    /// capability's agents' breakers that are closed with no failure in
    /// their window at `at_ms`.
    pub fn agent_or_new(
        &mut self,
        capability: &str,
        agent: &str,
        at_ms: u64,
    ) -> Option<&mut Entry> {
        let settings = self
            .get(capability)
            .filter(|e| e.breaker.settings.per_agent)?
            .breaker
            .settings;
        let key = (capability.to_owned(), Some(agent.to_owned()));
        if !self.by_key.contains_key(&key) {
            if self.agents_of(capability).count() >= AGENT_BREAKERS_MAX {
                self.by_key.retain(|(c, a), e| {
                    c != capability
                        || a.is_none()
                        || e.breaker.state != BreakerState::Closed
                        || e.breaker.recent_failures(at_ms) > 0
                });
            }
            self.by_key
                .insert(key.clone(), Entry::new(settings, at_ms, None));
        }
        self.by_key.get_mut(&key)
    }

    /// The agents' breakers of `capability`, by agent name.
    pub fn agents_of<'a>(
        &'a self,
        capability: &'a str,
    ) -> impl Iterator<Item = (&'a String, &'a Entry)> + 'a {
        self.by_key
            .range((capability.to_owned(), None)..)
            .take_while(move |((c, _), _)| c == capability)
            .filter_map(|((_, agent), entry)| Some((agent.as_ref()?, entry)))
    }

    /// Every agent's breaker: (capability, agent name, breaker).
    pub fn all_agents(&self) -> impl Iterator<Item = (&String, &String, &Entry)> {
        self.by_key
            .iter()
            .filter_map(|((capability, agent), entry)| Some((capability, agent.as_ref()?, entry)))
    }

    /// Drops every agent's breaker of `capability`.
    fn drop_agents(&mut self, capability: &str) {
        self.by_key
            .retain(|(c, agent), _| c != capability || agent.is_none());
    }

    /// Folds the event stored at `seq`, recorded at `at_ms`, as reading the
    /// stream back at open does: a state change sets the breaker's state.
    pub fn apply(&mut self, seq: u64, at_ms: u64, event: &BreakerEvent) {
        self.fold(seq, at_ms, event, Fold::Restore);
    }

    /// Notes the event the runtime just stored at `seq`: settings and
    /// removals as [`Self::apply`] does, but a state change only counts (its
    /// instant, the openings). The live breaker made that change before it
    /// was recorded (the log records asynchronously, in order) and may be
    /// past it by now: setting the state from the record would take the
    /// breaker back (a probe handed out, then an older `opened` recorded,
    /// would lose the probe and its success).
    pub fn note_recorded(&mut self, seq: u64, at_ms: u64, event: &BreakerEvent) {
        self.fold(seq, at_ms, event, Fold::Count);
    }

    fn fold(&mut self, seq: u64, at_ms: u64, event: &BreakerEvent, how: Fold) {
        self.seq = seq;
        let capability = event.capability();
        match event {
            BreakerEvent::BreakerSet { settings, by, .. } => {
                match self.get_mut(capability) {
                    // New settings keep the state it is in, unless they
                    // switch between one breaker and one per agent: then
                    // it starts closed, and the agents' breakers go.
                    Some(entry) => {
                        let switched = entry.breaker.settings.per_agent != settings.per_agent;
                        entry.breaker.settings = *settings;
                        entry.set_at_ms = at_ms;
                        entry.set_by = by.clone();
                        if switched {
                            entry.breaker = Breaker::new(*settings, BreakerState::Closed);
                            entry.changed_at_ms = at_ms;
                            self.drop_agents(capability);
                        } else {
                            for ((c, agent), e) in self.by_key.iter_mut() {
                                if c == capability && agent.is_some() {
                                    e.breaker.settings = *settings;
                                }
                            }
                        }
                    }
                    None => {
                        self.by_key.insert(
                            (capability.to_owned(), None),
                            Entry::new(*settings, at_ms, by.clone()),
                        );
                    }
                }
            }
            BreakerEvent::BreakerRemoved { .. } => {
                self.by_key.remove(&(capability.to_owned(), None));
                self.drop_agents(capability);
            }
            BreakerEvent::BreakerOpened { .. }
            | BreakerEvent::BreakerHalfOpened { .. }
            | BreakerEvent::BreakerClosed { .. } => {
                let entry = match event.agent() {
                    // Only while the capability has per-agent breakers (a
                    // change recorded after they were switched off is moot).
                    Some(agent) => self.agent_or_new(capability, agent, at_ms),
                    None => self.get_mut(capability),
                };
                let Some(entry) = entry else {
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
                if how == Fold::Restore {
                    entry.breaker.restore(state);
                }
                entry.changed_at_ms = at_ms;
            }
        }
    }
}

/// What folding a recorded state change does to the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fold {
    /// Reading the stream back: the record is the state.
    Restore,
    /// The runtime's own record of a change it made: the state is the live one.
    Count,
}

#[cfg(test)]
mod tests {
    use super::super::breaker::Gate;
    use super::*;

    fn settings(per_agent: bool) -> BreakerSettings {
        BreakerSettings {
            failures: 2,
            window_ms: 10_000,
            cool_down_ms: 5_000,
            per_agent,
        }
    }

    fn set(capability: &str, per_agent: bool) -> BreakerEvent {
        BreakerEvent::BreakerSet {
            capability: capability.to_owned(),
            settings: settings(per_agent),
            by: None,
            reason: None,
        }
    }

    /// The log records changes after the live breaker made them, and may
    /// lag: a probe handed out before `opened` is recorded must stay the
    /// probe, and its success must close the breaker.
    #[test]
    fn a_recorded_change_never_takes_the_live_breaker_back() {
        let mut t = Breakers::default();
        t.apply(1, 100, &set("pay", false));
        let breaker = &mut t.get_mut("pay").unwrap().breaker;
        assert_eq!(breaker.failed("t1", 200), None);
        let opened = breaker
            .failed("t2", 200)
            .expect("the second failure opens it");
        let Gate::Probe(half_opened) = breaker.gate("t3", 5_200) else {
            panic!("the cool-down is over: t3 is the probe");
        };
        // Only now does the log record the opening, then the half-opening.
        t.note_recorded(2, 5_300, &BreakerEvent::of("pay", None, opened));
        t.note_recorded(3, 5_300, &BreakerEvent::of("pay", None, half_opened));
        let entry = t.get_mut("pay").unwrap();
        assert_eq!(entry.breaker.state, BreakerState::HalfOpen);
        assert_eq!(entry.opened, 1, "the opening is counted");
        assert_eq!(
            entry.breaker.succeeded("t3"),
            Some(Transition::Closed),
            "the probe's success closes it"
        );
        // Read back at open, the same records are the state.
        let mut read_back = Breakers::default();
        read_back.apply(1, 100, &set("pay", false));
        read_back.apply(2, 5_300, &BreakerEvent::of("pay", None, opened));
        assert_eq!(
            read_back.get("pay").unwrap().breaker.state,
            BreakerState::Open { since_ms: 5_300 }
        );
    }

    #[test]
    fn agents_breakers_fold_by_name_and_go_with_their_capability() {
        let mut t = Breakers::default();
        t.apply(1, 100, &set("pay", true));
        t.apply(2, 100, &set("ship", false));
        let opened = |agent: Option<&str>| {
            BreakerEvent::of("pay", agent, Transition::Opened { failures: 2 })
        };
        t.apply(3, 200, &opened(Some("a")));
        t.apply(4, 300, &opened(Some("b")));
        t.apply(
            5,
            400,
            &BreakerEvent::of("pay", Some("b"), Transition::HalfOpened),
        );
        let agents: Vec<_> = t
            .agents_of("pay")
            .map(|(name, e)| (name.as_str(), e.breaker.state, e.opened))
            .collect();
        assert_eq!(
            agents,
            [
                ("a", BreakerState::Open { since_ms: 200 }, 1),
                ("b", BreakerState::HalfOpen, 1)
            ]
        );
        // The capability's own breaker is untouched; `list` shows only it.
        assert_eq!(t.get("pay").unwrap().breaker.state, BreakerState::Closed);
        assert_eq!(t.list().count(), 2);
        assert_eq!(t.agents_of("ship").count(), 0);
        // An agent's change for a capability without per-agent breakers is
        // moot.
        t.apply(
            6,
            500,
            &BreakerEvent::of("ship", Some("a"), Transition::Opened { failures: 2 }),
        );
        assert_eq!(t.agents_of("ship").count(), 0);
        assert_eq!(t.get("ship").unwrap().opened, 0);
        // Switching per-agent off drops the agents' breakers.
        t.apply(7, 600, &set("pay", false));
        assert_eq!(t.agents_of("pay").count(), 0);
        t.apply(8, 700, &set("pay", true));
        t.apply(9, 800, &opened(Some("a")));
        t.apply(
            10,
            900,
            &BreakerEvent::BreakerRemoved {
                capability: "pay".into(),
                by: None,
                reason: None,
            },
        );
        assert!(t.get("pay").is_none());
        assert_eq!(t.agents_of("pay").count(), 0);
        assert_eq!(t.seq, 10);
    }

    #[test]
    fn old_events_without_an_agent_still_decode() {
        let old = r#"{"kind":"breaker_opened","capability":"pay","failures":3}"#;
        let event: BreakerEvent = serde_json::from_str(old).unwrap();
        assert_eq!(
            event,
            BreakerEvent::of("pay", None, Transition::Opened { failures: 3 })
        );
        assert_eq!(serde_json::to_string(&event).unwrap(), old);
        let new = BreakerEvent::of("pay", Some("w-1"), Transition::Closed);
        assert_eq!(
            serde_json::to_string(&new).unwrap(),
            r#"{"kind":"breaker_closed","capability":"pay","agent":"w-1"}"#
        );
    }
}
