//! The workflow catalog: every defined version, by content hash and by name.
//!
//! Definitions are events too: each `workflow_defined` record in the
//! reserved stream `CATALOG` carries a canonical definition, and the
//! catalog is rebuilt from that stream at open. Definitions are immutable;
//! defining the same document again is a no-op.
//!
//! Owns the catalog stream's records. It must never compile a definition it
//! did not read from that stream, nor change one.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use retrace_journal::{Journal, NewEvent};

use super::CATALOG;
use crate::error::Error;
use crate::machine;
use crate::model::Workflow;

const DEFINED: &str = "workflow_defined";

/// What the engine knows of workflows.
#[derive(Debug, Default)]
pub struct WorkflowCatalog {
    by_version: HashMap<String, Arc<Workflow>>,
    /// Versions of each workflow, oldest first.
    by_name: BTreeMap<String, Vec<String>>,
    /// The catalog stream's last seq.
    seq: u64,
}

/// One workflow and its versions, newest last.
#[derive(Debug, Clone)]
pub struct WorkflowVersions {
    pub name: String,
    pub versions: Vec<Arc<Workflow>>,
}

impl WorkflowCatalog {
    /// Rebuilds the catalog from its stream.
    pub async fn load(journal: &dyn Journal) -> Result<WorkflowCatalog, Error> {
        let mut catalog = WorkflowCatalog::default();
        loop {
            let records = journal.read(CATALOG, catalog.seq + 1, 256).await?;
            if records.is_empty() {
                return Ok(catalog);
            }
            for r in records {
                if r.kind == DEFINED {
                    // As accepted then: bounds added since do not refuse it.
                    let wf =
                        Workflow::from_stored_json(&r.payload).map_err(Error::InvalidWorkflow)?;
                    catalog.insert(Arc::new(wf));
                }
                catalog.seq = r.seq;
            }
        }
    }

    /// The catalog event that defines `wf` and the seq it must be appended
    /// at, or `None` if that version is defined already. The caller holds
    /// definitions exclusively from here until [`Self::defined`], so the
    /// catalog stream's seqs never race.
    pub(crate) fn definition(&self, wf: &Workflow, now_ms: u64) -> Option<(u64, NewEvent)> {
        if self.by_version.contains_key(wf.version()) {
            return None;
        }
        let event = NewEvent::new(DEFINED, now_ms, wf.canonical_json().as_bytes().to_vec());
        Some((self.seq + 1, event))
    }

    /// Takes in a definition appended at `seq`.
    pub(crate) fn defined(&mut self, wf: Arc<Workflow>, seq: u64) {
        self.insert(wf);
        self.seq = seq;
    }

    fn insert(&mut self, wf: Arc<Workflow>) {
        let versions = self.by_name.entry(wf.name().to_string()).or_default();
        if !versions.iter().any(|v| v == wf.version()) {
            versions.push(wf.version().to_string());
        }
        self.by_version.insert(wf.version().to_string(), wf);
    }

    /// The workflow at `version`, or its newest version.
    pub fn get(&self, name: &str, version: Option<&str>) -> Option<Arc<Workflow>> {
        let version = match version {
            Some(v) => v,
            None => self.by_name.get(name)?.last()?,
        };
        self.by_version
            .get(version)
            .filter(|w| w.name() == name)
            .cloned()
    }

    /// A version by its hash alone.
    pub fn by_version(&self, version: &str) -> Option<Arc<Workflow>> {
        self.by_version.get(version).cloned()
    }

    pub fn list(&self) -> Vec<WorkflowVersions> {
        self.by_name
            .iter()
            .map(|(name, versions)| WorkflowVersions {
                name: name.clone(),
                versions: versions
                    .iter()
                    .filter_map(|v| self.by_version.get(v).cloned())
                    .collect(),
            })
            .collect()
    }
}

impl machine::Versions for WorkflowCatalog {
    fn latest_version(&self, workflow: &str) -> Option<String> {
        self.by_name.get(workflow)?.last().cloned()
    }

    fn has_version(&self, workflow: &str, version: &str) -> bool {
        self.by_version
            .get(version)
            .is_some_and(|w| w.name() == workflow)
    }
}
