//! retrace-engine: the runtime that drives executions to completion, around
//! the pure core of `retrace-core`.
//!
//! - [`model`] and [`machine`]: the workflow language and the pure state
//!   machine, re-exported from `retrace-core` (which the compiler keeps free
//!   of IO).
//! - [`runtime`]: the shell: [`Engine`](runtime::Engine), which decides,
//!   appends and performs; timers, agents, children, recovery.
//! - [`read`]: the read side: stored histories as decoded events and
//!   states, pages and live streams, for a running engine or a data folder.
//! - [`store`]: the journal boundary: where the journal is, and the only
//!   code that knows records, streams and the codec.
//! - [`agents`]: the agent registry and task queues the runtime uses.
//! - [`http`]: the built-in `http` capability: requests the engine makes
//!   itself, under an outbound address policy, with secrets substituted.
//! - [`webhooks`]: outbound webhooks: subscriptions, their checks, the
//!   signature and the body of a delivery (delivered by the runtime).
//! - [`clock`]: the only source of time (system or simulated).

pub mod agents;
pub mod breakers;
pub mod clock;
mod error;
pub mod http;
pub mod limits;
pub mod read;
pub mod runtime;
pub mod schedules;
pub mod store;
pub mod webhooks;

pub use error::Error;
pub use retrace_core::{ExecutionId, machine, model};
