//! The reader: what every read of the journal needs (the connection, the
//! stream, the names, the head cache) and the reads themselves, shared by
//! the journal, the writer (heads it must look up) and the tails.
//!
//! Owns reading one stream (from its first message, chain-checked), the
//! whole journal (in position order), a stream's head and the last
//! position. It must never write.
//!
//! On a replicated stream, direct gets are answered by any replica, and a
//! follower may be behind (one that restarted serves them once 90 %
//! caught up). So there a stream's head is asked of the stream's leader,
//! and a read of a stream that ends short of the head known for it is
//! made again until a replica answers up to it: a read never returns less
//! than what was acknowledged.

use std::sync::Arc;

use async_nats::jetstream::stream;
use retrace_journal::{Error, EventRecord, Result, StorageError, StreamId};

use crate::direct::{self, remote};
use crate::envelope::{self, Check};
use crate::heads::{Head, Heads};
use crate::lease::Fences;
use crate::names::{Names, sequence_of};

/// Messages one read asks the server for at a time.
pub(crate) const READ_BATCH: usize = 512;

/// What reading needs: shared by the journal, the writer and the tails.
#[derive(Debug, Clone)]
pub(crate) struct Reader {
    pub client: async_nats::Client,
    pub stream: stream::Stream,
    pub names: Names,
    pub heads: Arc<Heads>,
    /// Whether the stream has several replicas (some may be behind).
    pub replicated: bool,
    /// Sharing the journal: the partitions held. Only their streams' cached
    /// heads are trusted (this server is their only writer); other servers
    /// move the others on.
    pub shared: Option<Arc<Fences>>,
}

/// How often a read that a replica behind answered is made again, and the
/// pause before each.
const BEHIND_TRIES: u32 = 100;
const BEHIND_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

pub(crate) fn other(action: &str, reason: impl std::fmt::Display) -> Error {
    Error::Storage(StorageError::Other(format!("{action}: {reason}")))
}

impl Reader {
    /// The head cached for `id`, if it can be trusted to be the latest.
    fn cached(&self, id: StreamId) -> Option<Head> {
        match &self.shared {
            Some(fences) if fences.fence(self.names.partition(id)).is_none() => None,
            _ => self.heads.get(id),
        }
    }

    /// The head of `stream` as the server holds it now, remembered (on a
    /// replicated stream, as its leader holds it).
    pub async fn fetch_head(&self, id: StreamId) -> Result<Option<Head>> {
        let subject = self.names.subject(id);
        let last = if self.replicated {
            match self.stream.get_last_raw_message_by_subject(&subject).await {
                Ok(message) => message,
                Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => {
                    return Ok(None);
                }
                Err(e) => return Err(remote("cannot read a stream's head from NATS", e)),
            }
        } else {
            match self.stream.direct_get_last_for_subject(subject).await {
                Ok(message) => message,
                Err(e) if e.kind() == stream::DirectGetErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(remote("cannot read a stream's head from NATS", e)),
            }
        };
        let records = envelope::decode(last.sequence, &last.payload, Check::Alone)?;
        if records.first().map(|r| r.stream) != Some(id) {
            return Err(Error::corrupt(
                id,
                0,
                format!(
                    "message {} on the stream's subject holds another stream",
                    last.sequence
                ),
            ));
        }
        let head = envelope::head_after(&records);
        if let Some(head) = head {
            self.heads.learn(id, head);
        }
        Ok(head)
    }

    /// Events of one stream with `seq >= from_seq`, read from its first
    /// message so each is checked against the chain.
    pub async fn read(
        &self,
        id: StreamId,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<EventRecord>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        if !self.replicated {
            return self
                .read_once(id, from_seq, limit)
                .await
                .map(|(out, _)| out);
        }
        // What the read must reach: the head known, else the leader's.
        let known = match self.cached(id) {
            Some(head) => Some(head),
            None => self.fetch_head(id).await?,
        };
        let mut tries = 0;
        loop {
            let (out, reached) = self.read_once(id, from_seq, limit).await?;
            let behind = known.is_some_and(|k| reached.is_some_and(|r| r < k.last_seq));
            if !behind {
                return Ok(out);
            }
            tries += 1;
            if tries >= BEHIND_TRIES {
                return Err(Error::Unavailable(Arc::new(other(
                    "reading a stream from NATS",
                    format!(
                        "the replicas answering stay behind its acknowledged head ({})",
                        known.map_or(0, |k| k.last_seq)
                    ),
                ))));
            }
            tokio::time::sleep(BEHIND_PAUSE).await;
        }
    }

