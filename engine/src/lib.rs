//! retrace-engine: the workflow model, the pure state machine that folds an
//! execution's events, and the runtime that drives executions to completion.

pub mod agents;
pub mod clock;
pub mod machine;
pub mod model;
