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
//! The holder renews its keys every `ttl / 3`. A renewal that timed out
//! but landed later leaves the key with our value at a revision we did not
//! hear of: it is still ours. A key that expired while nobody fenced the
//! partition is taken again with the same fence (both read from the
//! leaders, as a follower may be behind); one fenced by another is lost.
//! So is one NATS has not renewed for a whole `ttl` (counted from when the
//! last acknowledged write was sent): cut off from NATS, the holder cannot
//! tell whether another server took it, nor append meanwhile, so it stops
//! claiming it (and the servers sharing the journal forward what it names
//! to whoever takes it next instead of to this one). Taking every
//! partition, one lost gives up every other (released at once, so the
//! server that took one takes them all), and the journal says so in its
//! health; sharing, only that one is lost.
//!
//! Owns the leases and the fences. It must never let an append through on
//! a fence it does not hold, nor take a partition another holds.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_nats::jetstream::kv::{self, CreateErrorKind, UpdateErrorKind};
use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use retrace_journal::{Error, Result, StorageError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::direct::remote;
use crate::names::Names;

/// How this server takes partitions.
#[derive(Debug, Clone)]
pub struct Ownership {
    /// This server's name, shown to another that finds a partition taken.
    pub node: String,
    /// Where other servers reach this one (its API's URL), kept in its
    /// leases next to its name; `None` when it is not reachable.
    pub url: Option<String>,
    /// How long a lease lasts unless renewed: how soon another server can
    /// take the partitions of one that died.
    pub ttl: Duration,
    /// Taking every partition: how long opening waits for partitions
    /// another server holds (one that was killed holds them for up to
    /// `ttl`); `Duration::MAX` waits until they are free. `retrace token
    /// --nats` waits briefly, then asks the server holding them.
    pub wait: Duration,
    /// Told, while opening waits, which server holds partition 0 (the one
    /// waited on first), for a caller that asks that server instead
    /// (`retrace token --nats`).
    pub holder: Option<watch::Sender<Option<Holder>>>,
    /// Take every partition (this process holds the whole journal, as
    /// `retrace token --nats` does for the while; the default), or this
    /// server's share of them among the servers sharing it (`retrace serve
    /// --nats`; see `share`): opening then takes what is free of its share
    /// at once and goes on taking and giving partitions up as servers come
    /// and go.
    pub share: bool,
}

impl Ownership {
    /// Leases of 3 s, waited for up to 10 s.
    pub fn new(node: impl Into<String>) -> Ownership {
        Ownership {
            node: node.into(),
            url: None,
            ttl: Duration::from_secs(3),
            wait: Duration::from_secs(10),
            holder: None,
            share: false,
        }
    }

    /// What this server's leases hold: its name, then its URL if it has one.
    pub(crate) fn value(&self) -> Bytes {
        match &self.url {
            Some(url) => Bytes::from(format!("{} {url}", self.node)),
            None => Bytes::from(self.node.clone()),
        }
    }
}

/// The server holding a partition, as its lease names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub node: String,
    /// Where it serves its API, if it said.
    pub url: Option<String>,
}

impl Holder {
    pub(crate) fn parse(value: &[u8]) -> Holder {
        let value = String::from_utf8_lossy(value);
        match value.split_once(' ') {
            Some((node, url)) => Holder {
                node: node.to_owned(),
                url: Some(url.to_owned()),
            },
            None => Holder {
                node: value.into_owned(),
                url: None,
            },
        }
    }
}

/// Which server holds each partition, as the leases bucket says, kept
/// current by a watch of the bucket (see `share`: a lease that ran out
/// unrenewed stays named until another server takes its partition, as NATS
/// tells no watcher when a key ages out).
pub(crate) type Holders = watch::Receiver<std::collections::BTreeMap<u32, Holder>>;

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.url {
            Some(url) => write!(f, "{} ({url})", self.node),
            None => f.write_str(&self.node),
        }
    }
}