    /// One read; with the last seq it reached when it read to the end
    /// (`None` when it stopped at `limit`).
    async fn read_once(
        &self,
        id: StreamId,
        from_seq: u64,
        limit: usize,
    ) -> Result<(Vec<EventRecord>, Option<u64>)> {
        let mut out = Vec::new();
        if let Some(head) = self.cached(id)
            && from_seq > head.last_seq
        {
            return Ok((out, None));
        }
        let subject = self.names.subject(id);
        let mut head = Head::EMPTY;
        // After a snapshot, start at the message holding its seq (see
        // `anchored`); otherwise at the stream's first message.
        let mut anchor = self.heads.mark_before(id, from_seq).map(|(_, m)| m);
        let mut from = anchor.unwrap_or(1);
        'pages: loop {
            let page =
                direct::read_batch(&self.client, &self.names.events, from, &subject, READ_BATCH)
                    .await?;
            if anchor.is_some() && page.messages.is_empty() {
                // The message the snapshot named is gone: from the start.
                (anchor, head, from) = (None, Head::EMPTY, 1);
                continue;
            }
            for message in &page.messages {
                let records = match anchor.take() {
                    Some(expected) if expected == message.sequence => anchored(id, message)?,
                    // The message the snapshot named is gone: from the start.
                    Some(_) => {
                        (head, from) = (Head::EMPTY, 1);
                        out.clear();
                        continue 'pages;
                    }
                    None => {
                        let check = Check::Continues {
                            stream: id,
                            after: head,
                        };
                        envelope::decode(message.sequence, &message.payload, check)?
                    }
                };
                head = envelope::head_after(&records).unwrap_or(head);
                for record in records {
                    if record.seq >= from_seq && out.len() < limit {
                        out.push(record);
                    }
                }
                from = message.sequence + 1;
            }
            if out.len() >= limit || !page.more || page.messages.is_empty() {
                break;
            }
        }
        if out.len() < limit {
            // Read to the end: this is the head (of the replica that
            // answered; the cache only ever moves forward).
            self.heads.learn(id, head);
            return Ok((out, Some(head.last_seq)));
        }
        Ok((out, None))
    }

    pub async fn read_global(&self, from_position: u64, limit: usize) -> Result<Vec<EventRecord>> {
        let mut out = Vec::new();
        let all = self.names.all_events();
        let mut from = sequence_of(from_position).max(1);
        while out.len() < limit {
            let page = direct::read_batch(&self.client, &self.names.events, from, &all, READ_BATCH)
                .await?;
            for message in &page.messages {
                let records = envelope::decode(message.sequence, &message.payload, Check::Alone)?;
                if self.names.stream_of(&message.subject) != records.first().map(|r| r.stream) {
                    return Err(other(
                        "reading the journal",
                        format!(
                            "message {} is on another stream's subject",
                            message.sequence
                        ),
                    ));
                }
                for record in records {
                    if record.position >= from_position && out.len() < limit {
                        out.push(record);
                    }
                }
                from = message.sequence + 1;
            }
            if !page.more || page.messages.is_empty() {
                break;
            }
        }
        Ok(out)
    }

    pub async fn head(&self, id: StreamId) -> Result<Option<Head>> {
        match self.cached(id) {
            Some(head) => Ok(Some(head)),
            None => self.fetch_head(id).await,
        }
    }

    pub async fn last_position(&self) -> Result<u64> {
        // The last event message (the stream also holds fences).
        let last = match self
            .stream
            .direct_get_last_for_subject(self.names.all_events())
            .await
        {
            Ok(message) => message,
            Err(e) if e.kind() == stream::DirectGetErrorKind::NotFound => return Ok(0),
            Err(e) => {
                return Err(remote(
                    "cannot read the journal's last message from NATS",
                    e,
                ));
            }
        };
        let records = envelope::decode(last.sequence, &last.payload, Check::Alone)?;
        Ok(records.last().map_or(0, |r| r.position))
    }
}

/// The records of the message a snapshot named, read as the start of a
/// stream's history: its first record is the anchor (its stored hash, as a
/// read from the middle of a sled stream takes its predecessor's), and each
/// after it must chain to the one before; the message must be the stream's.
fn anchored(id: StreamId, message: &direct::Stored) -> Result<Vec<EventRecord>> {
    let records = envelope::decode(message.sequence, &message.payload, Check::Alone)?;
    if records.first().map(|r| r.stream) != Some(id) {
        return Err(Error::corrupt(
            id,
            0,
            format!(
                "the message its snapshot names ({}) holds another stream",
                message.sequence
            ),
        ));
    }
    for pair in records.windows(2) {
        if !pair[1].chains_to(&pair[0].hash) {
            return Err(Error::corrupt(
                id,
                pair[1].seq,
                "hash does not match the chain (record altered or out of place)",
            ));
        }
    }
    Ok(records)
}
