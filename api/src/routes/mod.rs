//! The handlers, one module per resource: each turns a request into engine
//! calls and the engine's answers into views. The router that serves them is
//! [`crate::router`].
//!
//! A handler must never decide anything about an execution: it checks the
//! request, calls the engine, and shows what it answers.

pub mod agents;
pub mod breakers;
pub mod commands;
pub mod dashboard;
pub mod executions;
pub mod health;
pub mod history;
pub mod limits;
pub mod metrics;
pub mod schedules;
pub mod signal_with_start;
pub mod streams;
pub mod tasks;
pub mod tokens;
pub mod webhooks;
pub mod workflows;
