//! Sharing a journal's partitions among the servers on it, each holding
//! the partitions that rank it first.
//!
//! Every sharing server keeps a member key in the bucket
//! `<PREFIX>_MEMBERS` (holding its name and URL, like its leases), which
//! expires `ttl` after it was last written. Each round (every `ttl / 3`)
//! a server renews its leases and its member key and lists the members;
//! it lists them once more half-way through a round, so a member that
//! died (its key ended with its leases) is noticed sooner.
//! A partition prefers the member whose hash of (its name, the partition)
//! is highest (rendezvous hashing), so a server joining or leaving moves
//! only the partitions that rank it first, about one in N. A server takes
//! the free partitions that prefer it (trying again every 100 ms while one
//! is missing: its holder may be giving it up, or its lease running out)
//! and gives up those it holds that prefer another member, which takes
//! them in its next try.
//!
//! Taking and renewing are the leases and fences of `lease`, so two
//! servers never append to one partition, whatever each thinks of the
//! members: a partition is taken only once its lease is free, and whatever
//! its old holder still sends is refused by its fence. A partition found
//! lost at a renewal (expired and taken while this server was cut off) is
//! given up alone.
//!
//! Owns the members bucket and which partitions a server wants. It must
//! never take a partition another holds (the lease decides), nor give up
//! one that prefers this server.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use retrace_journal::Result;

use crate::direct::remote;
use crate::lease::{self, Fences, Held, Holder, Holders, Leases, Ownership};
use crate::names::Names;
use crate::patience::patiently;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How often a missing partition of this server's share is tried again.
const RETRY: Duration = Duration::from_millis(100);

/// How long opening waits for NATS to answer (a cluster electing leaders
/// after one of its servers died takes a few seconds).
const OPEN_PATIENCE: Duration = Duration::from_secs(30);

/// Done once a partition is taken and before its fence is handed to the
/// writer (what is cached of its streams is read again: another server
/// appended to them); an error gives it up again.
pub(crate) type Gained = Arc<dyn Fn(u32) -> BoxFuture<'static, Result<()>> + Send + Sync>;

/// Opens the members and leases buckets, takes what is free of this
/// server's share at once, and goes on sharing until the leases are
/// dropped or released.
pub(crate) async fn share(
    js: &jetstream::Context,
    stream: &stream::Stream,
    names: &Names,
    replicas: usize,
    ownership: &Ownership,
    gained: Gained,
) -> Result<Leases> {
    // Nothing is held until `join`: each step may be tried again.
    let deadline = tokio::time::Instant::now() + OPEN_PATIENCE;
    let leases = patiently(deadline, || {
        lease::bucket(js, names, "LEASES", replicas, ownership.ttl)
    })
    .await?;
    let members = patiently(deadline, || {
        lease::bucket(js, names, "MEMBERS", replicas, ownership.ttl)
    })
    .await?;
    let sharing = Sharing {
        js: js.clone(),
        stream: stream.clone(),
        names: names.clone(),
        ownership: ownership.clone(),
        leases: leases.clone(),
        members,
        fences: Arc::new(Fences::default()),
        gained,
    };
    let mut wanted = patiently(deadline, || sharing.join()).await?;
    sharing.settle(&wanted).await;
    let fences = sharing.fences.clone();
    let member = (sharing.members.clone(), member_key(&sharing.ownership.node));
    let renewal = tokio::spawn(async move {
        let every = sharing.ownership.ttl / 3;
        let mut next = tokio::time::Instant::now() + every;
        // The members are listed twice a round: a server that died is
        // noticed (and its partitions taken) half a round sooner.
        let listing = every / 2;
        let mut next_listing = tokio::time::Instant::now() + listing;
        loop {
            let missing = wanted.iter().any(|p| sharing.fences.fence(*p).is_none());
            let wake = next.min(next_listing);
            if missing {
                tokio::time::sleep_until(wake.min(tokio::time::Instant::now() + RETRY)).await;
            } else {
                tokio::time::sleep_until(wake).await;
            }
            let now = tokio::time::Instant::now();
            let renewing = now >= next;
            if renewing {
                next = now + every;
                let lost = lease::renew_held(
                    &sharing.leases,
                    &sharing.stream,
                    &sharing.names,
                    &sharing.ownership,
                    &sharing.fences,
                )
                .await;
                for (partition, why) in lost {
                    tracing::warn!(partition, "a partition {why}; appends to it are refused");
                }
            }
            if renewing || now >= next_listing {
                next_listing = now + listing;
                // The member key is written with the leases, so it ends
                // when they do.
                let members = match renewing {
                    true => sharing.join().await,
                    false => sharing.wanted().await,
                };
                match members {
                    Ok(now) => wanted = now,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot list the servers sharing the journal")
                    }
                }
            }
            sharing.settle(&wanted).await;
        }
    });
    let value = ownership.value();
    let holders = follow_holders(leases.clone());
    Ok(Leases::shared(
        fences, leases, renewal, member, value, holders,
    ))
}

