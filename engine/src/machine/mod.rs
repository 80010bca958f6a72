//! The pure core: an execution as a deterministic state machine.
//!
//! - [`event`]: what is recorded; the only truth about an execution.
//! - [`state`]: the execution's state and [`apply`], the fold of events.
//! - [`decide`]: [`start`] and [`handle`], which turn a trigger into events.
//! - [`effects`]: what the runtime must do for a state (tasks to queue,
//!   timers to arm, children to start), derived from the state alone.
//!
//! Nothing in this module does IO, reads a clock, draws random numbers or
//! depends on tokio: time, entropy and other workflows' versions come in
//! through [`Ctx`], and whatever they decide is recorded in events.

pub mod decide;
pub mod effects;
pub mod event;
mod failure;
pub mod state;

pub use decide::{
    Catalog, Ctx, Defaults, INLINE_CAPABILITIES, Rejection, RetryStrategy, StartParams, Trigger,
    child_id, handle, start, task_execution, task_id,
};
pub use effects::{Effect, pending_effects};
pub use event::{ErrorInfo, Event, ParentRef, TaskTimeouts, Thread, error_types};
pub use state::{
    Activation, ApplyError, Compensation, CompensationReason, Completed, Deferred, ExecutionState,
    FailedStep, KeptSignal, Metrics, Role, Status, Waiting, apply,
};
