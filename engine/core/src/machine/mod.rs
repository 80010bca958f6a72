//! The pure core: an execution as a deterministic state machine.
//!
//! - [`event`]: what is recorded; the only truth about an execution.
//! - [`state`]: the execution's state and [`apply`], the fold of events.
//! - [`decide`]: [`start`] and [`handle`], which turn a trigger into events.
//! - [`effects`]: what the runtime must do for a state (tasks to queue,
//!   timers to arm, children to start), derived from the state alone.
//!
//! Nothing in this module does IO, reads a clock, draws random numbers or
//! depends on tokio: time, entropy, other workflows' versions and the
//! engine's limits come in through [`Ctx`], and whatever they decide is
//! recorded in events.
//!
//! Modules depend on each other in one direction only, lowest first:
//! `event`; `state`; `effects`; `ctx`, `ids`, `trigger` (what deciding takes
//! and gives); then the deciding layers `run`, `compensation`, `failure`,
//! `flow`, `commands`, `decide`.

mod commands;
mod compensation;
mod ctx;
pub mod decide;
pub mod effects;
pub mod event;
mod failure;
mod flow;
mod ids;
pub mod progress;
mod run;
pub mod state;
pub mod tags;
mod trigger;

pub use ctx::{Ctx, Defaults, HISTORY_EVENTS_MAX_DEFAULT, Limits, RetryStrategy, Versions};
pub use decide::{handle, start};
pub use effects::{Effect, EffectKey, pending_effects, visit_pending};
pub use event::{
    CompensationReason, ErrorInfo, Event, FAILED_ITEMS_SHOWN, FailedItem, FailedItems, FailedStep,
    LimitKey, ParentRef, TaskTimeouts, Thread, error_types,
};
pub use flow::MAP_ITEMS_MAX;
pub use ids::{Placement, child_id, limits_partition, placed_child_id, task_execution, task_id};
pub use progress::{Progress, StepProgress, StepState};
pub use run::INLINE_CAPABILITIES;
pub use state::{
    Activation, ApplyError, Compensation, Completed, Counts, Deferred, ExecutionState, FailedMap,
    ItemState, Items, KeptSignal, LimitGate, Role, Status, Waiting, apply,
};
pub use trigger::{PRIORITY_MAX, Rejection, StartParams, StartSignal, Trigger};
