//! The event record: what one event looks like on disk, how it is hashed into
//! its stream's chain, and how it is checked when read back.
//!
//! Stored value of one record (all integers fixed-width little-endian):
//!
//! ```text
//! [0]        format version (FORMAT_VERSION)
//! [1..n-32]  bincode 2 body: stream [16] | seq u64 | position u64 |
//!            prev_position u64 | recorded_at_ms u64 | kind (u64 len + utf-8) |
//!            payload (u64 len + bytes)
//! [n-32..n]  hash = blake3(prev_hash || value[0..n-32])
//! ```
//!
//! `prev_hash` is the previous record's hash in the same stream, or 32 zero
//! bytes for `seq` 1; `prev_position` is that record's position (0 for `seq`
//! 1), the back-link that lets a stream's history be walked without a
//! per-event index.
//!
//! A store that places records itself (a networked log numbers a message
//! only when it commits it) writes format [`FORMAT_PLACED_BY_STORE`]
//! instead: the same fields less `position` and `prev_position`, hashed the
//! same way. Its position and back-link are where the store keeps it, which
//! the store checks as it reads (a record is only ever read where it was
//! committed); the chain still covers the stream, seq, time, kind and
//! payload of every event, so nothing of an event can change unnoticed.
//!
//! ```text
//! [0]        FORMAT_PLACED_BY_STORE
//! [1..n-32]  bincode 2 body: stream [16] | seq u64 | recorded_at_ms u64 |
//!            kind (u64 len + utf-8) | payload (u64 len + bytes)
//! [n-32..n]  hash = blake3(prev_hash || value[0..n-32])
//! ```
//!
//! Owns the record's bytes: encoding, chaining, decoding and checking one
//! record. It must never touch storage, and never change a byte of the
//! format without a new `FORMAT_VERSION`.

use bincode::{Decode, Encode};

use crate::error::{Error, Result};
use crate::stream::StreamId;

/// The record format this build writes and reads.
pub const FORMAT_VERSION: u8 = 1;
/// The record format of a store that places records itself: no position
/// and no back-link inside the hashed bytes (see the module doc).
pub const FORMAT_PLACED_BY_STORE: u8 = 2;
/// Length of a record hash.
pub const HASH_LEN: usize = 32;
/// The `prev_hash` of the first record of every stream.
pub const GENESIS_HASH: [u8; HASH_LEN] = [0; HASH_LEN];
/// Largest payload one event may carry.
pub const MAX_PAYLOAD_BYTES: usize = 16 * 1024 * 1024;
/// Longest event kind.
pub const MAX_KIND_BYTES: usize = 128;
/// Most events one append may carry.
pub const MAX_EVENTS_PER_APPEND: usize = 4096;
/// Decoding never allocates more than this, whatever a damaged length says.
const DECODE_LIMIT_BYTES: usize = MAX_PAYLOAD_BYTES + 4096;

/// An event the caller wants to append. The journal adds `seq`, `position`
/// and `hash`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// A short name of the event's type (e.g. `step_completed`).
    pub kind: String,
    /// When it happened, in unix milliseconds, as decided by the caller (the
    /// journal never reads a clock, so a simulated clock stays exact).
    pub recorded_at_ms: u64,
    /// Opaque bytes; the journal never looks inside.
    pub payload: Vec<u8>,
}

impl NewEvent {
    pub fn new(kind: impl Into<String>, recorded_at_ms: u64, payload: impl Into<Vec<u8>>) -> Self {
        NewEvent {
            kind: kind.into(),
            recorded_at_ms,
            payload: payload.into(),
        }
    }
}

/// One stored event, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    pub stream: StreamId,
    /// Dense per stream, from 1.
    pub seq: u64,
    /// The global commit order: strictly increasing over the whole journal
    /// (the sled journal numbers it densely from 1).
    pub position: u64,
    /// The position of this stream's previous event (0 for `seq` 1).
    pub prev_position: u64,
    pub recorded_at_ms: u64,
    pub kind: String,
    pub payload: Vec<u8>,
    /// `blake3(prev_hash || encoded record)`.
    pub hash: [u8; HASH_LEN],
    /// The record format it was written in ([`FORMAT_VERSION`] or
    /// [`FORMAT_PLACED_BY_STORE`]): which fields its hash covers.
    pub format: u8,
}