/// One held partition.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Held {
    /// The lease key's revision, for the next renewal.
    revision: u64,
    /// The sequence of our fence message.
    fence: u64,
    /// When the last write of the key that NATS acknowledged was sent: the
    /// key lasts at least `ttl` from then (NATS counts from when it stored
    /// it, which is later).
    written: tokio::time::Instant,
}

/// The partitions this server holds, shared with the writer.
#[derive(Debug)]
pub(crate) struct Fences {
    held: Mutex<BTreeMap<u32, Held>>,
    /// The held partitions' numbers, for whoever watches them.
    partitions: watch::Sender<BTreeSet<u32>>,
    /// Why a partition was lost, if one was (taking every partition: losing
    /// one gives up all).
    lost: watch::Sender<Option<String>>,
}

impl Default for Fences {
    fn default() -> Fences {
        Fences {
            held: Mutex::new(BTreeMap::new()),
            partitions: watch::Sender::new(BTreeSet::new()),
            lost: watch::Sender::new(None),
        }
    }
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

    /// Appends to `partition` carry `held`'s fence from now on.
    pub fn hold(&self, partition: u32, held: Held) {
        lock(&self.held).insert(partition, held);
        self.partitions.send_modify(|p| {
            p.insert(partition);
        });
    }

    /// Appends to `partition` are refused from now on; what was held.
    pub fn forget(&self, partition: u32) -> Option<Held> {
        let held = lock(&self.held).remove(&partition);
        self.partitions.send_modify(|p| {
            p.remove(&partition);
        });
        held
    }

    /// Appends to every partition are refused from now on; what was held.
    pub fn forget_all(&self) -> Vec<(u32, Held)> {
        let held = std::mem::take(&mut *lock(&self.held));
        self.partitions.send_replace(BTreeSet::new());
        held.into_iter().collect()
    }

    /// Every held partition, and its lease.
    pub fn held(&self) -> Vec<(u32, Held)> {
        lock(&self.held).iter().map(|(p, h)| (*p, *h)).collect()
    }

    /// The held partitions' numbers, now and as they change.
    pub fn partitions(&self) -> watch::Receiver<BTreeSet<u32>> {
        self.partitions.subscribe()
    }

    /// Why a partition was lost, if one was.
    pub fn lost(&self) -> Option<String> {
        self.lost.borrow().clone()
    }

    /// Completes once a partition is lost; why.
    pub async fn until_lost(&self) -> String {
        let mut lost = self.lost.subscribe();
        match lost.wait_for(Option::is_some).await {
            Ok(why) => why.clone().unwrap_or_default(),
            // The sender lives as long as `self`.
            Err(_) => String::new(),
        }
    }
}

/// The leases of one server, and their renewal.
#[derive(Debug)]
pub(crate) struct Leases {
    pub fences: Arc<Fences>,
    bucket: kv::Store,
    /// Renews the leases (and, sharing, takes and gives partitions up).
    renewal: JoinHandle<()>,
    /// Sharing: the members bucket and this server's key in it.
    member: Option<(kv::Store, String)>,
    /// What this server's leases hold.
    value: Bytes,
    /// Sharing: who holds each partition, and the task that follows it.
    holders: Option<(Holders, JoinHandle<()>)>,
}

impl Drop for Leases {
    fn drop(&mut self) {
        self.renewal.abort();
        if let Some((_, task)) = &self.holders {
            task.abort();
        }
    }
}

pub(crate) fn key(partition: u32) -> String {
    format!("p{partition}")
}

