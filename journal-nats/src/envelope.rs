//! The envelope: one append as one JetStream message. All of an append's
//! events commit together or not at all because they are one message.
//!
//! ```text
//! [0]     ENVELOPE_VERSION
//! [1..]   bincode 2 (fixed-width little-endian): prev_position u64 |
//!         records (u64 count, then each: u64 len + a record value in
//!         FORMAT_PLACED_BY_STORE)
//! ```
//!
//! `prev_position` is the position of the stream's event before the first
//! one here (0 for a stream's first append); the records' own positions are
//! the message's sequence and their index in it ([`crate::names`]).
//!
//! Owns the message bytes and the checks a reader makes of them. It must
//! never talk to NATS.

use bincode::{Decode, Encode};
use retrace_journal::record::{self, HASH_LEN, Placed};
use retrace_journal::{Error, EventRecord, NewEvent, Result, StreamId};

use crate::heads::Head;
use crate::names::position;

const ENVELOPE_VERSION: u8 = 1;

#[derive(Encode)]
struct WireRef<'a> {
    prev_position: u64,
    records: &'a [Vec<u8>],
}

#[derive(Decode)]
struct Wire {
    prev_position: u64,
    records: Vec<Vec<u8>>,
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard()
        .with_little_endian()
        .with_fixed_int_encoding()
        .with_limit::<{ 64 * 1024 * 1024 }>()
}

/// The message of an append of `events` after `head` of `stream`, and the
/// hash of its last record.
pub(crate) fn encode(
    stream: StreamId,
    head: &Head,
    events: &[NewEvent],
) -> Result<(Vec<u8>, [u8; HASH_LEN])> {
    let mut prev_hash = head.last_hash;
    let mut records = Vec::with_capacity(events.len());
    for (i, event) in events.iter().enumerate() {
        let (value, hash) =
            record::encode_unplaced(stream, head.last_seq + 1 + i as u64, event, &prev_hash)?;
        records.push(value);
        prev_hash = hash;
    }
    let mut out = vec![ENVELOPE_VERSION];
    bincode::encode_into_std_write(
        &WireRef {
            prev_position: head.last_position,
            records: &records,
        },
        &mut out,
        config(),
    )
    .map_err(|e| Error::InvalidAppend(format!("cannot encode the append: {e}")))?;
    Ok((out, prev_hash))
}

/// What a reader knows before it decodes a message.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Check {
    /// Reading one stream from its start: the message must continue it.
    Continues { stream: StreamId, after: Head },
    /// Reading the whole journal: the message stands alone, unchained.
    Alone,
}

#[cfg(test)]
impl Check {
    /// The first message of a stream's history.
    pub fn first_of(stream: StreamId) -> Check {
        Check::Continues {
            stream,
            after: Head::EMPTY,
        }
    }
}

/// The records of the message at `sequence`, checked as `check` says.
pub(crate) fn decode(sequence: u64, payload: &[u8], check: Check) -> Result<Vec<EventRecord>> {
    let (stream, next_seq) = match check {
        Check::Continues { stream, after } => (stream, after.last_seq + 1),
        Check::Alone => (StreamId::NIL, 0),
    };
    let corrupt = |reason: String| Error::corrupt(stream, next_seq, reason);
    match payload.first() {
        Some(&ENVELOPE_VERSION) => {}
        other => {
            return Err(corrupt(format!(
                "message {sequence} is not a retrace append (envelope version {other:?})"
            )));
        }
    }
    let (wire, used): (Wire, usize) = bincode::decode_from_slice(&payload[1..], config())
        .map_err(|e| corrupt(format!("message {sequence} does not decode: {e}")))?;
    if used != payload.len() - 1 || wire.records.is_empty() {
        return Err(corrupt(format!("message {sequence} is malformed")));
    }
    let mut out = Vec::with_capacity(wire.records.len());
    let mut prev_position = wire.prev_position;
    match check {
        Check::Continues { after, .. } => {
            if wire.prev_position != after.last_position {
                return Err(corrupt(format!(
                    "message {sequence} follows position {}, but the stream's last event is at {}",
                    wire.prev_position, after.last_position
                )));
            }
            let mut prev_hash = after.last_hash;
            for (i, value) in wire.records.iter().enumerate() {
                let at = position(sequence, i);
                let placed = Placed {
                    position: at,
                    prev_position,
                    expect: Some((stream, next_seq + i as u64)),
                };
                let record = record::decode_unplaced(placed, value, Some(&prev_hash))?;
                prev_hash = record.hash;
                prev_position = at;
                out.push(record);
            }
        }
        Check::Alone => {
            for (i, value) in wire.records.iter().enumerate() {
                let at = position(sequence, i);
                let placed = Placed {
                    position: at,
                    prev_position,
                    expect: None,
                };
                let record = record::decode_unplaced(placed, value, None)?;
                if let Some(first) = out.first().map(|r: &EventRecord| (r.stream, r.seq))
                    && (record.stream, record.seq) != (first.0, first.1 + i as u64)
                {
                    return Err(corrupt(format!(
                        "message {sequence} mixes streams or skips seqs"
                    )));
                }
                prev_position = at;
                out.push(record);
            }
        }
    }
    Ok(out)
}

/// The position a message says its stream's previous event is at, read
/// without decoding the rest (to see whether a tail missed a message).
pub(crate) fn prev_position(payload: &[u8]) -> Option<u64> {
    if payload.first() != Some(&ENVELOPE_VERSION) {
        return None;
    }
    Some(u64::from_le_bytes(payload.get(1..9)?.try_into().ok()?))
}

/// The head a stream has after the records of one of its messages.
pub(crate) fn head_after(records: &[EventRecord]) -> Option<Head> {
    records.last().map(|r| Head {
        last_seq: r.seq,
        last_position: r.position,
        last_hash: r.hash,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(n: u64) -> Vec<NewEvent> {
        (0..n)
            .map(|i| NewEvent::new("k", 1000 + i, format!("e{i}").into_bytes()))
            .collect()
    }

    #[test]
    fn an_append_decodes_as_its_stream_continued_and_alone() {
        let s = StreamId::from_bytes([3; 16]);
        let (first, h1) = encode(s, &Head::EMPTY, &events(2)).unwrap();
        let records = decode(7, &first, Check::first_of(s)).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(
            (
                records[0].seq,
                records[0].position,
                records[0].prev_position
            ),
            (1, position(7, 0), 0)
        );
        assert_eq!(
            (records[1].seq, records[1].prev_position),
            (2, position(7, 0))
        );
        assert_eq!(records[1].hash, h1);
        let after = head_after(&records).unwrap();
        let (second, _) = encode(s, &after, &events(1)).unwrap();
        let next = decode(9, &second, Check::Continues { stream: s, after }).unwrap();
        assert_eq!((next[0].seq, next[0].prev_position), (3, position(7, 1)));
        assert!(next[0].chains_to(&h1));
        assert_eq!(prev_position(&second), Some(position(7, 1)));
        assert_eq!(prev_position(&first), Some(0));
        assert_eq!(decode(9, &second, Check::Alone).unwrap(), next);
        // Out of place: read as the stream's first message, or by another stream.
        assert!(decode(9, &second, Check::first_of(s)).is_err());
        let other = StreamId::from_bytes([4; 16]);
        assert!(decode(7, &first, Check::first_of(other)).is_err());
        // Damaged anywhere: refused.
        for i in 0..first.len() {
            let mut bad = first.clone();
            bad[i] ^= 0x20;
            assert!(decode(7, &bad, Check::first_of(s)).is_err(), "flip at {i}");
        }
    }
}