impl EventRecord {
    /// The hash as lowercase hex.
    pub fn hash_hex(&self) -> String {
        blake3::Hash::from(self.hash).to_hex().to_string()
    }

    /// Whether this record follows `prev_hash` in its stream's chain: its
    /// stored hash is `blake3(prev_hash || its encoding)`. What
    /// [`Journal::read`](crate::Journal::read) checks of every record it
    /// returns, for readers of [`Journal::read_global`](crate::Journal::read_global),
    /// which cannot (a record there comes without its predecessor). The
    /// encoding is recomputed from the fields, which the format fixes byte
    /// for byte, straight into the hasher.
    pub fn chains_to(&self, prev_hash: &[u8; HASH_LEN]) -> bool {
        let mut hasher = blake3::Hasher::new();
        hasher.update(prev_hash);
        hasher.update(&[self.format]);
        let encoded = match self.format {
            FORMAT_VERSION => self.encode_body_into(&mut hasher),
            FORMAT_PLACED_BY_STORE => bincode::encode_into_std_write(
                &UnplacedRef {
                    stream: *self.stream.as_bytes(),
                    seq: self.seq,
                    recorded_at_ms: self.recorded_at_ms,
                    kind: &self.kind,
                    payload: &self.payload,
                },
                &mut hasher,
                config(),
            )
            .is_ok(),
            _ => false,
        };
        // Writing into a hasher cannot fail, and a record that was decoded
        // is within the limit; either way a failure means "does not chain".
        encoded && *hasher.finalize().as_bytes() == self.hash
    }

    /// Writes the format-1 body of this record into `hasher`.
    fn encode_body_into(&self, hasher: &mut blake3::Hasher) -> bool {
        let body = BodyRef {
            stream: *self.stream.as_bytes(),
            seq: self.seq,
            position: self.position,
            prev_position: self.prev_position,
            recorded_at_ms: self.recorded_at_ms,
            kind: &self.kind,
            payload: &self.payload,
        };
        bincode::encode_into_std_write(&body, hasher, config()).is_ok()
    }
}

#[derive(Encode)]
struct BodyRef<'a> {
    stream: [u8; 16],
    seq: u64,
    position: u64,
    prev_position: u64,
    recorded_at_ms: u64,
    kind: &'a str,
    payload: &'a [u8],
}

#[derive(Decode)]
struct Body {
    stream: [u8; 16],
    seq: u64,
    position: u64,
    prev_position: u64,
    recorded_at_ms: u64,
    kind: String,
    payload: Vec<u8>,
}

#[derive(Encode)]
struct UnplacedRef<'a> {
    stream: [u8; 16],
    seq: u64,
    recorded_at_ms: u64,
    kind: &'a str,
    payload: &'a [u8],
}

#[derive(Decode)]
struct Unplaced {
    stream: [u8; 16],
    seq: u64,
    recorded_at_ms: u64,
    kind: String,
    payload: Vec<u8>,
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard()
        .with_little_endian()
        .with_fixed_int_encoding()
        .with_limit::<DECODE_LIMIT_BYTES>()
}

/// Checks an event before anything is written.
pub fn validate(event: &NewEvent) -> Result<()> {
    if event.kind.is_empty() || event.kind.len() > MAX_KIND_BYTES {
        return Err(Error::InvalidAppend(format!(
            "event kind must be 1 to {MAX_KIND_BYTES} bytes, got {}",
            event.kind.len()
        )));
    }
    if event.payload.len() > MAX_PAYLOAD_BYTES {
        return Err(Error::InvalidAppend(format!(
            "event payload is {} bytes; the limit is {MAX_PAYLOAD_BYTES}",
            event.payload.len()
        )));
    }
    Ok(())
}

/// Where a record goes: its stream, seq, position and back-link.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Place {
    pub stream: StreamId,
    pub seq: u64,
    pub position: u64,
    pub prev_position: u64,
}

