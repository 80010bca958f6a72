//! The append pipeline: one task takes append requests in call order,
//! publishes each as one message conditional on its stream's last message,
//! and answers each when the server acknowledges it.
//!
//! Publishes are pipelined (many acknowledgements in flight, which is how
//! JetStream group-commits), except that an append to a stream with an
//! append still in flight waits for it: the next one is built on the head
//! that one ends in. While it waits, later requests wait behind it, so
//! messages reach the server in call order and positions follow the calls.
//!
//! Owns the in-flight appends and the only code that publishes events. It
//! must never answer an append before the server acknowledged it, nor
//! publish one that was not checked against its stream's head.

use std::collections::HashSet;
use std::sync::Arc;

use std::time::Duration;

use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use retrace_journal::record::{self, MAX_EVENTS_PER_APPEND};
use retrace_journal::{Appended, Error, NewEvent, Result, StorageError, StreamId};

/// The header that points the expected-last-sequence check at another
/// subject (NATS 2.12): the partition's fence.
const EXPECTED_SUBJECT: &str = "Nats-Expected-Last-Subject-Sequence-Subject";
use tokio::sync::{mpsc, oneshot};

use crate::direct::remote;
use crate::heads::{Head, Heads};
use crate::lease::Fences;
use crate::names::position;
use crate::reader::Reader;

/// One append, as asked.
pub(crate) struct Request {
    pub stream: StreamId,
    pub expected_seq: u64,
    pub events: Vec<NewEvent>,
    pub reply: oneshot::Sender<Result<Appended>>,
}

/// An acknowledged (or refused) append, for the task to book.
struct Done {
    stream: StreamId,
    outcome: Result<Appended>,
    head: Option<Head>,
    reply: oneshot::Sender<Result<Appended>>,
}

pub(crate) struct Writer {
    pub js: async_nats::jetstream::Context,
    pub reader: Reader,
    pub heads: Arc<Heads>,
    /// The largest message the server takes.
    pub max_payload: usize,
    /// The partitions held, when appends are fenced (see `lease`).
    pub fences: Option<Arc<Fences>>,
    /// Whether the stream is replicated (a cluster): its leader refuses a
    /// conditional append while another on the same checked subject is
    /// still being agreed on, so fenced appends go one partition at a time.
    pub replicated: bool,
}

/// What appends wait for each other on: one in flight per lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Lane {
    /// Each append is checked against its stream's last message.
    Stream(StreamId),
    /// Each append is checked against its partition's fence, on a cluster.
    Partition(u32),
}

impl Writer {
    fn lane(&self, stream: StreamId) -> Lane {
        if self.replicated && self.fences.is_some() {
            Lane::Partition(self.reader.names.partition(stream))
        } else {
            Lane::Stream(stream)
        }
    }

