//! A store that reads through to another and keeps every write to itself:
//! how a stopped server's data folder is opened without changing it
//! (`retrace replay`, `export`, `verify`).
//!
//! Reads see the base store merged with an in-memory layer of puts and
//! tombstones (a tombstone hides the base's entry); `apply` goes into the
//! layer only and `flush` does nothing. So a journal opened over it works
//! unchanged — the heads it recovers at open, an index rebuild, even an
//! append land in memory — and whatever it writes is gone when the overlay
//! is dropped.
//!
//! Owns the layer and the merge of the two ordered key spaces. It must never
//! write to, or flush, its base.

use std::cmp::Ordering;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use super::{Op, Store};
use crate::error::Result;

/// The layer: a put (`Some`) or a tombstone (`None`) per key written.
type Layer = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// `base` as it reads, plus whatever was applied since, in memory only.
#[derive(Debug)]
pub struct Overlay<S> {
    base: S,
    layer: Mutex<Layer>,
}

impl<S: Store> Overlay<S> {
    /// An overlay with nothing written yet: it reads exactly as `base`.
    pub fn new(base: S) -> Overlay<S> {
        Overlay {
            base,
            layer: Mutex::new(BTreeMap::new()),
        }
    }

    /// The store underneath, which nothing written here reaches.
    pub fn base(&self) -> &S {
        &self.base
    }

    /// How many keys were written (put or deleted) over the base.
    pub fn written(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> MutexGuard<'_, Layer> {
        // Every mutation of the layer is a single insert loop under the lock,
        // so a panic elsewhere cannot leave it half-written.
        self.layer.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The smallest key after `key`.
fn successor(key: &[u8]) -> Vec<u8> {
    let mut next = Vec::with_capacity(key.len() + 1);
    next.extend_from_slice(key);
    next.push(0);
    next
}

impl<S: Store> Store for Overlay<S> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.lock().get(key) {
            Some(written) => Ok(written.clone()),
            None => self.base.get(key),
        }
    }