/// Encodes one record and chains it to `prev_hash`. Returns the stored value
/// and the record's hash.
pub(crate) fn encode(
    place: Place,
    event: &NewEvent,
    prev_hash: &[u8; HASH_LEN],
) -> Result<(Vec<u8>, [u8; HASH_LEN])> {
    let body = BodyRef {
        stream: *place.stream.as_bytes(),
        seq: place.seq,
        position: place.position,
        prev_position: place.prev_position,
        recorded_at_ms: event.recorded_at_ms,
        kind: &event.kind,
        payload: &event.payload,
    };
    let mut value = Vec::with_capacity(1 + 56 + event.kind.len() + event.payload.len() + HASH_LEN);
    value.push(FORMAT_VERSION);
    bincode::encode_into_std_write(&body, &mut value, config())
        .map_err(|e| Error::InvalidAppend(format!("cannot encode event: {e}")))?;
    let hash = chain_hash(prev_hash, &value);
    value.extend_from_slice(&hash);
    Ok((value, hash))
}

/// `blake3(prev_hash || body)`.
pub(crate) fn chain_hash(prev_hash: &[u8; HASH_LEN], body: &[u8]) -> [u8; HASH_LEN] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(prev_hash);
    hasher.update(body);
    *hasher.finalize().as_bytes()
}

/// The stream and seq a record value claims, read from fixed offsets
/// without trusting anything else (to name a damaged record).
pub(crate) fn peek_place(value: &[u8]) -> Option<(StreamId, u64)> {
    let id: [u8; 16] = value.get(1..17)?.try_into().ok()?;
    let seq: [u8; 8] = value.get(17..25)?.try_into().ok()?;
    Some((StreamId::from_bytes(id), u64::from_le_bytes(seq)))
}

/// The `prev_position` a record value claims (its back-link), read from its
/// fixed offset. Whatever it says is checked when the record is decoded.
pub(crate) fn peek_prev_position(value: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = value.get(33..41)?.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

/// The stored hash of a record value, without decoding the rest.
pub(crate) fn stored_hash(value: &[u8]) -> Option<[u8; HASH_LEN]> {
    let start = value.len().checked_sub(HASH_LEN)?;
    value[start..].try_into().ok()
}

/// Where a decoded record is expected to be.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Expect {
    /// Found under this log position (its stream and seq are not known).
    Position(u64),
    /// Reached as this seq of this stream, under this position.
    Exactly {
        stream: StreamId,
        seq: u64,
        position: u64,
    },
}

/// Checks a stored value's framing (length, format version, chain link
/// when `prev_hash` is given, a body that decodes whole) and decodes its
/// body; `stream` and `seq` name the record in errors.
fn framed<B: bincode::Decode<()>>(
    value: &[u8],
    version: u8,
    prev_hash: Option<&[u8; HASH_LEN]>,
    stream: StreamId,
    seq: u64,
) -> Result<(B, [u8; HASH_LEN])> {
    let corrupt = |reason: String| Error::corrupt(stream, seq, reason);
    if value.len() < 1 + HASH_LEN {
        return Err(corrupt(format!(
            "record is truncated ({} bytes)",
            value.len()
        )));
    }
    if value[0] != version {
        return Err(corrupt(format!(
            "record format version {} where {version} was expected (this build reads {FORMAT_VERSION} and {FORMAT_PLACED_BY_STORE})",
            value[0]
        )));
    }
    let (hashed, hash) = value.split_at(value.len() - HASH_LEN);
    let hash: [u8; HASH_LEN] = hash
        .try_into()
        .map_err(|_| corrupt("record hash is truncated".into()))?;
    if let Some(prev) = prev_hash
        && chain_hash(prev, hashed) != hash
    {
        return Err(corrupt(
            "hash does not match the chain (record altered or out of place)".into(),
        ));
    }
    let (body, used): (B, usize) =
        bincode::decode_from_slice(&hashed[1..], config()).map_err(|e| Error::Corrupt {
            stream,
            seq,
            reason: format!("record does not decode: {e}"),
            source: Some(Box::new(e)),
        })?;
    if used != hashed.len() - 1 {
        return Err(corrupt(format!(
            "record has {} trailing bytes",
            hashed.len() - 1 - used
        )));
    }
    Ok((body, hash))
}

