//! Live streams of decoded events: one execution's history, or the whole
//! journal's, stored events first and then live ones, exactly once each.
//! The whole journal's stream shows executions' events and, when asked,
//! the changes of circuit breakers (their reserved stream's events), in
//! the journal's order; the other reserved streams are never shown.
//!
//! A stream is pulled only as fast as its reader reads: the journal's
//! subscription catches up from storage when a reader falls behind, so a
//! slow reader neither blocks the engine nor misses an event. It must never
//! buffer on the engine's side.

use std::collections::BTreeSet;

use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use retrace_journal::{EventRecord, Tail};

use super::{GlobalEvent, History, HistoryEvent, WorkflowNames};
use crate::ExecutionId;
use crate::breakers::{BreakerEvent, BreakerState};
use crate::error::Error;
use crate::store::codec;
use crate::store::{BREAKERS, JournalError, execution_of, is_execution, reserved, stream_of};

/// One execution's events, decoded; ends when the journal closes, or after
/// an error item.
pub type EventStream = BoxStream<'static, Result<HistoryEvent, Error>>;

/// The whole journal's events, decoded; never ends by itself.
pub type GlobalStream = BoxStream<'static, Result<GlobalEvent, Error>>;

/// The whole journal's events with what else a reader asked for (see
/// [`Include`]), decoded; never ends by itself.
pub type JournalStream = BoxStream<'static, Result<JournalEvent, Error>>;

/// Which events of the whole journal a stream shows.
#[derive(Debug, Clone, Default)]
pub struct GlobalFilter {
    /// Only executions of this workflow (it selects among executions'
    /// events: a breaker's change, when included, is no execution's).
    pub workflow: Option<String>,
    /// Only events of these types (for a breaker's change, its kind:
    /// `breaker_opened`, …).
    pub types: Option<BTreeSet<String>>,
}

/// What the whole journal's stream shows besides executions' events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Include {
    /// The changes of circuit breakers: settings set and removed, opened,
    /// half-opened, closed.
    pub breakers: bool,
}

/// A change of a circuit breaker, as its reserved stream records it.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerChange {
    /// Its place in the whole journal.
    pub position: u64,
    /// When it was recorded.
    pub at_ms: u64,
    pub event: BreakerEvent,
}

impl BreakerChange {
    /// Where the breaker stands after this change; `None` for settings set
    /// (they keep the state it is in) or removed.
    pub fn state(&self) -> Option<BreakerState> {
        match self.event {
            BreakerEvent::BreakerOpened { .. } => Some(BreakerState::Open {
                since_ms: self.at_ms,
            }),
            BreakerEvent::BreakerHalfOpened { .. } => Some(BreakerState::HalfOpen),
            BreakerEvent::BreakerClosed { .. } => Some(BreakerState::Closed),
            _ => None,
        }
    }
}

/// An event of the whole journal's stream: an execution's, or a circuit
/// breaker's change.
#[derive(Debug, Clone, PartialEq)]
pub enum JournalEvent {
    /// Boxed: an execution's event is much the larger.
    Execution(Box<GlobalEvent>),
    Breaker(BreakerChange),
}

impl JournalEvent {
    /// Its place in the whole journal.
    pub fn position(&self) -> u64 {
        match self {
            JournalEvent::Execution(e) => e.event.position,
            JournalEvent::Breaker(b) => b.position,
        }
    }
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

/// The execution's event `record` holds, with its workflow's name; `None`
/// when `workflow` names another.
async fn execution_event(
    history: &History,
    names: &mut WorkflowNames,
    execution: ExecutionId,
    record: &EventRecord,
    workflow: Option<&str>,
) -> Result<Option<JournalEvent>, Error> {
    let event = history_event(record)?;
    let name = names.workflow(history, execution, &event.event).await?;
    if workflow.is_some_and(|w| w != name) {
        return Ok(None);
    }
    Ok(Some(JournalEvent::Execution(Box::new(GlobalEvent {
        execution,
        workflow: name,
        event,
    }))))
}

/// The breaker's change `record` holds; `None` for a kind a later build
/// added.
fn breaker_change(record: &EventRecord) -> Result<Option<JournalEvent>, Error> {
    let event = reserved::decode::<BreakerEvent>(record)?;
    Ok(event.map(|event| {
        JournalEvent::Breaker(BreakerChange {
            position: record.position,
            at_ms: record.recorded_at_ms,
            event,
        })
    }))
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
        self.subscribe_journal(from_position, filter, Include::default())
            .filter_map(|item| {
                futures::future::ready(match item {
                    Ok(JournalEvent::Execution(event)) => Some(Ok(*event)),
                    // Not asked for, so never yielded.
                    Ok(JournalEvent::Breaker(_)) => None,
                    Err(e) => Some(Err(e)),
                })
            })
            .boxed()
    }

