//! The key layout of the one ordered key-value space the journal lives in.
//! Keys are big-endian so that byte order is numeric order; values use
//! little-endian fixed-width integers. See `docs/journal-format.md`.
//!
//! | prefix | key                    | value                                 | kind            |
//! |--------|------------------------|---------------------------------------|-----------------|
//! | `l`    | position[8]            | event record (see `record`)           | source of truth |
//! | `x`    | stream[16] seq[8]      | position[8]                           | derived index   |
//! | `h`    | stream[16]             | last_seq[8] last_position[8] hash[32] | derived index   |
//! | `s`    | stream[16] seq[8]      | snapshot (see `snapshot`)             | derived         |
//! | `m`    | `format` / `heads`     | format version[1] / position[8]       | metadata        |
//!
//! Appends write only to the end of the `l` range (sequential keys are what
//! sled writes fastest). The `x` index holds every [`INDEX_STRIDE`]th `seq` of
//! a stream (and `seq` 1); between two entries a history is walked through
//! each record's `prev_position`. Heads are checkpointed every few groups with
//! `mheads` = the position they are exact up to; opening the journal redoes
//! them from the log after that position.
//!
//! Owns the key layout and the encoding of heads and index values. It must
//! never read or write a store: it only makes and parses bytes.

use crate::error::{Error, Result};
use crate::record::{GENESIS_HASH, HASH_LEN};
use crate::stream::StreamId;

pub(crate) const LOG: u8 = b'l';
pub(crate) const INDEX: u8 = b'x';
pub(crate) const HEAD: u8 = b'h';
pub(crate) const SNAPSHOT: u8 = b's';
pub(crate) const META_FORMAT: &[u8] = b"mformat";
pub(crate) const META_HEADS: &[u8] = b"mheads";

/// Every how many `seq`s a stream gets an `x` index entry.
pub(crate) const INDEX_STRIDE: u64 = 128;

/// Whether `seq` gets an `x` entry.
pub(crate) fn indexed(seq: u64) -> bool {
    seq == 1 || seq.is_multiple_of(INDEX_STRIDE)
}

pub(crate) fn log(position: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.push(LOG);
    k.extend_from_slice(&position.to_be_bytes());
    k
}

pub(crate) fn index(stream: StreamId, seq: u64) -> Vec<u8> {
    stream_seq(INDEX, stream, seq)
}

pub(crate) fn snapshot(stream: StreamId, seq: u64) -> Vec<u8> {
    stream_seq(SNAPSHOT, stream, seq)
}

fn stream_seq(prefix: u8, stream: StreamId, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(25);
    k.push(prefix);
    k.extend_from_slice(stream.as_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

pub(crate) fn head(stream: StreamId) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    k.push(HEAD);
    k.extend_from_slice(stream.as_bytes());
    k
}

pub(crate) fn u64_value(v: u64) -> Vec<u8> {
    v.to_le_bytes().to_vec()
}

pub(crate) fn parse_u64_value(value: &[u8], what: &str) -> Result<u64> {
    let bytes: [u8; 8] = value.try_into().map_err(|_| {
        Error::CorruptIndex(format!("{what} has {} bytes, expected 8", value.len()))
    })?;
    Ok(u64::from_le_bytes(bytes))
}

/// The smallest key after every key that starts with `prefix`.
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return end;
        }
    }
    vec![u8::MAX; prefix.len() + 1]
}

/// Parses `prefix stream[16] seq[8]`.
pub(crate) fn parse_stream_seq(key: &[u8]) -> Option<(StreamId, u64)> {
    if key.len() != 25 {
        return None;
    }
    let id: [u8; 16] = key[1..17].try_into().ok()?;
    let seq = u64::from_be_bytes(key[17..25].try_into().ok()?);
    Some((StreamId::from_bytes(id), seq))
}

pub(crate) fn parse_log(key: &[u8]) -> Option<u64> {
    if key.len() != 9 || key[0] != LOG {
        return None;
    }
    Some(u64::from_be_bytes(key[1..9].try_into().ok()?))
}

pub(crate) fn parse_head_key(key: &[u8]) -> Option<StreamId> {
    if key.len() != 17 || key[0] != HEAD {
        return None;
    }
    Some(StreamId::from_bytes(key[1..17].try_into().ok()?))
}

/// The last record of a stream, as kept in the `h` index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Head {
    pub last_seq: u64,
    pub last_position: u64,
    pub last_hash: [u8; HASH_LEN],
}

impl Head {
    pub(crate) const EMPTY: Head = Head {
        last_seq: 0,
        last_position: 0,
        last_hash: GENESIS_HASH,
    };

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(48);
        v.extend_from_slice(&self.last_seq.to_le_bytes());
        v.extend_from_slice(&self.last_position.to_le_bytes());
        v.extend_from_slice(&self.last_hash);
        v
    }

    pub(crate) fn decode(value: &[u8]) -> Result<Head> {
        if value.len() != 48 {
            return Err(Error::CorruptIndex(format!(
                "stream head has {} bytes, expected 48",
                value.len()
            )));
        }
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&value[0..8]);
        let mut pos = [0u8; 8];
        pos.copy_from_slice(&value[8..16]);
        let mut hash = [0u8; HASH_LEN];
        hash.copy_from_slice(&value[16..48]);
        Ok(Head {
            last_seq: u64::from_le_bytes(seq),
            last_position: u64::from_le_bytes(pos),
            last_hash: hash,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_numerically() {
        let id = StreamId::from_bytes([1; 16]);
        assert!(index(id, 2) < index(id, 10));
        assert!(index(id, 255) < index(id, 256));
        assert!(log(255) < log(256));
        assert_eq!(parse_stream_seq(&index(id, 77)), Some((id, 77)));
        assert_eq!(parse_log(&log(99)), Some(99));
        assert!(indexed(1) && indexed(INDEX_STRIDE) && !indexed(2));
        assert_eq!(parse_head_key(&head(id)), Some(id));
    }

    #[test]
    fn prefix_end_bounds_the_prefix() {
        assert_eq!(prefix_end(b"l"), b"m".to_vec());
        assert_eq!(prefix_end(&[b'e', 0xff]), vec![b'f']);
        let id = StreamId::from_bytes([0xff; 16]);
        let p = index(id, u64::MAX);
        assert!(prefix_end(&p[..17]) > p);
    }

    #[test]
    fn head_round_trips() {
        let h = Head {
            last_seq: 5,
            last_position: 9,
            last_hash: [3; 32],
        };
        assert_eq!(Head::decode(&h.encode()).unwrap(), h);
        assert!(Head::decode(&[0; 47]).is_err());
    }
}
