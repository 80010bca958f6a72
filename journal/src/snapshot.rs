//! Snapshot values: `[version u8][seq u64 LE][blake3(state) 32][state]`.
//! A snapshot is derived data (a fold of events its caller can redo), so a
//! damaged one is reported, never trusted.
//!
//! Owns the snapshot value's bytes. It must never read or write a store, and
//! never look inside `state`.

use crate::error::{Error, Result};
use crate::journal::Snapshot;
use crate::keys;
use crate::stream::StreamId;

const SNAPSHOT_VERSION: u8 = 1;
const HEADER: usize = 1 + 8 + 32;

pub(crate) fn encode(seq: u64, state: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(HEADER + state.len());
    v.push(SNAPSHOT_VERSION);
    v.extend_from_slice(&seq.to_le_bytes());
    v.extend_from_slice(blake3::hash(state).as_bytes());
    v.extend_from_slice(state);
    v
}

pub(crate) fn decode(key: &[u8], value: &[u8]) -> Result<Snapshot> {
    let bad = |why: &str| Error::CorruptIndex(format!("snapshot: {why}"));
    let (stream, key_seq): (StreamId, u64) =
        keys::parse_stream_seq(key).ok_or_else(|| bad("malformed key"))?;
    if value.len() < HEADER {
        return Err(bad("truncated"));
    }
    if value[0] != SNAPSHOT_VERSION {
        return Err(bad("unknown version"));
    }
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&value[1..9]);
    let seq = u64::from_le_bytes(seq);
    let state = &value[HEADER..];
    if seq != key_seq || blake3::hash(state).as_bytes() != &value[9..HEADER] {
        return Err(bad(&format!(
            "stream {stream} seq {key_seq} fails its checksum"
        )));
    }
    Ok(Snapshot {
        stream,
        seq,
        state: state.to_vec(),
    })
}