/// Opens (or makes) the bucket `<PREFIX>_<what>` whose keys expire `ttl`
/// after they were last written.
pub(crate) async fn bucket(
    js: &jetstream::Context,
    names: &Names,
    what: &str,
    replicas: usize,
    ttl: Duration,
) -> Result<kv::Store> {
    let name = format!("{}_{what}", names.events.trim_end_matches("_EVENTS"));
    match js.get_key_value(name.clone()).await {
        Ok(bucket) => Ok(bucket),
        Err(_) => js
            .create_key_value(kv::Config {
                bucket: name.clone(),
                history: 1,
                max_age: ttl,
                storage: stream::StorageType::File,
                num_replicas: replicas,
                ..Default::default()
            })
            .await
            .map_err(|e| remote(format!("cannot open bucket {name}"), e)),
    }
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
    let bucket = bucket(js, names, "LEASES", replicas, ownership.ttl).await?;
    let fences = Arc::new(Fences::default());
    let deadline = tokio::time::Instant::now().checked_add(ownership.wait);
    let wait = Wait {
        js,
        bucket: &bucket,
        names,
        ownership,
        deadline,
    };
    // Every server takes partition 0 first, and only the one that has it
    // takes the others: two never each hold a part. The others are then
    // free, or about to be (a dead holder's leases end together), and are
    // taken side by side; what is held is renewed from the first.
    let first = wait.take(0, ownership.holder.as_ref()).await?;
    fences.hold(0, first);
    let renewal = tokio::spawn(renew(
        bucket.clone(),
        stream.clone(),
        names.clone(),
        ownership.clone(),
        fences.clone(),
    ));
    let rest = (1..names.partitions).map(|partition| {
        let fences = fences.clone();
        let wait = &wait;
        async move {
            let held = wait.take(partition, None).await?;
            fences.hold(partition, held);
            Ok::<(), Error>(())
        }
    });
    if let Err(e) = futures::future::try_join_all(rest).await {
        renewal.abort();
        return Err(e);
    }
    Ok(Leases {
        fences,
        bucket,
        renewal,
        member: None,
        value: ownership.value(),
        holders: None,
    })
}

/// How opening waits for partitions another server holds.
struct Wait<'a> {
    js: &'a jetstream::Context,
    bucket: &'a kv::Store,
    names: &'a Names,
    ownership: &'a Ownership,
    /// `None`: for as long as it takes.
    deadline: Option<tokio::time::Instant>,
}

