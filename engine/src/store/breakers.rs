//! Circuit breakers in the journal: the events of the reserved stream
//! `BREAKERS` (JSON, see `reserved`), and the table rebuilt from them at
//! open.
//!
//! Owns the stream's fold at open; never decides a transition.

use retrace_journal::Journal;

use super::BREAKERS;
use super::reserved::{self, StreamEvent};
use crate::breakers::{BreakerEvent, Breakers};
use crate::error::Error;

impl StreamEvent for BreakerEvent {
    const STREAM: &'static str = "breakers";
    const KINDS: &'static [&'static str] = &BreakerEvent::KINDS;

    fn kind(&self) -> &'static str {
        BreakerEvent::kind(self)
    }
}

/// Rebuilds the table from its stream (a few events per breaker change: it
/// stays small).
pub async fn load(journal: &dyn Journal) -> Result<Breakers, Error> {
    let mut table = Breakers::default();
    reserved::fold(journal, BREAKERS, 0, |seq, at_ms, event| match event {
        Some(event) => table.apply(seq, at_ms, &event),
        None => table.seq = seq,
    })
    .await?;
    Ok(table)
}
