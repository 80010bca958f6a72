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

use retrace_journal::{EventRecord, Journal, NewEvent};

use super::CATALOG;
use crate::error::Error;
use crate::machine;
use crate::model::Workflow;

const DEFINED: &str = "workflow_defined";
/// Who defined the version just before it (same append), and why, when
/// either is known: `{"version", "by"?, "reason"?}`. A record of its own, so the
/// definition's record stays the canonical document it always was.
const DEFINED_BY: &str = "workflow_defined_by";

/// The stored shape of `workflow_defined_by`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DefinedBy {
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

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
        catalog.catch_up(journal).await?;
        Ok(catalog)
    }

    /// Reads and takes in what the stream holds past what it took in.
    pub(crate) async fn catch_up(&mut self, journal: &dyn Journal) -> Result<(), Error> {
        loop {
            let records = journal.read(CATALOG, self.seq + 1, 256).await?;
            if records.is_empty() {
                return Ok(());
            }
            self.take_in(&records)?;
        }
    }

    /// Takes in the catalog stream's `records`, those it has not yet (in
    /// order, from the one after its last).
    pub(crate) fn take_in(&mut self, records: &[EventRecord]) -> Result<(), Error> {
        for r in super::past(records, self.seq, "catalog")? {
            if r.kind == DEFINED {
                // As accepted then: bounds added since do not refuse it.
                let wf = Workflow::from_stored_json(&r.payload).map_err(Error::InvalidWorkflow)?;
                self.insert(Arc::new(wf));
            }
            self.seq = r.seq;
        }
        Ok(())
    }

    /// The catalog stream's last seq taken in.
    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }

    /// The catalog records that define `wf` (on behalf of `by`) and the seq
    /// the first must be appended at, or `None` if that version is defined
    /// already. The caller holds definitions exclusively from here until
    /// [`Self::defined`], so the catalog stream's seqs never race.
    pub(crate) fn definition(
        &self,
        wf: &Workflow,
        by: Option<&str>,
        reason: Option<&str>,
        now_ms: u64,
    ) -> Option<(u64, Vec<NewEvent>)> {
        if self.by_version.contains_key(wf.version()) {
            return None;
        }
        let mut events = vec![NewEvent::new(
            DEFINED,
            now_ms,
            wf.canonical_json().as_bytes().to_vec(),
        )];
        if by.is_some() || reason.is_some() {
            let who = DefinedBy {
                version: wf.version().to_owned(),
                by: by.map(str::to_owned),
                reason: reason.map(str::to_owned),
            };
            // Two strings: encoding cannot fail.
            let payload = serde_json::to_vec(&who).unwrap_or_default();
            events.push(NewEvent::new(DEFINED_BY, now_ms, payload));
        }
        Some((self.seq + 1, events))
    }

    /// Takes in a definition whose records were appended up to `last_seq`.
    pub(crate) fn defined(&mut self, wf: Arc<Workflow>, last_seq: u64) {
        self.insert(wf);
        self.seq = last_seq;
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

/// A catalog record as an audit shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogRecord {
    /// A version defined (`name`, `version`).
    Defined { name: String, version: String },
    /// Who defined `version` (the record after its definition).
    DefinedBy(DefinedBy),
}

/// What catalog `record` holds (`None` for a kind this build does not know).
pub(crate) fn record_of(
    record: &retrace_journal::EventRecord,
) -> Result<Option<CatalogRecord>, Error> {
    Ok(match record.kind.as_str() {
        DEFINED => {
            let wf = Workflow::from_stored_json(&record.payload).map_err(Error::InvalidWorkflow)?;
            Some(CatalogRecord::Defined {
                name: wf.name().to_owned(),
                version: wf.version().to_owned(),
            })
        }
        DEFINED_BY => {
            let who: DefinedBy =
                serde_json::from_slice(&record.payload).map_err(|source| Error::Codec {
                    what: format!("catalog record {} does not decode", record.seq),
                    source,
                })?;
            Some(CatalogRecord::DefinedBy(who))
        }
        _ => None,
    })
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

    fn limited(&self, workflow: &str) -> bool {
        self.by_name.get(workflow).is_some_and(|versions| {
            versions
                .iter()
                .filter_map(|v| self.by_version.get(v))
                .any(|w| !w.limits().is_empty())
        })
    }
}
