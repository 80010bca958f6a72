//! Subscriptions: stored events, then live ones. A tail registers with the
//! live feed first, then reads what is stored from the stream (batched
//! direct gets), then takes what the feed brings, so nothing falls between
//! the two. Whenever the feed cannot be trusted to be whole (a message
//! that does not follow the last one given, falling behind, a reconnect),
//! the tail reads from the stream again from the next message it has not
//! given. No consumer is created on the server: a thousand tails cost one
//! core subscription.
//!
//! A tail of one stream reads it from its first message, so every record it
//! yields is checked against the hash chain, and skips what is before
//! `from_seq`. A tail of everything starts at the message holding
//! `from_position`. Once the journal is closed, a tail gives what was stored
//! then and ends.
//!
//! Owns each tail's place (the next message sequence, the stream's head).
//! It must never yield a record out of order, twice, or unchecked (one
//! stream) / undecoded (everything).

use retrace_journal::{EventRecord, Result, StreamId, Subscription, Tail};
use tokio::sync::broadcast;

use crate::direct::{self, Stored};
use crate::envelope::{self, Check};
use crate::heads::Head;
use crate::live::Live;
use crate::names::sequence_of;
use crate::reader::{READ_BATCH, Reader};

/// Where a tail is.
struct Place {
    from: Tail,
    /// The stream followed (a tail of one stream).
    one: Option<StreamId>,
    /// The next message sequence not yet given.
    next: u64,
    /// The followed stream's last event given (a tail of one stream).
    head: Head,
}

impl Place {
    /// The records of a message at or after `next`, as this tail gives
    /// them; moves past it.
    fn take(&mut self, message: &Stored) -> Result<Vec<EventRecord>> {
        let check = match self.one {
            Some(stream) => Check::Continues {
                stream,
                after: self.head,
            },
            None => Check::Alone,
        };
        let records = envelope::decode(message.sequence, &message.payload, check)?;
        if let Some(after) = envelope::head_after(&records) {
            self.head = after;
        }
        self.next = message.sequence + 1;
        let from = self.from;
        Ok(records
            .into_iter()
            .filter(|r| match from {
                Tail::Stream { from_seq, .. } => r.seq >= from_seq,
                Tail::All { from_position } => r.position >= from_position,
            })
            .collect())
    }

    /// Whether a live message is the very next one this tail would read
    /// from the stream (`Some(true)`), one it has given or does not follow
    /// (`None`), or comes after one it missed (`Some(false)`).
    fn follows(&self, message: &Stored, stream: Option<StreamId>) -> Option<bool> {
        if message.sequence < self.next {
            return None;
        }
        match self.one {
            // Every message of the journal's stream is an event.
            None => Some(message.sequence == self.next),
            Some(one) if stream != Some(one) => None,
            Some(_) => {
                Some(envelope::prev_position(&message.payload) == Some(self.head.last_position))
            }
        }
    }
}

pub(crate) fn subscribe(
    reader: Reader,
    from: Tail,
    feed: broadcast::Receiver<Live>,
) -> Subscription {
    let records = async_stream::try_stream! {
        let (filter, one, next) = match from {
            Tail::Stream { stream, .. } => (reader.names.subject(stream), Some(stream), 1),
            Tail::All { from_position } => {
                (reader.names.all_events(), None, sequence_of(from_position).max(1))
            }
        };
        let mut place = Place { from, one, next, head: Head::EMPTY };
        let mut feed = feed;
        let mut read_stored = true;
        let mut closed = false;
        loop {
            if read_stored {
                loop {
                    let page = direct::read_batch(
                        &reader.client,
                        &reader.names.events,
                        place.next,
                        &filter,
                        READ_BATCH,
                    )
                    .await?;
                    for message in &page.messages {
                        for record in place.take(message)? {
                            yield record;
                        }
                    }
                    if !page.more || page.messages.is_empty() {
                        break;
                    }
                }
                read_stored = false;
            }
            if closed {
                break;
            }
            match feed.recv().await {
                Ok(Live::Stored(live)) => {
                    let (message, stream) = &*live;
                    match place.follows(message, *stream) {
                        Some(true) => {
                            for record in place.take(message)? {
                                yield record;
                            }
                        }
                        Some(false) => read_stored = true,
                        None => {}
                    }
                }
                Ok(Live::Resync) | Err(broadcast::error::RecvError::Lagged(_)) => {
                    read_stored = true;
                }
                // The journal closed: what is stored now, then the end.
                Err(broadcast::error::RecvError::Closed) => {
                    read_stored = true;
                    closed = true;
                }
            }
        }
    };
    Subscription::from_stream(records)
}
