//! The key layout of the one ordered key-value space the journal lives in.
//! Keys are big-endian so that byte order is numeric order; values use
//! little-endian fixed-width integers. See `docs/journal-format.md`.
//!
//! | prefix | key                         | value                                   | kind          |
//! |--------|-----------------------------|-----------------------------------------|---------------|
//! | `e`    | execution[16] seq[8]        | event record (see `record`)             | source of truth |
//! | `g`    | position[8]                 | execution[16] seq[8]                    | derived index |
//! | `h`    | execution[16]               | last_seq[8] last_position[8] hash[32]   | derived index |
//! | `s`    | execution[16] seq[8]        | snapshot (see `snapshot`)               | derived       |
//! | `m`    | `format`                    | format version [1]                      | metadata      |

use crate::record::HASH_LEN;
use crate::{Error, ExecutionId, Result};

pub(crate) const EVENT: u8 = b'e';
pub(crate) const GLOBAL: u8 = b'g';
pub(crate) const HEAD: u8 = b'h';
pub(crate) const SNAPSHOT: u8 = b's';
pub(crate) const META_FORMAT: &[u8] = b"mformat";

pub(crate) fn event(execution: ExecutionId, seq: u64) -> Vec<u8> {
    exec_seq(EVENT, execution, seq)
}

pub(crate) fn snapshot(execution: ExecutionId, seq: u64) -> Vec<u8> {
    exec_seq(SNAPSHOT, execution, seq)
}

fn exec_seq(prefix: u8, execution: ExecutionId, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(25);
    k.push(prefix);
    k.extend_from_slice(execution.as_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

pub(crate) fn global(position: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.push(GLOBAL);
    k.extend_from_slice(&position.to_be_bytes());
    k
}

pub(crate) fn head(execution: ExecutionId) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    k.push(HEAD);
    k.extend_from_slice(execution.as_bytes());
    k
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

/// Parses `prefix execution[16] seq[8]`.
pub(crate) fn parse_exec_seq(key: &[u8]) -> Option<(ExecutionId, u64)> {
    if key.len() != 25 {
        return None;
    }
    let id: [u8; 16] = key[1..17].try_into().ok()?;
    let seq = u64::from_be_bytes(key[17..25].try_into().ok()?);
    Some((ExecutionId::from_bytes(id), seq))
}

pub(crate) fn parse_global(key: &[u8]) -> Option<u64> {
    if key.len() != 9 || key[0] != GLOBAL {
        return None;
    }
    Some(u64::from_be_bytes(key[1..9].try_into().ok()?))
}

pub(crate) fn parse_head_key(key: &[u8]) -> Option<ExecutionId> {
    if key.len() != 17 || key[0] != HEAD {
        return None;
    }
    Some(ExecutionId::from_bytes(key[1..17].try_into().ok()?))
}

/// The value of a `g` entry.
pub(crate) fn global_value(execution: ExecutionId, seq: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(24);
    v.extend_from_slice(execution.as_bytes());
    v.extend_from_slice(&seq.to_le_bytes());
    v
}

pub(crate) fn parse_global_value(value: &[u8]) -> Result<(ExecutionId, u64)> {
    if value.len() != 24 {
        return Err(Error::CorruptIndex(format!(
            "global index entry has {} bytes, expected 24",
            value.len()
        )));
    }
    let mut id = [0u8; 16];
    id.copy_from_slice(&value[..16]);
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&value[16..24]);
    Ok((ExecutionId::from_bytes(id), u64::from_le_bytes(seq)))
}

/// The last record of an execution, as kept in the `h` index.
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
        last_hash: crate::record::GENESIS_HASH,
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
                "execution head has {} bytes, expected 48",
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
        let id = ExecutionId::from_bytes([1; 16]);
        assert!(event(id, 2) < event(id, 10));
        assert!(event(id, 255) < event(id, 256));
        assert!(global(255) < global(256));
        assert_eq!(parse_exec_seq(&event(id, 77)), Some((id, 77)));
        assert_eq!(parse_global(&global(99)), Some(99));
        assert_eq!(parse_head_key(&head(id)), Some(id));
    }

    #[test]
    fn prefix_end_bounds_the_prefix() {
        assert_eq!(prefix_end(b"e"), b"f".to_vec());
        assert_eq!(prefix_end(&[b'e', 0xff]), vec![b'f']);
        let id = ExecutionId::from_bytes([0xff; 16]);
        let p = event(id, u64::MAX);
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
