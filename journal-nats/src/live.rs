//! The live feed: every append the server has stored, as it stores it, to
//! every subscription of this process through one core NATS subscription.
//!
//! The stream republishes each message it stores (JetStream's `republish`,
//! after the store, with its sequence in `Nats-Sequence`) from
//! `<prefix>.ev.>` to `<prefix>.stored.>`; one task here receives them and
//! hands each to every tail. Core NATS may drop messages (a slow consumer,
//! a reconnect), so the feed is a hint, never the record: a tail that sees
//! a gap, falls behind, or is told to [`Live::Resync`] (after a reconnect or
//! a slow-consumer warning) reads what it missed from the stream.
//!
//! Owns the subscription and the task. It must never be trusted to be
//! complete: tails check every message's place.

use std::sync::Arc;

use async_nats::Event;
use futures::StreamExt;
use retrace_journal::{Result, StreamId};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

use crate::direct::{Stored, remote};
use crate::names::Names;

/// Messages a tail may fall behind the feed by before it reads from the
/// stream instead.
const FEED_CAPACITY: usize = 4096;

/// What the feed hands every tail.
#[derive(Debug, Clone)]
pub(crate) enum Live {
    /// A message the server stored, and whose stream it is on.
    Stored(Arc<(Stored, Option<StreamId>)>),
    /// Messages may have been lost: read from the stream.
    Resync,
}

/// Subscribes to the republished subject and starts the task that feeds
/// tails; returns the feed and the task (abort it to close the feed).
pub(crate) async fn start(
    client: &async_nats::Client,
    names: &Names,
    mut events: mpsc::UnboundedReceiver<Event>,
) -> Result<(broadcast::Sender<Live>, JoinHandle<()>)> {
    let action = "cannot follow the journal on NATS";
    let mut stored = client
        .subscribe(names.stored_events())
        .await
        .map_err(|e| remote(action, e))?;
    // The subscription is in place at the server before any tail starts.
    client.flush().await.map_err(|e| remote(action, e))?;
    let (feed, _) = broadcast::channel(FEED_CAPACITY);
    let sender = feed.clone();
    let names = names.clone();
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                message = stored.next() => {
                    let Some(message) = message else { break };
                    let Some(stored) = Stored::of(message) else {
                        // Not a republished message: tails read the stream.
                        let _ = sender.send(Live::Resync);
                        continue;
                    };
                    let stream = names.stream_of(&stored.subject);
                    let _ = sender.send(Live::Stored(Arc::new((stored, stream))));
                }
                event = events.recv() => match event {
                    Some(Event::Connected | Event::SlowConsumer(_)) => {
                        let _ = sender.send(Live::Resync);
                    }
                    Some(_) => {}
                    None => break,
                },
            }
        }
    });
    Ok((feed, task))
}
