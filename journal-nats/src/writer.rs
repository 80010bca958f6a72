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
//! An append that got no answer is sent again, the same message with the
//! same id (which the server stores once), until the server decides it:
//! an append reported failed is one the server did not store, so nothing
//! a caller was told failed shows up later behind its back.
//!
//! Owns the in-flight appends and the only code that publishes events. It
//! must never answer an append before the server acknowledged it, never
//! report one failed that the server may still store, nor publish one that
//! was not checked against its stream's head.

use std::collections::HashSet;
use std::sync::Arc;

use std::time::Duration;

use async_nats::jetstream::context::{PublishAckFuture, PublishError, PublishErrorKind};
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
use crate::names::{position, sequence_of};
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
                // The message's id is its last event's hash: a resend of the
                // same message is recognised by the server as a duplicate
                // (within the stream's duplicate window) and stored once.
                let publish = PublishMessage::build()
                    .payload(Bytes::from(message))
                    .message_id(message_id(&last_hash));
                // Fenced: the partition's fence must still be ours (which
                // makes this server the stream's only writer). Otherwise:
                // the stream's last message must be the head built on.
                let publish = match &fence {
                    Some((fence, subject)) => publish
                        .expected_last_subject_sequence(*fence)
                        .header(EXPECTED_SUBJECT, subject.as_str()),
                    None => publish.expected_last_subject_sequence(head.last_message()),
                };
                let subject = self.reader.names.subject(stream);
                let sent = self.js.send_publish(subject.clone(), publish.clone()).await;
                let append = Sent {
                    stream,
                    expected_seq,
                    head,
                    events: events.len(),
                    last_hash,
                    subject,
                    publish,
                    fenced: fence.is_some(),
                };
                let js = self.js.clone();
                let reader = self.reader.clone();
                let ack = async move {
                    let (outcome, head) = append.settle(sent, &js, &reader).await;
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

/// Whether NATS refused a publish because its expected last sequence is
/// not what the checked subject holds (10071): someone else wrote there.
fn refused_on_sequence(e: &PublishError) -> bool {
    e.kind() == PublishErrorKind::WrongLastSequence
}

/// Whether a cluster's leader refused a publish without deciding it, so
/// that sending it again is the way on: the constant error 10164 (another
/// conditional write on the checked subject is still marked in flight,
/// often the previous append of the same lane, already acknowledged, whose
/// mark the leader clears only after its acknowledgement), or 10158 (a
/// message with the same id, an earlier send of this one, is still being
/// agreed on).
fn undecided(e: &PublishError) -> bool {
    use async_nats::jetstream::ErrorCode;
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<async_nats::jetstream::Error>())
        .is_some_and(|e| {
            e.error_code() == ErrorCode::STREAM_WRONG_LAST_SEQUENCE_CONSTANT
                || e.error_code() == ErrorCode::STREAM_DUPLICATE_MESSAGE_CONFLICT
        })
}