    fn scan(&self, from: &[u8], to: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        if from >= to || limit == 0 {
            return Ok(Vec::new());
        }
        // The layer stays locked for the whole scan: one consistent view.
        let layer = self.lock();
        let mut written = layer.range(from.to_vec()..to.to_vec()).peekable();
        let mut base: VecDeque<(Vec<u8>, Vec<u8>)> = VecDeque::new();
        let mut base_from = from.to_vec();
        let mut base_done = false;
        let mut out = Vec::new();
        while out.len() < limit {
            // Base entries are read in chunks of what is still wanted; a
            // tombstone that hides some only costs another chunk.
            if base.is_empty() && !base_done {
                let want = limit - out.len();
                let chunk = self.base.scan(&base_from, to, want)?;
                base_done = chunk.len() < want;
                if let Some((last, _)) = chunk.last() {
                    base_from = successor(last);
                }
                base.extend(chunk);
            }
            let order = match (base.front(), written.peek()) {
                (None, None) => break,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some((b, _)), Some((w, _))) => b.as_slice().cmp(w.as_slice()),
            };
            if order == Ordering::Less {
                if let Some(entry) = base.pop_front() {
                    out.push(entry);
                }
                continue;
            }
            if order == Ordering::Equal {
                // The layer's write replaces (or its tombstone hides) it.
                base.pop_front();
            }
            if let Some((k, Some(v))) = written.next() {
                out.push((k.clone(), v.clone()));
            }
        }
        Ok(out)
    }

    fn last(&self, from: &[u8], to: &[u8]) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        let layer = self.lock();
        let mut upper = to.to_vec();
        // Each round either answers or lowers `upper` past a tombstone.
        loop {
            if from >= upper.as_slice() {
                return Ok(None);
            }
            let below = self.base.last(from, &upper)?;
            let written = layer.range(from.to_vec()..upper.clone()).next_back();
            match (below, written) {
                (None, None) => return Ok(None),
                (Some(b), None) => return Ok(Some(b)),
                (Some(b), Some((w, _))) if b.0 > *w => return Ok(Some(b)),
                // The layer's key is the largest (or the same as the base's,
                // which it replaces or hides).
                (_, Some((w, Some(v)))) => return Ok(Some((w.clone(), v.clone()))),
                (_, Some((w, None))) => upper = w.clone(),
            }
        }
    }

    fn apply(&self, ops: Vec<Op>) -> Result<()> {
        let mut layer = self.lock();
        for op in ops {
            match op {
                Op::Put(k, v) => layer.insert(k, Some(v)),
                Op::Delete(k) => layer.insert(k, None),
            };
        }
        Ok(())
    }

    /// Nothing to do: the layer lives in memory and the base is never written.
    fn flush(&self) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::store::memory::MemoryStore;

    fn put(k: &str, v: &str) -> Op {
        Op::Put(k.as_bytes().to_vec(), v.as_bytes().to_vec())
    }

    fn del(k: &str) -> Op {
        Op::Delete(k.as_bytes().to_vec())
    }

    fn pairs(entries: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<(String, String)> {
        entries
            .into_iter()
            .map(|(k, v)| (String::from_utf8(k).unwrap(), String::from_utf8(v).unwrap()))
            .collect()
    }

    fn kv(k: &str, v: &str) -> (String, String) {
        (k.to_owned(), v.to_owned())
    }

    /// base: a b c d e (values "base"); layer: b replaced, c and e deleted,
    /// bb and f added, a deleted then put back, zz put then deleted.
    fn mixed() -> (MemoryStore, Overlay<MemoryStore>) {
        let base = MemoryStore::new();
        base.apply(["a", "b", "c", "d", "e"].map(|k| put(k, "base")).to_vec())
            .unwrap();
        let overlay = Overlay::new(base.clone());
        overlay
            .apply(vec![
                put("b", "new"),
                del("c"),
                del("e"),
                put("bb", "new"),
                put("f", "new"),
                del("a"),
                put("zz", "new"),
            ])
            .unwrap();
        overlay.apply(vec![put("a", "again"), del("zz")]).unwrap();
        (base, overlay)
    }

    #[test]
    fn reads_merge_the_layer_over_the_base() {
        let (base, o) = mixed();
        assert_eq!(
            pairs(o.scan(b"", b"\xff", usize::MAX).unwrap()),
            [
                kv("a", "again"),
                kv("b", "new"),
                kv("bb", "new"),
                kv("d", "base"),
                kv("f", "new"),
            ]
        );
        assert_eq!(o.get(b"a").unwrap(), Some(b"again".to_vec()));
        assert_eq!(o.get(b"c").unwrap(), None);
        assert_eq!(o.get(b"d").unwrap(), Some(b"base".to_vec()));
        assert_eq!(o.get(b"zz").unwrap(), None);
        // Nothing reached the base.
        assert_eq!(
            pairs(base.raw_entries()),
            ["a", "b", "c", "d", "e"].map(|k| kv(k, "base"))
        );
        o.flush().unwrap();
        assert_eq!(base.raw_entries().len(), 5);
    }

    #[test]
    fn scans_honour_bounds_and_limits_past_tombstones() {
        let (_, o) = mixed();
        let keys = |from: &[u8], to: &[u8], limit| -> Vec<String> {
            pairs(o.scan(from, to, limit).unwrap())
                .into_iter()
                .map(|(k, _)| k)
                .collect()
        };
        assert_eq!(keys(b"", b"\xff", 0), Vec::<String>::new());
        assert_eq!(keys(b"", b"\xff", 1), ["a"]);
        assert_eq!(keys(b"", b"\xff", 3), ["a", "b", "bb"]);
        // `c` is hidden: the limit counts only what is shown.
        assert_eq!(keys(b"bb", b"\xff", 2), ["bb", "d"]);
        assert_eq!(keys(b"c", b"e", 10), ["d"]);
        assert_eq!(keys(b"c", b"d", 10), Vec::<String>::new());
        assert_eq!(keys(b"e", b"z", 10), ["f"]);
        assert_eq!(keys(b"d", b"c", 10), Vec::<String>::new());
        // Every limit agrees with the full scan's prefix.
        let all = keys(b"", b"\xff", usize::MAX);
        for limit in 0..=all.len() + 1 {
            assert_eq!(keys(b"", b"\xff", limit), all[..limit.min(all.len())]);
        }
    }

    #[test]
    fn scans_fetch_more_of_the_base_when_tombstones_hide_a_chunk() {
        let base = MemoryStore::new();
        base.apply((0..100).map(|i| put(&format!("k{i:03}"), "base")).collect())
            .unwrap();
        let o = Overlay::new(base);
        o.apply((0..95).map(|i| del(&format!("k{i:03}"))).collect())
            .unwrap();
        let shown = pairs(o.scan(b"k", b"l", 3).unwrap());
        assert_eq!(
            shown,
            [kv("k095", "base"), kv("k096", "base"), kv("k097", "base")]
        );
    }

    #[test]
    fn last_skips_tombstones_on_either_layer() {
        let (_, o) = mixed();
        let last = |from: &[u8], to: &[u8]| o.last(from, to).unwrap().map(|e| pairs(vec![e]));
        assert_eq!(last(b"", b"\xff"), Some(vec![kv("f", "new")]));
        // `e` is deleted in the layer: the base's `d` is the last before `f`.
        assert_eq!(last(b"", b"f"), Some(vec![kv("d", "base")]));
        // `c` is deleted: below `d` the layer's `bb` wins.
        assert_eq!(last(b"", b"d"), Some(vec![kv("bb", "new")]));
        assert_eq!(last(b"", b"bb"), Some(vec![kv("b", "new")]));
        assert_eq!(last(b"", b"b"), Some(vec![kv("a", "again")]));
        assert_eq!(last(b"c", b"d"), None);
        assert_eq!(last(b"e", b"f"), None);
        assert_eq!(last(b"z", b"\xff"), None, "zz was put, then deleted");
        assert_eq!(last(b"f", b"a"), None);

        // Only tombstones over the whole base.
        let base = MemoryStore::new();
        base.apply(vec![put("a", "base"), put("b", "base")])
            .unwrap();
        let o = Overlay::new(base);
        o.apply(vec![del("a"), del("b")]).unwrap();
        assert_eq!(o.last(b"", b"\xff").unwrap(), None);
        assert!(o.scan(b"", b"\xff", 10).unwrap().is_empty());
        assert_eq!(o.written(), 2);
    }

    #[test]
    fn an_empty_layer_reads_exactly_as_the_base() {
        let base = MemoryStore::new();
        base.apply(vec![put("a", "1"), put("c", "3")]).unwrap();
        let o = Overlay::new(base.clone());
        assert_eq!(
            o.scan(b"", b"\xff", 10).unwrap(),
            base.scan(b"", b"\xff", 10).unwrap()
        );
        assert_eq!(
            o.last(b"", b"\xff").unwrap(),
            base.last(b"", b"\xff").unwrap()
        );
        assert_eq!(o.get(b"c").unwrap(), Some(b"3".to_vec()));
        assert_eq!(o.written(), 0);
    }
}
