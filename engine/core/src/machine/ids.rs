//! The ids the machine derives rather than draws: a child execution's id and
//! a task attempt's id. Derived, so a crash between recording one and acting
//! on it can never make two.
//!
//! Owns the derivations, which are part of the journal format: a recorded id
//! is recomputed on replay and by the runtime. It must never change them, nor
//! depend on anything but its arguments.

use crate::ExecutionId;

/// The id of the child a subworkflow step (or error handler) `act` of
/// `parent` starts: derived, so a crash between recording and starting it
/// cannot start two.
pub fn child_id(parent: ExecutionId, act: u64) -> ExecutionId {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"retrace child");
    hasher.update(parent.as_bytes());
    hasher.update(&act.to_le_bytes());
    let mut id = [0u8; 16];
    id.copy_from_slice(&hasher.finalize().as_bytes()[..16]);
    ExecutionId::from_bytes(id)
}

/// The id (and agents' idempotency key) of attempt `attempt` of `act`.
pub fn task_id(execution: ExecutionId, act: u64, attempt: u32) -> String {
    format!("{execution}.{act}.{attempt}")
}

/// The execution a task id belongs to.
pub fn task_execution(task: &str) -> Option<ExecutionId> {
    task.split('.').next()?.parse().ok()
}
