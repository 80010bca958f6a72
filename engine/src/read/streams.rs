//! Live streams of decoded events: one execution's history, or the whole
//! journal's, stored events first and then live ones, exactly once each.
//!
//! A stream is pulled only as fast as its reader reads: the journal's
//! subscription catches up from storage when a reader falls behind, so a
//! slow reader neither blocks the engine nor misses an event. It must never
//! buffer on the engine's side.

use std::collections::BTreeSet;

use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use retrace_journal::{EventRecord, Tail};

use super::{GlobalEvent, History, HistoryEvent};
use crate::ExecutionId;
use crate::error::Error;
use crate::store::codec;
use crate::store::{JournalError, execution_of, is_execution, stream_of};

/// One execution's events, decoded; ends when the journal closes, or after
/// an error item.
pub type EventStream = BoxStream<'static, Result<HistoryEvent, Error>>;

/// The whole journal's events, decoded; never ends by itself.
pub type GlobalStream = BoxStream<'static, Result<GlobalEvent, Error>>;

/// Which events of the whole journal a stream shows.
#[derive(Debug, Clone, Default)]
pub struct GlobalFilter {
    /// Only executions of this workflow.
    pub workflow: Option<String>,
    /// Only events of these types.
    pub types: Option<BTreeSet<String>>,
}

fn history_event(record: &EventRecord) -> Result<HistoryEvent, Error> {
    Ok(HistoryEvent {
        seq: record.seq,
        position: record.position,
        at_ms: record.recorded_at_ms,
        hash: record.hash,
        event: codec::decode(record)?,
    })
}

/// Ends a stream after its first error (a reader cannot go past a record it
/// cannot read).
fn until_error<T: Send + 'static>(
    stream: impl Stream<Item = Result<T, Error>> + Send + 'static,
) -> BoxStream<'static, Result<T, Error>> {
    stream
        .scan(false, |failed, item| {
            let next = (!*failed).then(|| {
                *failed = item.is_err();
                item
            });
            futures::future::ready(next)
        })
        .boxed()
}

impl History {
    /// The execution's events with `seq >= from_seq`: stored ones, then
    /// live ones as they are recorded.
    pub fn subscribe(&self, id: ExecutionId, from_seq: u64) -> EventStream {
        if !is_execution(id) {
            return futures::stream::once(async move { Err(Error::UnknownExecution(id)) }).boxed();
        }
        let records = self.store().journal().subscribe(Tail::Stream {
            stream: stream_of(id),
            from_seq,
        });
        until_error(records.map(|item: Result<EventRecord, JournalError>| history_event(&item?)))
    }

    /// Every execution's events with `position >= from_position`, in
    /// position order, as `filter` selects them: stored ones, then live.
    pub fn subscribe_all(&self, from_position: u64, filter: GlobalFilter) -> GlobalStream {
        let history = self.clone();
        let mut records = self
            .store()
            .journal()
            .subscribe(Tail::All { from_position });
        let mut names = self.names();
        let events = async_stream::stream! {
            while let Some(item) = records.next().await {
                let record = match item {
                    Ok(record) => record,
                    Err(e) => {
                        yield Err(Error::from(e));
                        break;
                    }
                };
                // Workflow definitions share the journal but are not events
                // of an execution.
                let Some(execution) = execution_of(record.stream) else {
                    continue;
                };
                if filter.types.as_ref().is_some_and(|t| !t.contains(&record.kind)) {
                    continue;
                }
                let shown = match history_event(&record) {
                    Ok(event) => names
                        .workflow(&history, execution, &event.event)
                        .await
                        .map(|workflow| GlobalEvent { execution, workflow, event }),
                    Err(e) => Err(e),
                };
                match shown {
                    Ok(e) if filter.workflow.as_ref().is_some_and(|w| *w != e.workflow) => {}
                    Ok(e) => yield Ok(e),
                    Err(e) => {
                        yield Err(e);
                        break;
                    }
                }
            }
        };
        events.boxed()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use futures::{FutureExt, StreamExt};
    use retrace_journal::store::memory::MemoryStore;
    use retrace_journal::{EventLog, Options};
    use serde_json::json;

    use super::GlobalFilter;
    use crate::clock::SystemClock;
    use crate::read::GlobalEvent;
    use crate::runtime::{Engine, EngineConfig, StartRequest};

    /// Everything stored, as the engine-wide stream shows it.
    async fn stored(engine: &Engine) -> Vec<GlobalEvent> {
        let mut names = engine.read().names();
        let (mut all, mut from) = (Vec::new(), Some(1));
        while let Some(position) = from {
            let (page, next) = engine
                .read()
                .global_events(position, 100, &mut names)
                .await
                .unwrap();
            all.extend(page);
            from = next;
        }
        all
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reader_that_falls_far_behind_gets_every_event_once_in_order() {
        // A live buffer of 16 KiB; the executions below record about 1 MB.
        let options = Options {
            durable: false,
            live_buffer_bytes: 16 * 1024,
            ..Options::default()
        };
        let log = EventLog::in_memory(MemoryStore::new(), options).unwrap();
        let engine = Engine::open(EngineConfig::journal(Arc::new(log), Arc::new(SystemClock)))
            .await
            .unwrap();
        let carry = |id: &str| {
            json!({"id": id, "type": "task", "capability": "transform",
                   "input": {"doc": "$.input.doc"}})
        };
        let mut steps = vec![carry("a"), carry("b"), carry("c")];
        steps[0]["next"] = json!("b");
        steps[1]["next"] = json!("c");
        let definition = json!({"name": "carry", "steps": steps});
        engine
            .define_json(definition.to_string().as_bytes())
            .await
            .unwrap();
        let mut slow = engine.read().subscribe_all(1, GlobalFilter::default());
        let mut ends = engine.read().subscribe_all(
            1,
            GlobalFilter {
                types: Some(["execution_completed".to_owned()].into()),
                ..GlobalFilter::default()
            },
        );
        // Both wait on the live buffer (the catalog's record is not shown).
        assert!(slow.next().now_or_never().is_none());
        assert!(ends.next().now_or_never().is_none());
        let doc = "x".repeat(1024);
        for _ in 0..200 {
            engine
                .start(StartRequest {
                    workflow: "carry".into(),
                    input: json!({"doc": doc}),
                    ..StartRequest::default()
                })
                .await
                .unwrap();
        }
        let expected = stored(&engine).await;
        assert!(expected.len() >= 200 * 5, "{} events", expected.len());
        let mut got = Vec::new();
        for _ in 0..expected.len() {
            got.push(slow.next().await.unwrap().unwrap());
        }
        assert_eq!(got, expected, "every event once, in order, as stored");
        let mut completed = Vec::new();
        for _ in 0..200 {
            completed.push(ends.next().await.unwrap().unwrap());
        }
        let expected_ends: Vec<GlobalEvent> = expected
            .into_iter()
            .filter(|e| e.event.event.kind() == "execution_completed")
            .collect();
        assert_eq!(completed, expected_ends);
        // Nothing more: both wait on the live buffer again.
        assert!(slow.next().now_or_never().is_none());
        assert!(ends.next().now_or_never().is_none());
        engine.shutdown().await.unwrap();
    }
}
