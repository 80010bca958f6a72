//! What opening the sled journal reads and repairs: the format marker, where
//! the log ends, how far the stored heads are exact, and bringing the heads
//! up to the end of the log by replaying its tail (after a crash they lag by
//! at most a few groups). `replay_log` is also how the writer rebuilds the
//! indexes from scratch, and `heads_through` how `verify` knows what the
//! heads must say.
//!
//! Owns the replay of the log and the head checkpoint's meaning. It must
//! never run while the writer is committing (it is called before the writer
//! starts, or by the writer itself between groups), and never write anything
//! but the format marker, heads and the checkpoint.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::keys::{self, Head};
use crate::record::{self, EventRecord, Expect};
use crate::store::{Op, Store};
use crate::stream::StreamId;

/// Checks the store's format marker, writing it on a new store.
pub(crate) fn check_format(store: &dyn Store) -> Result<()> {
    match store.get(keys::META_FORMAT)? {
        Some(v) if v.as_slice() == [record::FORMAT_VERSION] => Ok(()),
        Some(v) => Err(Error::UnsupportedFormat {
            found: v.first().copied().unwrap_or(0),
            supported: record::FORMAT_VERSION,
        }),
        None => {
            store.apply(vec![Op::Put(
                keys::META_FORMAT.to_vec(),
                vec![record::FORMAT_VERSION],
            )])?;
            store.flush()
        }
    }
}

/// The last position in the log (0 when empty).
pub(crate) fn last_log_position(store: &dyn Store) -> Result<u64> {
    match store.last(&[keys::LOG], &[keys::LOG + 1])? {
        Some((k, _)) => {
            keys::parse_log(&k).ok_or_else(|| Error::CorruptIndex("malformed log key".into()))
        }
        None => Ok(0),
    }
}

/// The position the stored heads are exact up to.
pub(crate) fn heads_through(store: &dyn Store) -> Result<u64> {
    match store.get(keys::META_HEADS)? {
        Some(v) => keys::parse_u64_value(&v, "the heads checkpoint"),
        None => Ok(0),
    }
}

/// The head the store's `h` entry gives `stream` (EMPTY when it has none).
pub(crate) fn stored_head(store: &dyn Store, stream: StreamId) -> Result<Head> {
    match store.get(&keys::head(stream))? {
        Some(v) => Head::decode(&v),
        None => Ok(Head::EMPTY),
    }
}

/// Brings the stored heads up to the end of the log, checking the tail's
/// chains on the way. Returns the last position.
pub(crate) fn recover_heads(store: &dyn Store) -> Result<u64> {
    let last = last_log_position(store)?;
    let through = heads_through(store)?;
    if last <= through {
        return Ok(last);
    }
    let heads = replay_log(
        store,
        through.saturating_add(1),
        |id| stored_head(store, id),
        |_| {},
    )?;
    let mut ops: Vec<Op> = heads
        .iter()
        .map(|(id, h)| Op::Put(keys::head(*id), h.encode()))
        .collect();
    ops.push(Op::Put(keys::META_HEADS.to_vec(), keys::u64_value(last)));
    store.apply(ops)?;
    store.flush()?;
    Ok(last)
}

/// Reads the log from position `from` to its end, decoding every record and
/// checking its chain link and back-link against its stream's head
/// (`head_before` gives the head as of `from`); calls `each` with every
/// record. Returns the heads of the streams it saw. Stops at the first
/// broken record with `Error::Corrupt` naming it.
pub(crate) fn replay_log(
    store: &dyn Store,
    from: u64,
    head_before: impl Fn(StreamId) -> Result<Head>,
    mut each: impl FnMut(&EventRecord),
) -> Result<HashMap<StreamId, Head>> {
    let mut heads: HashMap<StreamId, Head> = HashMap::new();
    let mut next = keys::log(from);
    loop {
        let chunk = store.scan(&next, &[keys::LOG + 1], 4096)?;
        let Some((last_key, _)) = chunk.last() else {
            return Ok(heads);
        };
        next = keys::prefix_end(last_key);
        for (k, v) in chunk {
            let position = keys::parse_log(&k)
                .ok_or_else(|| Error::CorruptIndex("malformed log key".into()))?;
            let (stream, seq) = record::peek_place(&v).ok_or_else(|| {
                Error::corrupt(
                    StreamId::NIL,
                    0,
                    format!("record at position {position} is truncated"),
                )
            })?;
            let prev = match heads.get(&stream) {
                Some(h) => *h,
                None => head_before(stream)?,
            };
            let next_seq = prev.last_seq.checked_add(1).ok_or_else(|| {
                Error::corrupt(
                    stream,
                    seq,
                    "the stream's head is at the largest seq there is",
                )
            })?;
            let expect = Expect::Exactly {
                stream,
                seq: next_seq,
                position,
            };
            let rec = record::decode(expect, &v, Some(&prev.last_hash))?;
            if rec.prev_position != prev.last_position {
                return Err(Error::corrupt(
                    stream,
                    seq,
                    "back-link does not point at the previous event",
                ));
            }
            each(&rec);
            heads.insert(
                stream,
                Head {
                    last_seq: rec.seq,
                    last_position: position,
                    last_hash: rec.hash,
                },
            );
        }
    }
}
