//! The engine's integration tests, as one test binary: each file beside this
//! one is a module of it (one link instead of one per file, which keeps a
//! fresh build's disk and time down). Run one file's tests with a filter:
//! `cargo test -p retrace-engine --test engine runtime_steps::`.

/// These run on the in-memory journal; `on_nats` runs many again on NATS.
const BACKEND: support::Backend = support::Backend::Memory;

mod support;

mod on_nats;

mod agents;
mod breakers;
mod capability_limits;
mod dsl_examples;
mod feature_examples;
mod http_capability;
mod map_steps;
mod runtime_compensation;
mod runtime_failures;
mod runtime_limits;
mod runtime_recovery;
mod runtime_shutdown;
mod runtime_steps;
mod schedules;
mod seed_workflows;
mod spec_workflows;
mod webhooks;
mod workflow_limits;
