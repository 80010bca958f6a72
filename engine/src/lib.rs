//! retrace-engine: the workflow model, the pure state machine that folds an
//! execution's events, and the runtime that drives executions to completion.
//!
//! - [`model`]: the workflow language (parse, validate, compile, hash).
//! - [`machine`]: the pure core: events, state, `apply`, `decide`, effects.
//! - [`runtime`]: the shell: journal, timers, agents, children, recovery.
//! - [`agents`]: the agent registry and task queues the runtime uses.
//! - [`clock`]: the only source of time (system or simulated).

pub mod agents;
pub mod clock;
pub mod machine;
pub mod model;
pub mod runtime;
