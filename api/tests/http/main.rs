//! The HTTP API over real HTTP: a server on an ephemeral loopback port,
//! one test binary (so the suite links once).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod agents;
mod auth;
mod bounds;
mod breaker_streams;
mod breakers;
mod capability_limits;
mod commands;
mod cross_site;
mod errors;
mod executions;
mod http_capability;
mod limits;
mod logs;
mod metrics;
mod schedules;
mod streams;
mod support;
mod tasks;
mod webhooks;
mod workflows;
