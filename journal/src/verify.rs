//! `verify`: walks every stream's chain and every index entry and reports
//! each defect by stream and `seq`. It reads the store directly (the
//! writer runs it between groups, so nothing moves underneath it) and never
//! stops at the first defect.
//!
//! Owns the checks of the whole sled layout. It must never write, and never
//! repair: it reports, and `rebuild_indexes` (in `writer`) repairs.

use std::collections::HashMap;
use std::fmt;

use crate::error::{Error, Result};
use crate::keys::{self, Head};
use crate::record::{self, Expect, GENESIS_HASH, HASH_LEN};
use crate::recovery::heads_through;
use crate::store::Store;
use crate::stream::StreamId;

/// What `verify` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub streams: u64,
    pub events: u64,
    pub defects: Vec<Defect>,
}

impl VerifyReport {
    pub fn is_sound(&self) -> bool {
        self.defects.is_empty()
    }
}

/// One defect, located by stream and `seq` (`seq` 0: the stream as a
/// whole, e.g. its head index entry; stream NIL and `seq` 0: the journal as
/// a whole).
///
/// Its text says "execution" for the stream, as `retrace verify` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Defect {
    pub stream: StreamId,
    pub seq: u64,
    pub kind: DefectKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DefectKind {
    /// The record does not decode, does not chain, or sits under the wrong key.
    BrokenRecord(String),
    /// A `seq` is absent from an otherwise continuing chain.
    MissingRecord,
    /// A derived index entry disagrees with the records.
    BrokenIndex(String),
}

impl fmt::Display for Defect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            DefectKind::BrokenRecord(why) => {
                write!(
                    f,
                    "execution {} seq {}: broken record: {why}",
                    self.stream, self.seq
                )
            }
            DefectKind::MissingRecord => {
                write!(
                    f,
                    "execution {} seq {}: record missing",
                    self.stream, self.seq
                )
            }
            DefectKind::BrokenIndex(why) => {
                write!(
                    f,
                    "execution {} seq {}: broken index: {why}",
                    self.stream, self.seq
                )
            }
        }
    }
}

const CHUNK: usize = 4096;
/// Most missing seqs listed one by one before a gap.
const MISSING_LISTED_MAX: u64 = 1024;

/// One stream's chain as the walk has seen it so far.
#[derive(Clone, Copy)]
struct Chain {
    next_seq: u64,
    prev_hash: [u8; HASH_LEN],
    last_position: u64,
    /// The head as of the heads checkpoint (what the `h` entry must say).
    at_checkpoint: Head,
}

