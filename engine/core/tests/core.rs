//! The core's integration tests, as one test binary: each file beside this
//! one is a module of it (one link instead of one per file). Run one file's
//! tests with a filter: `cargo test -p retrace-core --test core model_hash::`.

mod machine_events;
mod machine_properties;
mod machine_traces;
mod model_bounds;
mod model_budget;
mod model_dialect;
mod model_docs;
mod model_examples;
mod model_expressions;
mod model_hash;
mod model_mappings;
mod model_problems;
mod model_robustness;
mod model_workflow;