    /// Runs until every sender of `requests` is gone and every append in
    /// flight is answered.
    pub async fn run(self, mut requests: mpsc::UnboundedReceiver<Request>) {
        let mut in_flight: FuturesUnordered<BoxFuture<'static, Done>> = FuturesUnordered::new();
        let mut busy: HashSet<Lane> = HashSet::new();
        let mut held: Option<Request> = None;
        let mut open = true;
        loop {
            if let Some(request) = held.take() {
                if !busy.contains(&self.lane(request.stream)) {
                    if let Some(flight) = self.start(request).await {
                        busy.insert(self.lane(flight.0));
                        in_flight.push(flight.1);
                    }
                    continue;
                }
                held = Some(request);
            }
            tokio::select! {
                biased;
                Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                    busy.remove(&self.lane(done.stream));
                    self.book(done);
                }
                request = requests.recv(), if open && held.is_none() => match request {
                    Some(request) => held = Some(request),
                    None => open = false,
                },
                else => break,
            }
        }
    }

    /// Checks and publishes one append; answers it at once if it is refused
    /// before publishing. Returns its acknowledgement to wait for.
    async fn start(&self, request: Request) -> Option<(StreamId, BoxFuture<'static, Done>)> {
        let Request {
            stream,
            expected_seq,
            events,
            reply,
        } = request;
        match self.prepare(stream, expected_seq, &events).await {
            Err(e) => {
                let _ = reply.send(Err(e));
                None
            }
            Ok((head, message, last_hash, fence)) => {
                let n = events.len();
                let publish = PublishMessage::build().payload(Bytes::from(message));
                let fenced = fence.is_some();
                // Fenced: the partition's fence must still be ours (which
                // makes this server the stream's only writer). Otherwise:
                // the stream's last message must be the head built on.
                let publish = match fence {
                    Some((fence, subject)) => publish
                        .expected_last_subject_sequence(fence)
                        .header(EXPECTED_SUBJECT, subject.as_str()),
                    None => publish.expected_last_subject_sequence(head.last_message()),
                };

                let subject = self.reader.names.subject(stream);
                let sent = self.js.send_publish(subject.clone(), publish.clone()).await;
                let reader = self.reader.clone();
                let js = self.js.clone();
                let ack = async move {
                    let mut sent = sent;
                    let mut tries = 0u32;
                    let acked = loop {
                        let acked = match sent {
                            Ok(ack) => ack.await,
                            Err(e) => Err(e),
                        };
                        match acked {
                            // A cluster's leader decided nothing (see
                            // `undecided`): the same message again.
                            Err(e) if undecided(&e) && tries < UNDECIDED_TRIES => {
                                tries += 1;
                                tokio::time::sleep(UNDECIDED_PAUSE * tries.min(20)).await;
                                sent = js.send_publish(subject.clone(), publish.clone()).await;
                            }
                            acked => break acked,
                        }
                    };
                    let (outcome, head) = match acked {
                        Ok(ack) => {
                            let appended = Appended {
                                stream,
                                first_seq: head.last_seq + 1,
                                last_seq: head.last_seq + n as u64,
                                first_position: position(ack.sequence, 0),
                                last_position: position(ack.sequence, n - 1),
                            };
                            let after = Head {
                                last_seq: appended.last_seq,
                                last_position: appended.last_position,
                                last_hash,
                            };
                            (Ok(appended), Some(after))
                        }
                        Err(e) if fenced && refused_on_sequence(&e) => {
                            let lost = unavailable(format!(
                                "the append to stream {stream} is refused: another retrace server took its partition"
                            ));
                            (Err(lost), None)
                        }
                        Err(e) if refused_on_sequence(&e) => {
                            // Another writer moved the stream on: say where to.
                            let actual = match reader.fetch_head(stream).await {
                                Ok(h) => h.map_or(1, |h| h.last_seq + 1),
                                Err(e) => return Done::failed(stream, e, reply),
                            };
                            let conflict = Error::SeqConflict {
                                stream,
                                expected: expected_seq,
                                actual,
                            };
                            (Err(conflict), None)
                        }
                        // Not stored, or not known to be (no acknowledgement):
                        // the caller may try again; the head is read again.
                        Err(e) => (
                            Err(Error::Unavailable(Arc::new(remote(
                                "cannot append to NATS",
                                e,
                            )))),
                            None,
                        ),
                    };
                    Done {
                        stream,
                        outcome,
                        head,
                        reply,
                    }
                };
                Some((stream, Box::pin(ack)))
            }
        }
    }

    /// The head an append builds on, its message, and its last hash; or why
    /// it is refused without publishing.
    async fn prepare(
        &self,
        stream: StreamId,
        expected_seq: u64,
        events: &[NewEvent],
    ) -> Result<(Head, Vec<u8>, [u8; 32], Option<(u64, String)>)> {
        if events.is_empty() {
            return Err(Error::InvalidAppend(
                "an append needs at least one event".into(),
            ));
        }
        if events.len() > MAX_EVENTS_PER_APPEND {
            return Err(Error::InvalidAppend(format!(
                "an append holds at most {MAX_EVENTS_PER_APPEND} events, got {}",
                events.len()
            )));
        }
        for event in events {
            record::validate(event)?;
        }
        let fence = match &self.fences {
            None => None,
            Some(fences) => {
                let partition = self.reader.names.partition(stream);
                let fence = fences.fence(partition).ok_or_else(|| {
                    unavailable(format!(
                        "this server does not hold partition {partition} (of stream {stream}); another retrace server does"
                    ))
                })?;
                Some((fence, self.reader.names.fence(partition)))
            }
        };
        let head = match self.heads.get(stream) {
            Some(head) => head,
            // A stream the caller takes for new needs no lookup. Unfenced,
            // if it is not new the server refuses the append (its subject is
            // not empty). Fenced, the server checks the fence instead; but
            // the stream ids were listed after this server fenced its
            // partitions, and it alone has written to them since, so a
            // stream it does not know has no events.
            None if expected_seq == 1 && (fence.is_none() || !self.heads.knows(stream)) => {
                Head::EMPTY
            }
            None => self.reader.fetch_head(stream).await?.unwrap_or(Head::EMPTY),
        };
        if expected_seq != head.last_seq + 1 {
            return Err(Error::SeqConflict {
                stream,
                expected: expected_seq,
                actual: head.last_seq + 1,
            });
        }
        let (message, last_hash) = crate::envelope::encode(stream, &head, events)?;
        if message.len() > self.max_payload {
            return Err(Error::InvalidAppend(format!(
                "the append takes {} bytes; the NATS server takes messages of at most {} bytes (its max_payload)",
                message.len(),
                self.max_payload
            )));
        }
        Ok((head, message, last_hash, fence))
    }

    fn book(&self, done: Done) {
        match done.head {
            Some(head) => self.heads.learn(done.stream, head),
            // Refused or unknown: what the server holds is to be read again.
            None => self.heads.forget(done.stream),
        }
        let _ = done.reply.send(done.outcome);
    }
}

/// Appends are refused here until this changes (the partition is held
/// again, NATS answers again).
fn unavailable(why: String) -> Error {
    Error::Unavailable(Arc::new(Error::Storage(StorageError::Other(why))))
}

/// How often a publish a cluster's leader left undecided is sent again,
/// and the pause before each (growing with the tries, to 20 times it).
const UNDECIDED_TRIES: u32 = 200;
const UNDECIDED_PAUSE: Duration = Duration::from_millis(1);

/// Whether NATS refused a publish because its expected last sequence is
/// not what the checked subject holds (10071): someone else wrote there.
fn refused_on_sequence(e: &PublishError) -> bool {
    e.kind() == PublishErrorKind::WrongLastSequence
}

/// Whether a cluster's leader refused a publish without comparing (the
/// constant error 10164): another conditional write on the checked subject
/// is still marked in flight, often the previous append of the same lane,
/// already acknowledged, whose mark the leader clears only after its
/// acknowledgement. It decides nothing and stored nothing: send it again.
fn undecided(e: &PublishError) -> bool {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<async_nats::jetstream::Error>())
        .is_some_and(|e| {
            e.error_code() == async_nats::jetstream::ErrorCode::STREAM_WRONG_LAST_SEQUENCE_CONSTANT
        })
}

impl Done {
    fn failed(stream: StreamId, e: Error, reply: oneshot::Sender<Result<Appended>>) -> Done {
        Done {
            stream,
            outcome: Err(e),
            head: None,
            reply,
        }
    }
}