/// Follows the leases bucket into [`Holders`]; the task ends with its
/// owner's abort.
fn follow_holders(bucket: kv::Store) -> (Holders, JoinHandle<()>) {
    let (tell, holders) = watch::channel(BTreeMap::new());
    let task = tokio::spawn(async move {
        loop {
            match bucket.watch_with_history(">").await {
                Ok(mut entries) => {
                    while let Some(entry) = entries.next().await {
                        let Ok(entry) = entry else { break };
                        let Some(partition) = entry
                            .key
                            .strip_prefix('p')
                            .and_then(|p| p.parse::<u32>().ok())
                        else {
                            continue;
                        };
                        tell.send_modify(|holders| match entry.operation {
                            kv::Operation::Put => {
                                holders.insert(partition, Holder::parse(&entry.value));
                            }
                            kv::Operation::Delete | kv::Operation::Purge => {
                                holders.remove(&partition);
                            }
                        });
                    }
                }
                Err(e) => tracing::debug!(error = %e, "cannot watch the leases bucket"),
            }
            tokio::time::sleep(RETRY * 10).await;
        }
    });
    (holders, task)
}

/// What one sharing server works with.
struct Sharing {
    js: jetstream::Context,
    stream: stream::Stream,
    names: Names,
    ownership: Ownership,
    leases: kv::Store,
    members: kv::Store,
    fences: Arc<Fences>,
    gained: Gained,
}

impl Sharing {
    /// Writes this server's member key and lists the members; the
    /// partitions that prefer this server among them.
    async fn join(&self) -> Result<BTreeSet<u32>> {
        let me = self.ownership.value();
        self.members
            .put(member_key(&self.ownership.node), me)
            .await
            .map_err(|e| remote("cannot write this server's member key on NATS", e))?;
        self.wanted().await
    }

    /// The partitions that prefer this server among the members listed now.
    async fn wanted(&self) -> Result<BTreeSet<u32>> {
        let keys: Vec<String> = self
            .members
            .keys()
            .await
            .map_err(|e| remote("cannot list the servers sharing the journal", e))?
            .try_collect()
            .await
            .map_err(|e| remote("cannot list the servers sharing the journal", e))?;
        let mut nodes: Vec<String> = keys.iter().filter_map(|k| node_of(k)).collect();
        if !nodes.contains(&self.ownership.node) {
            nodes.push(self.ownership.node.clone());
        }
        Ok(preferring(
            &self.ownership.node,
            &nodes,
            self.names.partitions,
        ))
    }