/// Decodes a stored value. A record that is not where it was expected is
/// refused. With `prev_hash`, the chain link is checked too.
pub(crate) fn decode(
    expect: Expect,
    value: &[u8],
    prev_hash: Option<&[u8; HASH_LEN]>,
) -> Result<EventRecord> {
    let (stream, seq) = match expect {
        Expect::Exactly { stream, seq, .. } => (stream, seq),
        // Best effort: name what the record says of itself, if it says anything.
        Expect::Position(_) => peek_place(value).unwrap_or((StreamId::NIL, 0)),
    };
    let corrupt = |reason: String| Error::corrupt(stream, seq, reason);
    let (body, hash): (Body, _) = framed(value, FORMAT_VERSION, prev_hash, stream, seq)?;
    let found = StreamId::from_bytes(body.stream);
    let misplaced = match expect {
        Expect::Position(p) => body.position != p,
        Expect::Exactly {
            stream,
            seq,
            position,
        } => (found, body.seq, body.position) != (stream, seq, position),
    };
    if misplaced {
        return Err(corrupt(format!(
            "record says stream {found} seq {} position {}, which is not where it is stored ({expect:?})",
            body.seq, body.position
        )));
    }
    Ok(EventRecord {
        stream: found,
        seq: body.seq,
        position: body.position,
        prev_position: body.prev_position,
        recorded_at_ms: body.recorded_at_ms,
        kind: body.kind,
        payload: body.payload,
        hash,
        format: FORMAT_VERSION,
    })
}

/// Encodes one event in [`FORMAT_PLACED_BY_STORE`] as `seq` of `stream`,
/// chained to `prev_hash`. Returns the value to store and its hash.
pub fn encode_unplaced(
    stream: StreamId,
    seq: u64,
    event: &NewEvent,
    prev_hash: &[u8; HASH_LEN],
) -> Result<(Vec<u8>, [u8; HASH_LEN])> {
    let body = UnplacedRef {
        stream: *stream.as_bytes(),
        seq,
        recorded_at_ms: event.recorded_at_ms,
        kind: &event.kind,
        payload: &event.payload,
    };
    let mut value = Vec::with_capacity(1 + 40 + event.kind.len() + event.payload.len() + HASH_LEN);
    value.push(FORMAT_PLACED_BY_STORE);
    bincode::encode_into_std_write(&body, &mut value, config())
        .map_err(|e| Error::InvalidAppend(format!("cannot encode event: {e}")))?;
    let hash = chain_hash(prev_hash, &value);
    value.extend_from_slice(&hash);
    Ok((value, hash))
}

/// Where the store found a [`FORMAT_PLACED_BY_STORE`] record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placed {
    pub position: u64,
    pub prev_position: u64,
    /// The stream and seq it must be, when the reader knows (reading one
    /// stream); `None` when it does not (reading the whole journal).
    pub expect: Option<(StreamId, u64)>,
}

