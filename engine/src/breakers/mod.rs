//! Circuit breakers per capability: after `failures` task failures within
//! `windowMs`, a capability's breaker opens and its new tasks fail fast
//! with error type `circuit_open` (retried and routed like any error, no
//! agent asked); after `coolDownMs` the next task goes through as a probe
//! (half-open): its success closes the breaker, its failure opens it again.
//!
//! With `perAgent` settings, each agent (by name) serving the capability
//! has its own breaker instead, with the same settings and rules: an open
//! one keeps its agent from the capability's tasks (other agents take
//! them; nothing fails fast), and after the cool-down the agent may take
//! one probe task.
//!
//! - `breaker`: one breaker as a pure state machine, told the time.
//! - `table`: every breaker, its settings and state as the reserved
//!   `BREAKERS` stream records them (events and fold), keyed by
//!   capability and agent name.
//!
//! The runtime (`runtime::breakers`) feeds it results, asks it before
//! handing a task out (per-agent ones through the agent registry's gate),
//! and records each change. Nothing here reads a clock or does IO.

pub mod breaker;
pub mod table;

pub use breaker::{Breaker, BreakerSettings, BreakerState, Gate, Transition};
pub use table::{BreakerEvent, Breakers, Entry};

pub use crate::error::BreakerError;