    /// Gives up the held partitions that prefer another server, then takes
    /// the free ones of `wanted`.
    async fn settle(&self, wanted: &BTreeSet<u32>) {
        let held = self.fences.held();
        let unwanted: Vec<(u32, Held)> = held
            .iter()
            .filter(|(p, _)| !wanted.contains(p))
            .filter_map(|(p, _)| self.fences.forget(*p).map(|h| (*p, h)))
            .collect();
        if !unwanted.is_empty() {
            tracing::info!(
                partitions = ?unwanted.iter().map(|(p, _)| *p).collect::<Vec<_>>(),
                "giving partitions up to the servers they prefer"
            );
            lease::give_up(&self.leases, unwanted, &self.ownership.value()).await;
        }
        let missing: Vec<u32> = wanted
            .iter()
            .copied()
            .filter(|p| self.fences.fence(*p).is_none())
            .collect();
        let value = self.ownership.value();
        let takes = missing.iter().map(|partition| {
            let value = value.clone();
            async move {
                let taken =
                    lease::take(&self.js, &self.leases, &self.names, *partition, &value).await;
                (*partition, taken)
            }
        });
        for (partition, taken) in futures::future::join_all(takes).await {
            match taken {
                Ok(Ok(held)) => match (self.gained)(partition).await {
                    Ok(()) => self.fences.hold(partition, held),
                    Err(e) => {
                        tracing::warn!(partition, error = %e, "cannot read a partition taken; giving it up");
                        lease::give_up(&self.leases, vec![(partition, held)], &value).await;
                    }
                },
                Ok(Err(holder)) => {
                    tracing::debug!(partition, %holder, "a partition of this server's share is still held");
                }
                Err(e) => tracing::debug!(partition, error = %e, "cannot take a partition yet"),
            }
        }
    }
}

/// The member key of a server: its name in hex (key names allow few
/// characters).
fn member_key(node: &str) -> String {
    node.bytes().map(|b| format!("{b:02x}")).collect()
}

/// The server a member key names.
fn node_of(key: &str) -> Option<String> {
    if !key.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..key.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(key.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

/// The partitions (of `partitions`) that prefer `me` among `nodes`.
pub(crate) fn preferring(me: &str, nodes: &[String], partitions: u32) -> BTreeSet<u32> {
    (0..partitions)
        .filter(|p| preferred(nodes, *p).is_some_and(|n| n == me))
        .collect()
}

/// The server among `nodes` (their names) that `partition` prefers: the
/// highest hash of (name, partition), ties to the lower name. Settled,
/// it is the one holding the partition.
pub fn preferred(nodes: &[String], partition: u32) -> Option<&str> {
    nodes
        .iter()
        .map(|n| (rank(n, partition), std::cmp::Reverse(n.as_str())))
        .max()
        .map(|(_, std::cmp::Reverse(n))| n)
}

fn rank(node: &str, partition: u32) -> u64 {
    let mut hasher = blake3::Hasher::new();
    hasher.update(node.as_bytes());
    hasher.update(&partition.to_le_bytes());
    let hash = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash.as_bytes()[..8]);
    u64::from_le_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("node-{i}")).collect()
    }

    #[test]
    fn every_partition_prefers_exactly_one_member() {
        for n in 1..6 {
            let nodes = nodes(n);
            let mut seen = BTreeSet::new();
            for node in &nodes {
                let mine = preferring(node, &nodes, 64);
                assert!(mine.is_disjoint(&seen), "{n} members: a partition twice");
                seen.extend(mine);
            }
            assert_eq!(seen, (0..64).collect(), "{n} members: a partition nobody's");
        }
    }

    #[test]
    fn a_member_leaving_moves_only_its_own_partitions() {
        let three = nodes(3);
        let two = nodes(2);
        for node in &two {
            let before = preferring(node, &three, 64);
            let after = preferring(node, &two, 64);
            assert!(before.is_subset(&after), "{node} lost a partition it had");
        }
        // Shares are near even (rendezvous hashing: each about 64 / 3).
        for node in &three {
            let share = preferring(node, &three, 64).len();
            assert!((10..=32).contains(&share), "{node}: {share} of 64");
        }
    }

    #[test]
    fn member_keys_name_their_server() {
        for node in ["a", "host-1:8080", "ünï"] {
            assert_eq!(node_of(&member_key(node)).as_deref(), Some(node));
        }
        assert_eq!(node_of("abc"), None);
        assert_eq!(node_of("zz"), None);
    }
}
