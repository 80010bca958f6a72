//! Whether one execution's history is intact: every event from the first to
//! the head read back, each checked against the hash chain (the journal's
//! `read` checks every link) and decoded. The dashboard's chain badge and
//! `GET /v1/executions/{id}/verify`; `retrace verify` checks a whole
//! stopped data folder, indexes included.
//!
//! Owns that check for one execution. It must never repair anything, and
//! never report a failure to read (the disk) as a broken chain.

use retrace_journal::Error as JournalError;

use super::History;
use crate::ExecutionId;
use crate::error::Error;
use crate::store::codec::{self, READ_CHUNK};
use crate::store::{is_execution, stream_of};

/// What checking one execution's chain found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainCheck {
    /// The events its head says it has.
    pub events: u64,
    /// The events read back intact, from the first.
    pub intact: u64,
    /// The first defect, where it is; `None` when the chain is intact.
    pub problem: Option<String>,
}

impl History {
    /// Checks the chain of execution `id`.
    pub async fn check_chain(&self, id: ExecutionId) -> Result<ChainCheck, Error> {
        let head = match is_execution(id) {
            true => self.last_seq(id).await?,
            false => None,
        };
        let Some(events) = head else {
            return Err(Error::UnknownExecution(id));
        };
        let mut intact = 0;
        let mut problem = None;
        'reading: while intact < events {
            let read = self
                .store
                .journal()
                .read(stream_of(id), intact + 1, READ_CHUNK)
                .await;
            let records = match read {
                Ok(records) => records,
                Err(e @ JournalError::Corrupt { seq, .. }) => {
                    // The read checks records in order: those before the
                    // one it names were intact.
                    intact = intact.max(seq.saturating_sub(1));
                    problem = Some(e.to_string());
                    break;
                }
                Err(e) => return Err(e.into()),
            };
            if records.is_empty() {
                problem = Some(format!(
                    "events {} to {events} are missing",
                    intact.saturating_add(1)
                ));
                break;
            }
            for r in &records {
                if let Err(e) = codec::decode(r) {
                    problem = Some(e.to_string());
                    break 'reading;
                }
                intact = r.seq;
            }
        }
        if let Some(problem) = &mut problem {
            // Where the first defect is, for the reader.
            *problem = format!("after {intact} intact events: {problem}");
        }
        Ok(ChainCheck {
            events,
            intact,
            problem,
        })
    }
}
