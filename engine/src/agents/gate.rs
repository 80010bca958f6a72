//! [`ClaimGate`]: what may keep an agent from taking tasks of one of its
//! capabilities for a while (the runtime's per-agent circuit breakers),
//! asked by the registry at every claim and told how every claim ends.
//!
//! Owns only the questions. The registry never knows why a gate says no,
//! and a gate never changes the registry: it is called with the registry
//! locked, so it must not call back into it (the registry's lock is taken
//! first, the gate's own after, never the other way round). Whoever changes
//! a gate's answer from no to yes without a claim ending (a cool-down
//! passed, a setting removed) calls [`super::AgentRegistry::wake`] so
//! waiting polls look again. From yes to no it changes only when a claim
//! ends (an agent's breaker opening on a failure), which wakes the polls
//! too, or with a setting changed, which wakes them: so a task passed over
//! for an agent that the gate then refuses is looked at again (invariant
//! 35; the model test blocks and wakes likewise).

use std::fmt;

use super::task::Outcome;

/// Whether an agent may take tasks of a capability, by the agent's name.
pub trait ClaimGate: Send + Sync + fmt::Debug {
    /// Whether the agent named `agent` may take a task of `capability` at
    /// `now_ms`. Must change nothing.
    fn admits(&self, agent: &str, capability: &str, now_ms: u64) -> bool;

    /// Task `task` of `capability` is about to be handed to `agent`: the
    /// gate may take note (a probe), or refuse after all (`false`: the
    /// registry then takes nothing of `capability` for the agent in this
    /// claim).
    fn claiming(&self, agent: &str, capability: &str, task: &str, now_ms: u64) -> bool;

    /// `agent`'s claim on `task` ended: with a result the runtime accepted
    /// (`Some`), or a timeout (`Some(Failed)`), or with none (`None`: the
    /// task was withdrawn, or put back in its queue when its agent left).
    fn ended(
        &self,
        agent: &str,
        capability: &str,
        task: &str,
        outcome: Option<Outcome>,
        now_ms: u64,
    );
}