impl Wait<'_> {
    /// Takes `partition`, waiting while another server holds it (telling
    /// `tell` who does) or NATS does not answer, until the deadline.
    async fn take(
        &self,
        partition: u32,
        tell: Option<&watch::Sender<Option<Holder>>>,
    ) -> Result<Held> {
        let mut told: Option<Holder> = None;
        loop {
            let waiting = self
                .deadline
                .is_none_or(|d| tokio::time::Instant::now() < d);
            let value = self.ownership.value();
            let taken = match take(self.js, self.bucket, self.names, partition, &value).await {
                Ok(taken) => taken,
                // NATS not answering yet (a cluster electing its leaders):
                // a server waiting for the journal keeps trying.
                Err(e) if waiting => {
                    tracing::debug!(partition, error = %e, "cannot take a partition yet");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            match taken {
                Ok(held) => return Ok(held),
                Err(holder) if waiting => {
                    if told.as_ref() != Some(&holder) {
                        // Said once, for partition 0 (the one waited on).
                        // Told first, then said: once the line is out,
                        // the waiting command knows whom to ask instead.
                        if let Some(tell) = tell {
                            tell.send_replace(Some(holder.clone()));
                            tracing::info!(partition, %holder, wait = ?self.ownership.wait,
                                "the journal's partitions are held by another server; waiting for them");
                        }
                        told = Some(holder);
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(holder) => {
                    return Err(Error::Storage(StorageError::Other(format!(
                        "partition {partition} of the journal {} is held by {holder}: another retrace \
                         server is running on this journal (one that stopped frees it within {:?})",
                        self.names.events, self.ownership.ttl
                    ))));
                }
            }
        }
    }
}

/// Takes one partition: its lease (holding `value`), then a fence.
/// `Ok(Err(holder))` when another server holds it.
pub(crate) async fn take(
    js: &jetstream::Context,
    bucket: &kv::Store,
    names: &Names,
    partition: u32,
    value: &Bytes,
) -> Result<std::result::Result<Held, Holder>> {
    let written = tokio::time::Instant::now();
    match bucket.create(key(partition), value.clone()).await {
        Ok(revision) => {
            let fence = js
                .publish(names.fence(partition), value.clone())
                .await
                .map_err(|e| remote("cannot fence a partition on NATS", e))?
                .await
                .map_err(|e| remote("cannot fence a partition on NATS", e))?
                .sequence;
            Ok(Ok(Held {
                revision,
                fence,
                written,
            }))
        }
        Err(e) if e.kind() == CreateErrorKind::AlreadyExists => {
            let holder = bucket.get(key(partition)).await.ok().flatten().map_or_else(
                || Holder {
                    node: "another server".to_owned(),
                    url: None,
                },
                |v| Holder::parse(&v),
            );
            Ok(Err(holder))
        }
        Err(e) => Err(remote("cannot take a partition's lease on NATS", e)),
    }
}

/// Renews every held lease every `ttl / 3`, all at once, until aborted.
/// A partition lost (taken by another server, or expired and fenced by
/// one) gives every other up too: holding part of a journal serves
/// nobody, and the server that took one takes the rest at once.
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
        let lost = renew_held(&bucket, &stream, &names, &ownership, &fences).await;
        if let Some((partition, why)) = lost.first() {
            let why = format!("partition {partition} {why}; appends are refused");
            tracing::error!(partition, "{why}; giving up every partition");
            let rest = fences.forget_all();
            fences.lost.send_replace(Some(why));
            give_up(&bucket, rest, &ownership.value()).await;
            return;
        }
    }
}

/// Renews every held lease once, all at once; the partitions found lost,
/// each with why (no longer held: appends to them are refused from now
/// on). A lease NATS has not renewed for `ttl` is lost too: it may have
/// ended, and another server may hold the partition (this one cannot tell
/// while NATS does not answer it; it could not append anyway).
pub(crate) async fn renew_held(
    bucket: &kv::Store,
    stream: &stream::Stream,
    names: &Names,
    ownership: &Ownership,
    fences: &Fences,
) -> Vec<(u32, &'static str)> {
    let held = fences.held();
    let value = ownership.value();
    let sent = tokio::time::Instant::now();
    let renewals = held
        .iter()
        .map(|(partition, h)| renew_one(bucket, stream, names, *partition, *h, value.clone()));
    // Not waited for past the first lease's end: NATS not answering would
    // otherwise keep a lease that ended claimed for a request's timeout.
    let ends = held.iter().map(|(_, h)| h.written + ownership.ttl).min();
    let outcomes = match ends {
        Some(ends) => tokio::time::timeout_at(ends, futures::future::join_all(renewals))
            .await
            .unwrap_or_else(|_| held.iter().map(|_| Renewal::Unreachable).collect()),
        None => Vec::new(),
    };
    let mut lost = Vec::new();
    for ((partition, h), outcome) in held.iter().zip(outcomes) {
        let why = match outcome {
            Renewal::Renewed(revision) => {
                if let Some(held) = lock(&fences.held).get_mut(partition) {
                    held.revision = revision;
                    held.written = sent;
                }
                continue;
            }
            Renewal::Unreachable if h.written + ownership.ttl > tokio::time::Instant::now() => {
                continue;
            }
            Renewal::Unreachable => "was not renewed for its whole lease (NATS did not answer)",
            Renewal::Lost => "was taken by another retrace server",
        };
        fences.forget(*partition);
        lost.push((*partition, why));
    }
    lost
}

enum Renewal {
    Renewed(u64),
    /// NATS did not answer: try again next round (the fence still holds).
    Unreachable,
    Lost,
}

async fn renew_one(
    bucket: &kv::Store,
    stream: &stream::Stream,
    names: &Names,
    partition: u32,
    h: Held,
    value: Bytes,
) -> Renewal {
    match bucket
        .update(key(partition), value.clone(), h.revision)
        .await
    {
        Ok(revision) => Renewal::Renewed(revision),
        Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => {
            // A renewal of ours that timed out may have landed after all
            // (NATS answering late): the key then holds our value, written
            // over our own revision, so nobody took it in between. Asked of
            // the bucket's leader: a follower may still show what expired.
            let subject = format!("{}{}", bucket.prefix, key(partition));
            match bucket
                .stream
                .get_last_raw_message_by_subject(&subject)
                .await
            {
                Ok(last) if !removed(&last.headers) => {
                    return if last.payload == value {
                        Renewal::Renewed(last.sequence)
                    } else {
                        Renewal::Lost
                    };
                }
                Ok(_) => {}
                Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => {}
                Err(_) => return Renewal::Unreachable,
            }
            // Expired: ours again only if nobody fenced it since (asked of
            // the stream's leader too).
            let fenced = stream
                .get_last_raw_message_by_subject(&names.fence(partition))
                .await
                .map(|m| m.sequence);
            match fenced {
                Ok(last) if last == h.fence => match bucket.create(key(partition), value).await {
                    Ok(revision) => Renewal::Renewed(revision),
                    Err(e) if e.kind() == CreateErrorKind::AlreadyExists => Renewal::Lost,
                    Err(_) => Renewal::Unreachable,
                },
                Ok(_) => Renewal::Lost,
                Err(_) => Renewal::Unreachable,
            }
        }
        Err(_) => Renewal::Unreachable,
    }
}

/// Whether a key's last message is a delete or a purge marker.
fn removed(headers: &async_nats::HeaderMap) -> bool {
    headers
        .get("KV-Operation")
        .is_some_and(|op| op.as_str() == "DEL" || op.as_str() == "PURGE")
}

/// Deletes the keys of `held`, each only if still ours.
///
/// A renewal that timed out may have landed after all, leaving the key with
/// our value at a revision we did not hear of: then that revision is read
/// (from the bucket's leader) and deleted, or the partition would stay
/// taken by nobody until the key ends.
pub(crate) async fn give_up(bucket: &kv::Store, held: Vec<(u32, Held)>, value: &Bytes) {
    let deletes = held.into_iter().map(|(partition, h)| async move {
        let mut revision = h.revision;
        let mut tries = 0;
        loop {
            tries += 1;
            let Err(e) = bucket
                .delete_expect_revision(key(partition), Some(revision))
                .await
            else {
                return;
            };
            let subject = format!("{}{}", bucket.prefix, key(partition));
            match bucket
                .stream
                .get_last_raw_message_by_subject(&subject)
                .await
            {
                Ok(last)
                    if tries < 3
                        && !removed(&last.headers)
                        && last.payload == *value
                        && last.sequence != revision =>
                {
                    revision = last.sequence;
                }
                // Another's now, or gone: nothing of ours to delete.
                Ok(_) => return,
                Err(e2) if e2.kind() == stream::LastRawMessageErrorKind::NoMessageFound => return,
                Err(_) => {
                    tracing::warn!(partition, error = %e, "cannot release a partition's lease; it ends by itself");
                    return;
                }
            }
        }
    });
    futures::future::join_all(deletes).await;
}

impl Leases {
    /// The leases of a server sharing the journal, `member` being its key
    /// in the members bucket.
    pub(crate) fn shared(
        fences: Arc<Fences>,
        bucket: kv::Store,
        renewal: JoinHandle<()>,
        member: (kv::Store, String),
        value: Bytes,
        holders: (Holders, JoinHandle<()>),
    ) -> Leases {
        Leases {
            fences,
            bucket,
            renewal,
            member: Some(member),
            value,
            holders: Some(holders),
        }
    }

    /// Sharing: who holds each partition, as the leases say.
    pub fn holders(&self) -> Option<Holders> {
        self.holders.as_ref().map(|(holders, _)| holders.clone())
    }

    /// Gives every partition up at once (a graceful stop), so another
    /// server takes them without waiting for the leases to end.
    pub async fn release(&self) {
        self.renewal.abort();
        // Sharing: leaving first, so the others count without this server
        // at their next round and take what it gives up.
        if let Some((members, key)) = &self.member
            && let Err(e) = members.delete(key).await
        {
            tracing::warn!(error = %e, "cannot leave the servers sharing the journal; it ends by itself");
        }
        give_up(&self.bucket, self.fences.forget_all(), &self.value).await;
    }
}