    /// Every execution's events with `position >= from_position`, and what
    /// `include` adds, in position order, as `filter` selects them: stored
    /// ones, then live.
    pub fn subscribe_journal(
        &self,
        from_position: u64,
        filter: GlobalFilter,
        include: Include,
    ) -> JournalStream {
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
                let execution = execution_of(record.stream);
                // Workflow definitions, tokens and schedules share the
                // journal but are not events of an execution; breakers'
                // changes are shown only when asked for.
                let breaker = record.stream == BREAKERS && include.breakers;
                if execution.is_none() && !breaker {
                    continue;
                }
                if filter.types.as_ref().is_some_and(|t| !t.contains(&record.kind)) {
                    continue;
                }
                let shown = match execution {
                    Some(execution) => {
                        let workflow = filter.workflow.as_deref();
                        execution_event(&history, &mut names, execution, &record, workflow).await
                    }
                    None => breaker_change(&record),
                };
                match shown {
                    Ok(Some(e)) => yield Ok(e),
                    Ok(None) => {}
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

    use super::{GlobalFilter, Include, JournalEvent};
    use crate::agents::{AgentId, TaskSpec};
    use crate::breakers::{BreakerSettings, BreakerState};
    use crate::clock::{SimClock, SystemClock};
    use crate::machine::ErrorInfo;
    use crate::read::GlobalEvent;
    use crate::runtime::{Engine, EngineConfig, StartRequest};
    use crate::store::{BREAKERS, execution_of};

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

    /// The next task `agent` is handed (the breaker's gate passes it, or
    /// fails it fast and hands nothing).
    async fn claim(engine: &Engine, agent: &AgentId) -> TaskSpec {
        loop {
            if let Some(task) = engine.poll_tasks(agent, 1_000, 1).await.unwrap().pop() {
                return task.spec;
            }
        }
    }

    #[tokio::test]
    async fn breaker_changes_are_shown_in_the_journals_order_only_when_asked() {
        let log = EventLog::in_memory(MemoryStore::new(), Options::default()).unwrap();
        let clock = SimClock::new(1_700_000_000_000);
        let engine = Engine::open(EngineConfig::journal(
            Arc::new(log),
            Arc::new(clock.clone()),
        ))
        .await
        .unwrap();
        let definition = json!({"name": "call", "steps": [
            {"id": "hit", "type": "task", "capability": "flaky"}]});
        engine
            .define_json(definition.to_string().as_bytes())
            .await
            .unwrap();
        let asked = Include { breakers: true };
        let mut all = engine
            .read()
            .subscribe_journal(1, GlobalFilter::default(), asked);
        let kinds = [
            "breaker_set",
            "breaker_opened",
            "breaker_half_opened",
            "breaker_closed",
        ];
        let mut breakers = engine.read().subscribe_journal(
            1,
            GlobalFilter {
                types: Some(kinds.iter().map(|k| (*k).to_owned()).collect()),
                // Selects among executions' events only.
                workflow: Some("call".into()),
            },
            asked,
        );

        // Set, opened by one failure, half-open for the probe after the
        // cool-down, closed by its success.
        let settings: BreakerSettings =
            serde_json::from_value(json!({"failures": 1, "windowMs": 60_000, "coolDownMs": 1_000}))
                .unwrap();
        engine
            .set_breaker("flaky", settings, None, None)
            .await
            .unwrap();
        let agent = engine
            .agents()
            .register("a", &["flaky".to_owned()], Some(10))
            .unwrap();
        let start = || {
            engine.start(StartRequest {
                workflow: "call".into(),
                input: json!({}),
                ..StartRequest::default()
            })
        };
        start().await.unwrap();
        let task = claim(&engine, &agent).await;
        engine
            .fail_task(&task.id, ErrorInfo::new("boom", "down"))
            .await
            .unwrap();
        // The opening is recorded by the breakers' log, after the failure:
        // wait for it on the stream.
        let mut changes = Vec::new();
        for _ in 0..2 {
            changes.push(breakers.next().await.unwrap().unwrap());
        }
        clock.advance(1_000);
        start().await.unwrap();
        let probe = claim(&engine, &agent).await;
        engine.complete_task(&probe.id, json!({})).await.unwrap();
        for _ in 0..2 {
            changes.push(breakers.next().await.unwrap().unwrap());
        }
        let changes: Vec<_> = changes
            .into_iter()
            .map(|c| match c {
                JournalEvent::Breaker(b) => b,
                other => panic!("not a breaker's change: {other:?}"),
            })
            .collect();
        assert_eq!(
            changes.iter().map(|c| c.event.kind()).collect::<Vec<_>>(),
            kinds
        );
        assert!(changes.iter().all(|c| c.event.capability() == "flaky"));
        assert_eq!(
            changes.iter().map(|c| c.state()).collect::<Vec<_>>(),
            [
                None,
                Some(BreakerState::Open {
                    since_ms: changes[1].at_ms
                }),
                Some(BreakerState::HalfOpen),
                Some(BreakerState::Closed),
            ]
        );
        let last = changes[3].position;

        // The unfiltered stream: exactly the journal's executions' and
        // breakers' records up to there, in its order.
        let records = engine
            .read()
            .store()
            .journal()
            .read_global(1, 1_000)
            .await
            .unwrap();
        let expected: Vec<(u64, String)> = records
            .iter()
            .filter(|r| r.position <= last)
            .filter(|r| execution_of(r.stream).is_some() || r.stream == BREAKERS)
            .map(|r| (r.position, r.kind.clone()))
            .collect();
        let mut got = Vec::new();
        while got
            .last()
            .is_none_or(|e: &JournalEvent| e.position() < last)
        {
            got.push(all.next().await.unwrap().unwrap());
        }
        let kind = |e: &JournalEvent| match e {
            JournalEvent::Execution(e) => e.event.event.kind().to_owned(),
            JournalEvent::Breaker(b) => b.event.kind().to_owned(),
        };
        assert_eq!(
            got.iter()
                .map(|e| (e.position(), kind(e)))
                .collect::<Vec<_>>(),
            expected
        );
        let shown: Vec<_> = got
            .iter()
            .filter_map(|e| match e {
                JournalEvent::Breaker(b) => Some(b.clone()),
                JournalEvent::Execution(_) => None,
            })
            .collect();
        assert_eq!(shown, changes);

        // Not asked for: the executions' events alone, as before.
        let mut executions = engine.read().subscribe_all(1, GlobalFilter::default());
        for event in got.iter().filter_map(|e| match e {
            JournalEvent::Execution(e) => Some(&**e),
            JournalEvent::Breaker(_) => None,
        }) {
            assert_eq!(&executions.next().await.unwrap().unwrap(), event);
        }
        // Resumed after the opening: the breaker's changes after it.
        let mut resumed = engine.read().subscribe_journal(
            changes[1].position + 1,
            GlobalFilter {
                types: Some(kinds.iter().map(|k| (*k).to_owned()).collect()),
                workflow: None,
            },
            asked,
        );
        for change in &changes[2..] {
            assert_eq!(
                resumed.next().await.unwrap().unwrap(),
                JournalEvent::Breaker(change.clone())
            );
        }
        engine.shutdown().await.unwrap();
    }
}
