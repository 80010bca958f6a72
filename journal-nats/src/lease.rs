//! Ownership of partitions: which retrace server may append to a
//! partition's streams, and the fence that makes the NATS server refuse
//! appends from any other.
//!
//! A lease is a key per partition in the bucket `<PREFIX>_LEASES`, whose
//! entries expire `ttl` after they were last written (the bucket's
//! `max_age`, kept by the NATS server, so no two machines' clocks are
//! compared). Taking a partition is creating its key (refused while
//! another holds it), then publishing a fence message on
//! `<prefix>.fence.<partition>` in the events stream. Every append to the
//! partition is conditional on the fence subject's last sequence being
//! that fence (`Nats-Expected-Last-Subject-Sequence-Subject`), so once
//! another server has taken the partition (and fenced it), whatever the old
//! holder still sends is refused by the NATS server itself, however late
//! it arrives: a paused process that wakes up cannot write.
//!
//! The holder renews its keys every `ttl / 3`. A key that expired while
//! nobody fenced the partition (NATS unreachable for a while) is taken
//! again with the same fence; one fenced by another is lost, and the
//! journal says so in its health.
//!
//! Owns the leases and the fences. It must never let an append through on
//! a fence it does not hold, nor take a partition another holds.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_nats::jetstream::kv::{self, CreateErrorKind, UpdateErrorKind};
use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use retrace_journal::{Error, Result, StorageError};
use tokio::task::JoinHandle;

use crate::direct::remote;
use crate::names::Names;

/// How this server takes partitions.
#[derive(Debug, Clone)]
pub struct Ownership {
    /// This server's name, shown to another that finds a partition taken.
    pub node: String,
    /// How long a lease lasts unless renewed: how soon another server can
    /// take the partitions of one that died.
    pub ttl: Duration,
    /// How long opening waits for partitions another server holds (one that
    /// was killed holds them for up to `ttl`).
    pub wait: Duration,
}

impl Ownership {
    /// Leases of 3 s, waited for up to 10 s.
    pub fn new(node: impl Into<String>) -> Ownership {
        Ownership {
            node: node.into(),
            ttl: Duration::from_secs(3),
            wait: Duration::from_secs(10),
        }
    }
}

/// One held partition.
#[derive(Debug, Clone, Copy)]
struct Held {
    /// The lease key's revision, for the next renewal.
    revision: u64,
    /// The sequence of our fence message.
    fence: u64,
}

