//! Which workflow an execution runs, for events of the whole journal (the
//! engine-wide stream and exports show it with every event).
//!
//! An `execution_started` event names it; otherwise a running engine's
//! index does; otherwise the execution's first event is read. What was
//! learnt is kept, up to a bound, so a long-lived stream neither reads
//! every execution's start again nor grows without end.

use std::collections::HashMap;
use std::sync::Arc;

use super::History;
use crate::ExecutionId;
use crate::error::Error;
use crate::machine::Event;

/// A running engine's answer to "which workflow does this execution run".
pub type NameLookup = Arc<dyn Fn(ExecutionId) -> Option<String> + Send + Sync>;

/// Most names one reader keeps before it starts over.
const KEPT_MAX: usize = 16 * 1024;

/// Workflow names learnt while reading the journal.
#[derive(Clone)]
pub struct WorkflowNames {
    lookup: Option<NameLookup>,
    kept: HashMap<ExecutionId, String>,
}

impl std::fmt::Debug for WorkflowNames {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkflowNames")
            .field("kept", &self.kept.len())
            .finish_non_exhaustive()
    }
}

impl WorkflowNames {
    pub fn new(lookup: Option<NameLookup>) -> WorkflowNames {
        WorkflowNames {
            lookup,
            kept: HashMap::new(),
        }
    }

    /// The workflow of `execution`, whose event `event` is being shown.
    pub async fn workflow(
        &mut self,
        history: &History,
        execution: ExecutionId,
        event: &Event,
    ) -> Result<String, Error> {
        if let Event::ExecutionStarted { workflow, .. } = event {
            self.keep(execution, workflow);
            return Ok(workflow.clone());
        }
        if let Some(workflow) = self.kept.get(&execution) {
            return Ok(workflow.clone());
        }
        if let Some(workflow) = self.lookup.as_ref().and_then(|l| l(execution)) {
            return Ok(workflow);
        }
        // An engine indexes an execution after its first append, so an event
        // of that same append can come first: its start is stored already.
        match history
            .events(execution, 1, 1)
            .await?
            .first()
            .map(|e| &e.event)
        {
            Some(Event::ExecutionStarted { workflow, .. }) => {
                self.keep(execution, workflow);
                Ok(workflow.clone())
            }
            _ => Err(Error::Inconsistent(format!(
                "execution {execution} has no execution_started event"
            ))),
        }
    }

    fn keep(&mut self, execution: ExecutionId, workflow: &str) {
        if self.kept.len() >= KEPT_MAX {
            self.kept.clear();
        }
        self.kept.insert(execution, workflow.to_owned());
    }
}
