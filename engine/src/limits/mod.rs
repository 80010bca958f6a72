//! Limits on how much runs at once. Workflows' limits: a workflow's `concurrency` (executions
//! running per key) and `rateLimit` (executions starting per period per
//! key). An execution of a workflow with limits records its keys
//! (`limit_waiting`) and defers its first step until the limiter lets it
//! go (`limit_acquired`); it holds its concurrency slots until it ends.
//!
//! - `limiter`: the [`Limiter`], every limited execution's standing derived
//!   from states, and who goes next.
//! - `capability`: a capability's limits on its tasks across all agents
//!   (`concurrency`, `rateLimit`), and the reserved stream `LIMITS` that
//!   records them and the claims a rate window counts. The agent registry
//!   enforces them at each claim (`agents::caps`).
//!
//! The runtime (`runtime::limits`) feeds it states after each commit and at
//! recovery, and records each grant. Nothing here reads a clock or does IO.

pub mod capability;
pub mod limiter;

pub use capability::{CapabilityLimits, CapabilityRate, LimitsEvent, LimitsTable};
pub use limiter::{HeldBy, Limiter};

pub use crate::error::LimitsError;
