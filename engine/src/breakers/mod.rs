//! Circuit breakers per capability: after `failures` task failures within
//! `windowMs`, a capability's breaker opens and its new tasks fail fast
//! with error type `circuit_open` (retried and routed like any error, no
//! agent asked); after `coolDownMs` the next task goes through as a probe
//! (half-open): its success closes the breaker, its failure opens it again.
//!
//! - `breaker`: one breaker as a pure state machine, told the time.
//! - `table`: every breaker, its settings and state as the reserved
//!   `BREAKERS` stream records them (events and fold).
//!
//! The runtime (`runtime::breakers`) feeds it results, asks it before
//! handing a task out, and records each change. Nothing here reads a clock
//! or does IO.

pub mod breaker;
pub mod table;

pub use breaker::{Breaker, BreakerSettings, BreakerState, Gate, Transition};
pub use table::{BreakerEvent, Breakers, Entry};

pub use crate::error::BreakerError;
