//! The inbox: messages between the servers sharing a journal, each for
//! the holder of one partition (a child to start there, a child's end to
//! report to its parent, a cancellation).
//!
//! A work-queue stream, `<PREFIX>_INBOX`, with a subject per partition
//! (`<prefix>.in.<partition>`). Sending publishes to the partition of the
//! stream the message is for, and is acknowledged once NATS stored it. The
//! holder of a partition consumes its subject through a durable consumer
//! of its own (`in-<partition>`), hands each message to its engine and
//! acknowledges it (which deletes it) only once the engine is done with it;
//! a message the engine wants later, or whose holder dies or loses the
//! partition meanwhile, arrives again (after `RETRY`, or once the
//! consumer's `ACK_WAIT` runs out), at whoever holds the partition then.
//! So every message is handled at least once, and its handler must make a
//! second time change nothing.
//!
//! Owns the inbox stream and its consumers. It must never acknowledge a
//! message its engine has not said it is done with, nor consume a
//! partition this server does not hold.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer, stream};
use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;
use retrace_journal::{Delivery, Error, Result, StreamId};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::direct::remote;
use crate::names::Names;

/// How long a message handed out may go unanswered before NATS hands it
/// out again (its holder may have died with it).
const ACK_WAIT: Duration = Duration::from_secs(5);

/// How soon a message the engine could not handle now arrives again.
const RETRY: Duration = Duration::from_millis(500);

/// How soon a consumer that failed (NATS away) is tried again.
const AGAIN: Duration = Duration::from_secs(1);

/// Opens (or makes) the inbox stream.
pub(crate) async fn open(
    js: &jetstream::Context,
    names: &Names,
    replicas: usize,
) -> Result<stream::Stream> {
    js.get_or_create_stream(stream::Config {
        name: names.inbox.clone(),
        subjects: vec![names.all_inboxes()],
        retention: stream::RetentionPolicy::WorkQueue,
        storage: stream::StorageType::File,
        num_replicas: replicas,
        ..Default::default()
    })
    .await
    .map_err(|e| remote(format!("cannot open stream {} on NATS", names.inbox), e))
}

/// Sends `message` to the holder of `to`'s partition; done once stored.
pub(crate) fn send(
    js: &jetstream::Context,
    names: &Names,
    to: StreamId,
    message: Vec<u8>,
) -> BoxFuture<'static, Result<()>> {
    let subject = names.inbox_subject(names.partition(to));
    let mut payload = Vec::with_capacity(16 + message.len());
    payload.extend_from_slice(to.as_bytes());
    payload.extend_from_slice(&message);
    let js = js.clone();
    Box::pin(async move {
        // Refused like an append NATS did not take: the caller keeps it
        // for when NATS is back.
        let refused = |e: Error| Error::Unavailable(std::sync::Arc::new(e));
        let action = "cannot send a message to another server through NATS";
        js.publish(subject, Bytes::from(payload))
            .await
            .map_err(|e| refused(remote(action, e)))?
            .await
            .map_err(|e| refused(remote(action, e)))?;
        Ok(())
    })
}

/// Consumes the inbox of every partition `held` names, for as long as it
/// names it, handing the messages to `deliveries`; ends when `deliveries`
/// closes or `held` does.
pub(crate) fn receive(
    stream: stream::Stream,
    names: Names,
    mut held: watch::Receiver<BTreeSet<u32>>,
    deliveries: mpsc::Sender<Delivery>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut consuming = Consumers::default();
        loop {
            let now = held.borrow_and_update().clone();
            consuming.0.retain(|partition, task| {
                let keep = now.contains(partition) && !task.is_finished();
                if !keep {
                    task.abort();
                }
                keep
            });
            for partition in now {
                consuming.0.entry(partition).or_insert_with(|| {
                    tokio::spawn(consume(
                        stream.clone(),
                        names.clone(),
                        partition,
                        deliveries.clone(),
                    ))
                });
            }
            tokio::select! {
                changed = held.changed() => if changed.is_err() { break },
                () = deliveries.closed() => break,
            }
        }
    })
}

/// The tasks consuming each partition's inbox; stopped with their owner
/// (so a journal closed, or the task receiving aborted, consumes nothing
/// more: what its engine was handed and did not answer arrives again after
/// `ACK_WAIT`, wherever the partition is then).
#[derive(Default)]
struct Consumers(HashMap<u32, JoinHandle<()>>);

impl Drop for Consumers {
    fn drop(&mut self) {
        for task in self.0.values() {
            task.abort();
        }
    }
}

/// Consumes one partition's inbox until its deliveries close (this task
/// is aborted when the partition is lost).
async fn consume(
    stream: stream::Stream,
    names: Names,
    partition: u32,
    deliveries: mpsc::Sender<Delivery>,
) {
    loop {
        match pull(&stream, &names, partition, &deliveries).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(partition, error = %e, "cannot read the partition's inbox; trying again");
                tokio::time::sleep(AGAIN).await;
            }
        }
    }
}

/// Hands out the messages of one partition's inbox, one at a time, each
/// acknowledged once handled; `Ok` when the deliveries closed.
async fn pull(
    stream: &stream::Stream,
    names: &Names,
    partition: u32,
    deliveries: &mpsc::Sender<Delivery>,
) -> std::result::Result<(), String> {
    let name = format!("in-{partition}");
    let consumer: consumer::PullConsumer = stream
        .get_or_create_consumer(
            &name,
            consumer::pull::Config {
                durable_name: Some(name.clone()),
                filter_subject: names.inbox_subject(partition),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: ACK_WAIT,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| e.to_string())?;
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(16)
        .messages()
        .await
        .map_err(|e| e.to_string())?;
    while let Some(message) = messages.next().await {
        let message = message.map_err(|e| e.to_string())?;
        let Some((to, body)) = message.payload.split_first_chunk::<16>() else {
            tracing::warn!(
                partition,
                "a message in the inbox too short to name its stream: dropped"
            );
            message
                .ack_with(AckKind::Term)
                .await
                .map_err(|e| e.to_string())?;
            continue;
        };
        let (delivery, answer) = Delivery::new(StreamId::from_bytes(*to), body.to_vec());
        if deliveries.send(delivery).await.is_err() {
            let _ = message.ack_with(AckKind::Nak(None)).await;
            return Ok(());
        }
        let handled = answer.await.unwrap_or(false);
        let ack = if handled {
            message.ack().await
        } else {
            message.ack_with(AckKind::Nak(Some(RETRY))).await
        };
        ack.map_err(|e| e.to_string())?;
    }
    Err("the consumer's messages ended".into())
}
