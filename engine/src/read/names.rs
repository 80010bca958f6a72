//! Which workflow an execution runs, for events of the whole journal (the
//! engine-wide stream and exports show it with every event).
//!
//! An `execution_started` event names it; otherwise a running engine's
//! index does; otherwise the execution's first event is read. What was
//! learnt is kept, up to a bound, so a long-lived stream neither reads
//! every execution's start again nor grows without end. Over a running
//! engine the index answers for every execution but those started a moment
//! ago (an execution is indexed after its first append), so a reader keeps
//! only a few names: one per reader of the engine-wide stream, it must stay
//! small. Offline (an export) nothing else answers, and more are kept.

use std::collections::HashMap;
use std::sync::Arc;

use super::History;
use crate::ExecutionId;
use crate::error::Error;
use crate::machine::Event;

/// A running engine's answer to "which workflow does this execution run".
pub type NameLookup = Arc<dyn Fn(ExecutionId) -> Option<String> + Send + Sync>;

/// Most names one reader keeps before it starts over, offline.
const KEPT_MAX: usize = 16 * 1024;

/// Most names one reader keeps before it starts over, over a running
/// engine (whose index names everything older).
const KEPT_MAX_ONLINE: usize = 256;

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
        let most = if self.lookup.is_some() {
            KEPT_MAX_ONLINE
        } else {
            KEPT_MAX
        };
        if self.kept.len() >= most {
            self.kept.clear();
        }
        self.kept.insert(execution, workflow.to_owned());
    }
}
