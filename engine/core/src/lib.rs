//! retrace-core: the workflow language and the pure state machine.
//!
//! - [`model`]: the workflow language (parse, validate, compile, hash).
//! - [`machine`]: events, state, `apply` (the fold) and `decide` (a trigger
//!   becomes events), and the effects a state waits on.
//! - [`ExecutionId`]: the id both share with every layer above.
//!
//! This crate is the functional core, and its dependencies keep it so: no
//! tokio, no journal, no HTTP, no clock. Time, randomness and other
//! workflows' versions come in as arguments and are recorded in events, so
//! the same history always folds to the same state. `cargo tree -p
//! retrace-core` is the check.

mod id;
pub mod machine;
pub mod model;

pub use id::ExecutionId;