/// The partitions this server holds, shared with the writer.
#[derive(Debug, Default)]
pub(crate) struct Fences {
    held: Mutex<BTreeMap<u32, Held>>,
    /// Why a partition was lost, if one was.
    lost: Mutex<Option<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Fences {
    /// The fence an append to `partition` must carry, or `None` if this
    /// server does not hold it.
    pub fn fence(&self, partition: u32) -> Option<u64> {
        lock(&self.held).get(&partition).map(|h| h.fence)
    }

    /// Why a partition was lost, if one was.
    pub fn lost(&self) -> Option<String> {
        lock(&self.lost).clone()
    }
}

/// The leases of one server, and their renewal.
#[derive(Debug)]
pub(crate) struct Leases {
    pub fences: Arc<Fences>,
    bucket: kv::Store,
    renewal: JoinHandle<()>,
}

impl Drop for Leases {
    fn drop(&mut self) {
        self.renewal.abort();
    }
}

fn key(partition: u32) -> String {
    format!("p{partition}")
}

/// Opens the leases bucket and takes every partition, waiting up to
/// `ownership.wait` for those another server holds; then renews them.
pub(crate) async fn take_all(
    js: &jetstream::Context,
    stream: &stream::Stream,
    names: &Names,
    replicas: usize,
    ownership: &Ownership,
) -> Result<Leases> {
    let bucket_name = format!("{}_LEASES", names.events.trim_end_matches("_EVENTS"));
    let bucket = match js.get_key_value(bucket_name.clone()).await {
        Ok(bucket) => bucket,
        Err(_) => js
            .create_key_value(kv::Config {
                bucket: bucket_name.clone(),
                history: 1,
                max_age: ownership.ttl,
                storage: stream::StorageType::File,
                num_replicas: replicas,
                ..Default::default()
            })
            .await
            .map_err(|e| remote(format!("cannot open bucket {bucket_name}"), e))?,
    };
    let fences = Arc::new(Fences::default());
    let deadline = tokio::time::Instant::now() + ownership.wait;
    let mut told = false;
    for partition in 0..names.partitions {
        let held = loop {
            match take(js, &bucket, names, partition, &ownership.node).await? {
                Ok(held) => break held,
                Err(holder) if tokio::time::Instant::now() < deadline => {
                    if !told {
                        told = true;
                        tracing::info!(partition, holder, wait = ?ownership.wait,
                            "the journal's partitions are held by another server; waiting for them");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(holder) => {
                    return Err(Error::Storage(StorageError::Other(format!(
                        "partition {partition} of the journal {} is held by {holder}: another retrace \
                         server is running on this journal (one that stopped frees it within {:?})",
                        names.events, ownership.ttl
                    ))));
                }
            }
        };
        lock(&fences.held).insert(partition, held);
    }
    let renewal = tokio::spawn(renew(
        bucket.clone(),
        stream.clone(),
        names.clone(),
        ownership.clone(),
        fences.clone(),
    ));
    Ok(Leases {
        fences,
        bucket,
        renewal,
    })
}

/// Takes one partition: its lease, then a fence. `Ok(Err(holder))` when
/// another server holds it.
async fn take(
    js: &jetstream::Context,
    bucket: &kv::Store,
    names: &Names,
    partition: u32,
    node: &str,
) -> Result<std::result::Result<Held, String>> {
    match bucket
        .create(key(partition), Bytes::from(node.to_owned()))
        .await
    {
        Ok(revision) => {
            let fence = js
                .publish(names.fence(partition), Bytes::from(node.to_owned()))
                .await
                .map_err(|e| remote("cannot fence a partition on NATS", e))?
                .await
                .map_err(|e| remote("cannot fence a partition on NATS", e))?
                .sequence;
            Ok(Ok(Held { revision, fence }))
        }
        Err(e) if e.kind() == CreateErrorKind::AlreadyExists => {
            let holder = bucket.get(key(partition)).await.ok().flatten().map_or_else(
                || "another server".to_owned(),
                |v| String::from_utf8_lossy(&v).into_owned(),
            );
            Ok(Err(holder))
        }
        Err(e) => Err(remote("cannot take a partition's lease on NATS", e)),
    }
}

/// Renews every held lease every `ttl / 3`, until aborted.
async fn renew(
    bucket: kv::Store,
    stream: stream::Stream,
    names: Names,
    ownership: Ownership,
    fences: Arc<Fences>,
) {
    let every = ownership.ttl / 3;
    loop {
        tokio::time::sleep(every).await;
        let held: Vec<(u32, Held)> = lock(&fences.held).iter().map(|(p, h)| (*p, *h)).collect();
        for (partition, h) in held {
            let value = Bytes::from(ownership.node.clone());
            let renewed = match bucket
                .update(key(partition), value.clone(), h.revision)
                .await
            {
                Ok(revision) => Some(revision),
                Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => {
                    // Expired (or taken): ours again only if nobody fenced it since.
                    let fenced = stream
                        .direct_get_last_for_subject(names.fence(partition))
                        .await
                        .map(|m| m.sequence);
                    match fenced {
                        Ok(last) if last == h.fence => {
                            bucket.create(key(partition), value).await.ok()
                        }
                        _ => None,
                    }
                }
                // NATS unreachable: try again next round (the fence still holds).
                Err(_) => continue,
            };
            match renewed {
                Some(revision) => {
                    if let Some(held) = lock(&fences.held).get_mut(&partition) {
                        held.revision = revision;
                    }
                }
                None => {
                    lock(&fences.held).remove(&partition);
                    let why = format!(
                        "partition {partition} was taken by another retrace server; appends to it are refused"
                    );
                    tracing::error!(partition, "{why}");
                    *lock(&fences.lost) = Some(why);
                }
            }
        }
    }
}

impl Leases {
    /// Gives every partition up at once (a graceful stop), so another
    /// server takes them without waiting for the leases to end.
    pub async fn release(&self) {
        self.renewal.abort();
        let held: Vec<(u32, Held)> = std::mem::take(&mut *lock(&self.fences.held))
            .into_iter()
            .collect();
        for (partition, h) in held {
            if let Err(e) = self
                .bucket
                .delete_expect_revision(key(partition), Some(h.revision))
                .await
            {
                tracing::warn!(partition, error = %e, "cannot release a partition's lease; it ends by itself");
            }
        }
    }
}
