//! Schedules: workflows started on a timetable (a cron expression in a time
//! zone, or every so many milliseconds), with an overlap policy and a
//! catch-up window for fire times missed while the server was down.
//!
//! - `spec`: what a schedule is as a user writes it, checked whole before
//!   anything is recorded, and its fire times (`Timing`).
//! - `state`: the events of the reserved `SCHEDULES` stream and the table
//!   they fold into.
//! - `plan`: the pure decision of what a schedule does next, given its
//!   folded state, the time and whether its last execution still runs.
//!
//! Reading and appending the stream is `store`'s job, and the loop that
//! fires lives in the runtime (`runtime::schedules`). No module here reads
//! a clock or does IO.

pub mod plan;
pub mod spec;
pub mod state;

pub use crate::error::ScheduleError;
pub use plan::{Step, next_step};
pub use spec::{CATCHUP_WINDOW_MS_DEFAULT, Overlap, ScheduleSpec, Timing};
pub use state::{Outcome, Recent, Schedule, ScheduleEvent, Schedules};