/// Walks the log in position order, following every stream's chain, and
/// checks the `x` index and the `h` heads against what the records say.
/// Usable on a store no journal has open (e.g. `retrace verify`).
pub fn verify_store(store: &dyn Store) -> Result<VerifyReport> {
    let mut report = VerifyReport::default();
    let through = heads_through(store)?;
    let mut chains: HashMap<StreamId, Chain> = HashMap::new();
    let mut indexed = 0u64;
    let mut next_position = 1u64;
    let mut from = keys::log(1);
    let end = vec![keys::LOG + 1];
    loop {
        let entries = store.scan(&from, &end, CHUNK)?;
        let Some((last_key, _)) = entries.last() else {
            break;
        };
        from = keys::prefix_end(last_key);
        for (k, v) in entries {
            let Some(position) = keys::parse_log(&k) else {
                report.defect(
                    StreamId::NIL,
                    0,
                    DefectKind::BrokenRecord(format!("malformed log key {k:02x?}")),
                );
                continue;
            };
            if position != next_position {
                report.defect(
                    StreamId::NIL,
                    0,
                    DefectKind::BrokenIndex(format!(
                        "log positions {next_position} to {} are missing",
                        position - 1
                    )),
                );
            }
            next_position = position.saturating_add(1);
            report.events += 1;
            let Some((stream, seq)) = record::peek_place(&v) else {
                report.defect(
                    StreamId::NIL,
                    0,
                    DefectKind::BrokenRecord(format!("record at position {position} is truncated")),
                );
                continue;
            };
            let c = chains.entry(stream).or_insert_with(|| Chain {
                next_seq: 1,
                prev_hash: GENESIS_HASH,
                last_position: 0,
                at_checkpoint: Head::EMPTY,
            });
            if seq.saturating_sub(c.next_seq) > MISSING_LISTED_MAX {
                // A record claiming a far-off seq: one defect, not one per
                // seq it skips (which could be 2^64 of them).
                report.defects.push(Defect {
                    stream,
                    seq,
                    kind: DefectKind::BrokenRecord(format!(
                        "claims seq {seq}, but the chain stands at {}",
                        c.next_seq - 1
                    )),
                });
                c.next_seq = seq;
            }
            while c.next_seq < seq {
                report.defects.push(Defect {
                    stream,
                    seq: c.next_seq,
                    kind: DefectKind::MissingRecord,
                });
                c.next_seq += 1;
            }
            let expect = Expect::Exactly {
                stream,
                seq,
                position,
            };
            match record::decode(expect, &v, Some(&c.prev_hash)) {
                Ok(rec) if rec.prev_position != c.last_position => {
                    report.defects.push(Defect {
                        stream,
                        seq,
                        kind: DefectKind::BrokenRecord(
                            "back-link does not point at the previous event".into(),
                        ),
                    });
                }
                Ok(_) => {}
                Err(Error::Corrupt { reason, .. }) => {
                    report.defects.push(Defect {
                        stream,
                        seq,
                        kind: DefectKind::BrokenRecord(reason),
                    });
                }
                Err(e) => return Err(e),
            }
            // Chain the rest to what is stored, so one damaged record is
            // reported once and its successors are still checked.
            if let Some(h) = record::stored_hash(&v) {
                c.prev_hash = h;
            }
            c.last_position = position;
            c.next_seq = c.next_seq.max(seq.saturating_add(1));
            if position <= through {
                c.at_checkpoint = Head {
                    last_seq: seq,
                    last_position: position,
                    last_hash: c.prev_hash,
                };
            }
            if keys::indexed(seq) {
                indexed += 1;
                let ok = match store.get(&keys::index(stream, seq))? {
                    Some(v) => keys::parse_u64_value(&v, "an index entry").ok() == Some(position),
                    None => false,
                };
                if !ok {
                    report.defect(
                        stream,
                        seq,
                        DefectKind::BrokenIndex(format!(
                            "index entry does not point at position {position}"
                        )),
                    );
                }
            }
        }
    }
    report.streams = chains.len() as u64;
    // Every index entry must belong to a record checked above.
    let entries = count(store, keys::INDEX)?;
    if entries != indexed {
        report.defect(
            StreamId::NIL,
            0,
            DefectKind::BrokenIndex(format!(
                "the index has {entries} entries for {indexed} indexed records"
            )),
        );
    }
    // Heads must say what the chains said at the heads checkpoint.
    let mut with_head = 0usize;
    for (k, v) in store.scan(&[keys::HEAD], &[keys::HEAD + 1], usize::MAX)? {
        let Some(id) = keys::parse_head_key(&k) else {
            report.defect(
                StreamId::NIL,
                0,
                DefectKind::BrokenIndex("malformed head key".into()),
            );
            continue;
        };
        let expected = chains.get(&id).map(|c| c.at_checkpoint);
        if expected.is_some_and(|h| h.last_seq > 0) {
            with_head += 1;
        }
        if Head::decode(&v).ok() != expected {
            report.defect(
                id,
                0,
                DefectKind::BrokenIndex(format!(
                    "head entry does not match the records up to position {through}"
                )),
            );
        }
    }
    let expected_heads = chains
        .values()
        .filter(|c| c.at_checkpoint.last_seq > 0)
        .count();
    if with_head != expected_heads {
        report.defect(
            StreamId::NIL,
            0,
            DefectKind::BrokenIndex(format!(
                "{} streams have no head entry",
                expected_heads - with_head.min(expected_heads)
            )),
        );
    }
    report.defects.sort_by_key(|p| (p.stream, p.seq));
    Ok(report)
}

impl VerifyReport {
    fn defect(&mut self, stream: StreamId, seq: u64, kind: DefectKind) {
        self.defects.push(Defect { stream, seq, kind });
    }
}

fn count(store: &dyn Store, prefix: u8) -> Result<u64> {
    let mut n = 0u64;
    let mut from = vec![prefix];
    loop {
        let entries = store.scan(&from, &[prefix + 1], CHUNK)?;
        let Some((last, _)) = entries.last() else {
            return Ok(n);
        };
        n += entries.len() as u64;
        from = keys::prefix_end(last);
    }
}