/// A message's id (`Nats-Msg-Id`): the first half of its last event's
/// hash, in hex. The hash covers the stream, the seq and the content, so
/// two messages share an id only if they are the same append.
fn message_id(last_hash: &[u8; 32]) -> String {
    last_hash[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// How long an append whose outcome is unknown (no acknowledgement came:
/// a timeout, a lost connection, a leader being elected) is sent again
/// before it is reported failed. Well under the stream's duplicate window
/// (NATS's default, 2 minutes), so the server still knows a resend of a
/// message it stored.
const DOUBT_PATIENCE: Duration = Duration::from_secs(60);

/// The longest pause between two sends of one message.
const RESEND_PAUSE_MAX: Duration = Duration::from_secs(1);

/// One append on its way: what is needed to send it again and to book it.
struct Sent {
    stream: StreamId,
    expected_seq: u64,
    head: Head,
    events: usize,
    last_hash: [u8; 32],
    subject: String,
    publish: PublishMessage,
    /// Whether the append carries its partition's fence.
    fenced: bool,
}

impl Sent {
    /// Waits for the server's answer, sending the same message again
    /// (same id) while the answer is unknown or undecided, so an append is
    /// reported failed only when it is known not stored (or after
    /// [`DOUBT_PATIENCE`] without any answer). Returns the outcome and,
    /// when stored, the stream's new head.
    async fn settle(
        self,
        sent: std::result::Result<PublishAckFuture, PublishError>,
        js: &async_nats::jetstream::Context,
        reader: &Reader,
    ) -> (Result<Appended>, Option<Head>) {
        let deadline = tokio::time::Instant::now() + DOUBT_PATIENCE;
        let mut sent = sent;
        let mut tries = 0u32;
        // Whether an earlier send may have been stored (it got no answer).
        let mut maybe_stored = false;
        loop {
            let acked = match sent {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            };
            let e = match acked {
                Ok(ack) => return self.stored(ack.sequence),
                Err(e) => e,
            };
            if refused_on_sequence(&e) {
                return self.refused(maybe_stored, reader).await;
            }
            // Not decided (said so, or no answer at all): send it again
            // while there is patience, even if this server let the
            // partition go meanwhile (its lease ran out while NATS did not
            // answer): until another server fences the partition, a send
            // may still be stored, and once one has, NATS refuses the next
            // send and the head says whether an earlier one was stored.
            maybe_stored |= !undecided(&e);
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(stream = %self.stream, error = %e,
                    "an append got no answer from NATS; reported failed");
                let e = Error::Unavailable(Arc::new(remote("cannot append to NATS", e)));
                return (Err(e), None);
            }
            tracing::debug!(stream = %self.stream, error = %e, "sending an append again");
            tries += 1;
            let pause = Duration::from_millis(1 << tries.min(10)).min(RESEND_PAUSE_MAX);
            tokio::time::sleep(pause).await;
            sent = js
                .send_publish(self.subject.clone(), self.publish.clone())
                .await;
        }
    }

    /// The append is stored as message `message`.
    fn stored(&self, message: u64) -> (Result<Appended>, Option<Head>) {
        let appended = Appended {
            stream: self.stream,
            first_seq: self.head.last_seq + 1,
            last_seq: self.head.last_seq + self.events as u64,
            first_position: position(message, 0),
            last_position: position(message, self.events - 1),
        };
        let after = Head {
            last_seq: appended.last_seq,
            last_position: appended.last_position,
            last_hash: self.last_hash,
        };
        (Ok(appended), Some(after))
    }

    /// The message holding this append, if an earlier send of it is
    /// stored: its last event is in the stream, with its hash.
    async fn find_stored(&self, reader: &Reader, head: Option<Head>) -> Result<Option<u64>> {
        let last_seq = self.head.last_seq + self.events as u64;
        let Some(head) = head else { return Ok(None) };
        if head.last_seq < last_seq {
            return Ok(None);
        }
        if head.last_seq == last_seq {
            return Ok((head.last_hash == self.last_hash).then(|| head.last_message()));
        }
        let records = reader.read(self.stream, last_seq, 1).await?;
        Ok(records
            .first()
            .filter(|r| r.seq == last_seq && r.hash == self.last_hash)
            .map(|r| sequence_of(r.position)))
    }

    /// The server compared the expected sequence and refused the append.
    async fn refused(
        &self,
        maybe_stored: bool,
        reader: &Reader,
    ) -> (Result<Appended>, Option<Head>) {
        // Fenced, the fence moved: another server took the partition, and
        // no send of this message is stored after its fence. Unfenced,
        // another writer moved the stream on. Either way an earlier send of
        // this very message may have been stored first (a single server
        // compares before it looks for duplicates), and others appended
        // after it since: the stream says.
        let head = if maybe_stored || !self.fenced {
            match reader.fetch_head(self.stream).await {
                Ok(head) => head,
                Err(e) => return (Err(e), None),
            }
        } else {
            None
        };
        if maybe_stored {
            match self.find_stored(reader, head).await {
                Ok(Some(message)) => return self.stored(message),
                Ok(None) => {}
                Err(e) => return (Err(e), None),
            }
        }
        if self.fenced {
            let lost = unavailable(format!(
                "the append to stream {} is refused: another retrace server took its partition",
                self.stream
            ));
            return (Err(lost), None);
        }
        let conflict = Error::SeqConflict {
            stream: self.stream,
            expected: self.expected_seq,
            actual: head.map_or(1, |h| h.last_seq + 1),
        };
        (Err(conflict), None)
    }
}
