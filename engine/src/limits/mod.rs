//! Limits on how much runs at once: a workflow's `concurrency` (executions
//! running per key) and `rateLimit` (executions starting per period per
//! key). An execution of a workflow with limits records its keys
//! (`limit_waiting`) and defers its first step until the limiter lets it
//! go (`limit_acquired`); it holds its concurrency slots until it ends.
//!
//! - `limiter`: the [`Limiter`], every limited execution's standing derived
//!   from states, and who goes next.
//!
//! The runtime (`runtime::limits`) feeds it states after each commit and at
//! recovery, and records each grant. Nothing here reads a clock or does IO.

pub mod limiter;

pub use limiter::{HeldBy, Limiter};
