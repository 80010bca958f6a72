//! The tests of what executions do, again on the journal on NATS: steps,
//! timers, events and their correlation, subworkflows (parent and child in
//! different partitions), idempotency keys, every failure semantic,
//! compensation, workflow limits, circuit breakers, and the recovery after
//! a crash (a new journal fencing the old one). Each test starts its own
//! `nats-server` on loopback (`RETRACE_NATS_SERVER`, which `scripts/test`
//! installs) and stops it at its end.
//!
//! The files are the same as the in-memory run's; `support` is compiled
//! again here, reading `BACKEND` from this module.

// Each file here is loaded twice on purpose: once per backend.
#![allow(clippy::duplicate_mod)]

/// Every test here runs on a real NATS server.
const BACKEND: support::Backend = support::Backend::Nats;

#[path = "support/mod.rs"]
mod support;

#[path = "breakers.rs"]
mod breakers;
#[path = "dsl_examples.rs"]
mod dsl_examples;
#[path = "feature_examples.rs"]
mod feature_examples;
#[path = "map_steps.rs"]
mod map_steps;
#[path = "runtime_compensation.rs"]
mod runtime_compensation;
#[path = "runtime_failures.rs"]
mod runtime_failures;
#[path = "runtime_shutdown.rs"]
mod runtime_shutdown;
#[path = "runtime_steps.rs"]
mod runtime_steps;
#[path = "schedules.rs"]
mod schedules;
#[path = "seed_workflows.rs"]
mod seed_workflows;
// Only here: engines sharing one journal's partitions.
#[path = "shared_engines.rs"]
mod shared_engines;
#[path = "spec_workflows.rs"]
mod spec_workflows;
#[path = "workflow_limits.rs"]
mod workflow_limits;
