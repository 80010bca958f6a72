//! The ids the machine derives rather than draws: a child execution's id and
//! a task attempt's id. Derived, so a crash between recording one and acting
//! on it can never make two.
//!
//! On a journal several servers share, where an id falls decides which
//! server drives it ([`Placement`]): every execution of a workflow that
//! declares limits lives in that workflow's own partition
//! ([`limits_partition`]), so one server counts all of them, as on one.
//! A child id is then the first of a derived sequence that falls there.
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

/// How a journal several servers share places executions: its partition
/// count and its hash of an id into one (the journal's own, handed in: the
/// machine knows nothing of journals).
#[derive(Debug, Clone, Copy)]
pub struct Placement {
    pub partitions: u32,
    pub partition_of: fn(ExecutionId, u32) -> u32,
}

impl Placement {
    /// The partition of `id`.
    pub fn partition(&self, id: ExecutionId) -> u32 {
        (self.partition_of)(id, self.partitions)
    }

    /// The first of `draw(0)`, `draw(1)`, ... in `partition` (about as
    /// many draws as there are partitions; the draws are hashes, so one
    /// falls there long before the count runs out).
    pub fn first_in(
        &self,
        partition: u32,
        draw: impl Fn(u64) -> ExecutionId,
    ) -> Option<ExecutionId> {
        (0..u64::from(u32::MAX))
            .map(draw)
            .find(|id| self.partition(*id) == partition)
    }
}

/// The partition every execution of `workflow` lives in when one of its
/// versions declares limits (`concurrency`, `rateLimit`): its limiter
/// counts them all. A hash of the name alone, so every server, and every
/// version, agrees.
pub fn limits_partition(workflow: &str, placement: &Placement) -> u32 {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"retrace limits");
    hasher.update(workflow.as_bytes());
    let mut id = [0u8; 16];
    id.copy_from_slice(&hasher.finalize().as_bytes()[..16]);
    placement.partition(ExecutionId::from_bytes(id))
}

/// The id of `parent`'s child of step `act` placed in `partition`: the
/// first of [`child_id`] and its further derivations that falls there.
pub fn placed_child_id(
    parent: ExecutionId,
    act: u64,
    partition: u32,
    placement: &Placement,
) -> ExecutionId {
    let draw = |n: u64| {
        if n == 0 {
            return child_id(parent, act);
        }
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"retrace placed child");
        hasher.update(parent.as_bytes());
        hasher.update(&act.to_le_bytes());
        hasher.update(&n.to_le_bytes());
        let mut id = [0u8; 16];
        id.copy_from_slice(&hasher.finalize().as_bytes()[..16]);
        ExecutionId::from_bytes(id)
    };
    placement
        .first_in(partition, draw)
        .unwrap_or_else(|| child_id(parent, act))
}

/// The id (and agents' idempotency key) of attempt `attempt` of `act`.
pub fn task_id(execution: ExecutionId, act: u64, attempt: u32) -> String {
    format!("{execution}.{act}.{attempt}")
}

/// The execution a task id belongs to.
pub fn task_execution(task: &str) -> Option<ExecutionId> {
    task.split('.').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placement() -> Placement {
        Placement {
            partitions: 64,
            partition_of: |id, partitions| u32::from(id.as_bytes()[7]) % partitions,
        }
    }

    /// A limited workflow's children fall in its partition, whatever the
    /// parent and step; the same parent and step always give the same id.
    #[test]
    fn a_placed_child_falls_in_its_partition_and_is_derived_alike_every_time() {
        let placement = placement();
        let partition = limits_partition("billing", &placement);
        assert_eq!(partition, limits_partition("billing", &placement));
        for byte in 0..=255u8 {
            let parent = ExecutionId::from_bytes([byte; 16]);
            for act in 1..4 {
                let id = placed_child_id(parent, act, partition, &placement);
                assert_eq!(placement.partition(id), partition);
                assert_eq!(id, placed_child_id(parent, act, partition, &placement));
                // The first draw is the unplaced id: a child that falls
                // there already keeps it.
                let plain = child_id(parent, act);
                if placement.partition(plain) == partition {
                    assert_eq!(id, plain);
                }
            }
        }
    }

    #[test]
    fn workflows_are_spread_over_the_partitions() {
        let placement = placement();
        let partitions: std::collections::BTreeSet<u32> = (0..200)
            .map(|i| limits_partition(&format!("workflow-{i}"), &placement))
            .collect();
        assert!(partitions.len() > 32, "{partitions:?}");
    }
}