/// Decodes a [`FORMAT_PLACED_BY_STORE`] value found at `placed`. With
/// `prev_hash`, the chain link is checked too.
pub fn decode_unplaced(
    placed: Placed,
    value: &[u8],
    prev_hash: Option<&[u8; HASH_LEN]>,
) -> Result<EventRecord> {
    let (stream, seq) = placed.expect.unwrap_or((StreamId::NIL, 0));
    let corrupt = |reason: String| Error::corrupt(stream, seq, reason);
    let (body, hash): (Unplaced, _) =
        framed(value, FORMAT_PLACED_BY_STORE, prev_hash, stream, seq)?;
    let found = StreamId::from_bytes(body.stream);
    if let Some(expected) = placed.expect
        && (found, body.seq) != expected
    {
        return Err(corrupt(format!(
            "record says stream {found} seq {}, which is not where it is stored",
            body.seq
        )));
    }
    Ok(EventRecord {
        stream: found,
        seq: body.seq,
        position: placed.position,
        prev_position: placed.prev_position,
        recorded_at_ms: body.recorded_at_ms,
        kind: body.kind,
        payload: body.payload,
        hash,
        format: FORMAT_PLACED_BY_STORE,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(stream: StreamId, seq: u64, position: u64) -> Place {
        Place {
            stream,
            seq,
            position,
            prev_position: position.saturating_sub(1),
        }
    }

    fn exactly(stream: StreamId, seq: u64, position: u64) -> Expect {
        Expect::Exactly {
            stream,
            seq,
            position,
        }
    }

    fn sample() -> (StreamId, NewEvent) {
        (
            StreamId::from_bytes([7; 16]),
            NewEvent::new("step_completed", 1_700_000_000_000, b"{\"a\":1}".to_vec()),
        )
    }

    #[test]
    fn encode_then_decode_round_trips_and_chains() {
        let (id, ev) = sample();
        let (value, hash) = encode(at(id, 1, 10), &ev, &GENESIS_HASH).unwrap();
        let rec = decode(exactly(id, 1, 10), &value, Some(&GENESIS_HASH)).unwrap();
        assert_eq!(peek_place(&value), Some((id, 1)));
        assert_eq!(peek_prev_position(&value), Some(9));
        assert_eq!(decode(Expect::Position(10), &value, None).unwrap(), rec);
        assert_eq!(rec.kind, ev.kind);
        assert_eq!(rec.payload, ev.payload);
        assert_eq!(rec.position, 10);
        assert_eq!(rec.hash, hash);
        let (value2, _) = encode(at(id, 2, 11), &ev, &hash).unwrap();
        assert!(decode(exactly(id, 2, 11), &value2, Some(&hash)).is_ok());
        assert!(decode(exactly(id, 2, 11), &value2, Some(&GENESIS_HASH)).is_err());
    }

    #[test]
    fn a_decoded_record_chains_to_its_predecessor_and_nothing_else() {
        let (id, ev) = sample();
        let (v1, h1) = encode(at(id, 1, 1), &ev, &GENESIS_HASH).unwrap();
        let (v2, _) = encode(at(id, 2, 5), &ev, &h1).unwrap();
        let r1 = decode(Expect::Position(1), &v1, None).unwrap();
        let r2 = decode(Expect::Position(5), &v2, None).unwrap();
        assert!(r1.chains_to(&GENESIS_HASH));
        assert!(r2.chains_to(&h1));
        assert!(!r2.chains_to(&GENESIS_HASH));
        // Any field changed after the fact breaks the link.
        let mut changed = r2.clone();
        changed.payload.push(b' ');
        assert!(!changed.chains_to(&h1));
        let mut moved = r2.clone();
        moved.position += 1;
        assert!(!moved.chains_to(&h1));
        let mut renamed = r2;
        renamed.kind.push('x');
        assert!(!renamed.chains_to(&h1));
    }

    #[test]
    fn a_record_placed_by_its_store_round_trips_chains_and_keeps_no_place_in_its_hash() {
        let (id, ev) = sample();
        let (v1, h1) = encode_unplaced(id, 1, &ev, &GENESIS_HASH).unwrap();
        let (v2, h2) = encode_unplaced(id, 2, &ev, &h1).unwrap();
        let at = |position, prev_position, expect| Placed {
            position,
            prev_position,
            expect,
        };
        let r1 = decode_unplaced(at(4096, 0, Some((id, 1))), &v1, Some(&GENESIS_HASH)).unwrap();
        let r2 = decode_unplaced(at(8192, 4096, None), &v2, Some(&h1)).unwrap();
        assert_eq!((r1.position, r1.prev_position, r1.hash), (4096, 0, h1));
        assert_eq!((r2.seq, r2.position, r2.prev_position), (2, 8192, 4096));
        assert_eq!(
            (r2.kind.as_str(), r2.payload.as_slice()),
            ("step_completed", ev.payload.as_slice())
        );
        assert_eq!((r1.format, r2.hash), (FORMAT_PLACED_BY_STORE, h2));
        assert!(r1.chains_to(&GENESIS_HASH) && r2.chains_to(&h1));
        assert!(!r2.chains_to(&GENESIS_HASH));
        // The place is the store's: the same bytes chain wherever they are.
        let mut moved = r2.clone();
        moved.position += 7;
        assert!(moved.chains_to(&h1));
        // Everything of the event is covered.
        let mut changed = r2.clone();
        changed.payload.push(b' ');
        assert!(!changed.chains_to(&h1));
        let mut renumbered = r2;
        renumbered.seq = 3;
        assert!(!renumbered.chains_to(&h1));
        // Found where another was expected, or in the wrong format: refused.
        assert!(decode_unplaced(at(1, 0, Some((id, 2))), &v1, None).is_err());
        assert!(decode_unplaced(at(1, 0, None), &v1, Some(&h1)).is_err());
        let (format1, _) = encode(
            Place {
                stream: id,
                seq: 1,
                position: 1,
                prev_position: 0,
            },
            &ev,
            &GENESIS_HASH,
        )
        .unwrap();
        assert!(decode_unplaced(at(1, 0, None), &format1, None).is_err());
        for i in 0..v1.len() {
            let mut bad = v1.clone();
            bad[i] ^= 0x40;
            assert!(
                decode_unplaced(at(1, 0, Some((id, 1))), &bad, Some(&GENESIS_HASH)).is_err(),
                "flip at byte {i} went unnoticed"
            );
        }
    }

    #[test]
    fn every_single_byte_flip_is_detected() {
        let (id, ev) = sample();
        let (value, _) = encode(at(id, 1, 1), &ev, &GENESIS_HASH).unwrap();
        for i in 0..value.len() {
            let mut bad = value.clone();
            bad[i] ^= 0x40;
            assert!(
                decode(exactly(id, 1, 1), &bad, Some(&GENESIS_HASH)).is_err(),
                "flip at byte {i} went unnoticed"
            );
        }
    }

    #[test]
    fn every_truncation_is_detected() {
        let (id, ev) = sample();
        let (value, _) = encode(at(id, 1, 1), &ev, &GENESIS_HASH).unwrap();
        for len in 0..value.len() {
            assert!(decode(exactly(id, 1, 1), &value[..len], Some(&GENESIS_HASH)).is_err());
            assert!(decode(Expect::Position(1), &value[..len], None).is_err());
        }
    }

    #[test]
    fn a_record_that_does_not_decode_keeps_the_decoder_error() {
        // A well-framed value (version, body, hash) whose body is too short.
        let mut value = vec![FORMAT_VERSION, 1, 2, 3];
        let hash = chain_hash(&GENESIS_HASH, &value);
        value.extend_from_slice(&hash);
        match decode(Expect::Position(1), &value, Some(&GENESIS_HASH)) {
            Err(e @ Error::Corrupt { .. }) => {
                assert!(e.to_string().contains("record does not decode"), "{e}");
                let source = std::error::Error::source(&e).unwrap();
                assert!(
                    source
                        .downcast_ref::<bincode::error::DecodeError>()
                        .is_some()
                );
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        // A failed check of ours has no source.
        let (id, ev) = sample();
        let (value, _) = encode(at(id, 1, 1), &ev, &GENESIS_HASH).unwrap();
        let e = decode(exactly(id, 2, 1), &value, None).unwrap_err();
        assert!(std::error::Error::source(&e).is_none());
    }

    #[test]
    fn a_record_under_the_wrong_key_is_refused() {
        let (id, ev) = sample();
        let (value, _) = encode(at(id, 1, 1), &ev, &GENESIS_HASH).unwrap();
        assert!(decode(exactly(id, 2, 1), &value, None).is_err());
        assert!(decode(exactly(StreamId::NIL, 1, 1), &value, None).is_err());
        assert!(decode(Expect::Position(2), &value, None).is_err());
    }

    #[test]
    fn oversized_or_unnamed_events_are_invalid() {
        assert!(validate(&NewEvent::new("", 0, vec![])).is_err());
        assert!(validate(&NewEvent::new("k".repeat(MAX_KIND_BYTES + 1), 0, vec![])).is_err());
        assert!(validate(&NewEvent::new("k", 0, vec![0; MAX_PAYLOAD_BYTES + 1])).is_err());
        assert!(validate(&NewEvent::new("k", 0, vec![0; 10])).is_ok());
    }
}
