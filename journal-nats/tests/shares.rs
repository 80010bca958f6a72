//! Servers sharing one journal's partitions, against a real `nats-server`:
//! their shares never overlap and together cover every partition; each
//! appends only to its own; a server that leaves (gracefully or by dying)
//! has its partitions taken by the others, one that joins takes its share
//! from them; and a server taking a partition appends after what its old
//! holder wrote, whatever it had read of it before.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use retrace_journal::{Journal, NewEvent, StreamId};
use retrace_journal_nats::server::NatsServer;
use retrace_journal_nats::{NatsJournal, NatsOptions, Ownership, PARTITIONS_DEFAULT};

const TTL: Duration = Duration::from_secs(2);

/// How long a change of members may take to settle before the test fails
/// (a dead server's leases end after `TTL`; the rest is rounds).
const SETTLE: Duration = Duration::from_secs(20);

async fn sharing(server: &NatsServer, node: &str) -> NatsJournal {
    NatsJournal::open(NatsOptions {
        ownership: Some(Ownership {
            ttl: TTL,
            share: true,
            ..Ownership::new(node)
        }),
        ..NatsOptions::new(server.url())
    })
    .await
    .expect("a sharing server opens the journal")
}

fn every_partition() -> BTreeSet<u32> {
    (0..PARTITIONS_DEFAULT).collect()
}

/// Waits until the journals' shares are disjoint, non-empty and cover every
/// partition; how long that took. Panics after `SETTLE`.
async fn settled(journals: &[&NatsJournal]) -> Duration {
    let started = Instant::now();
    let mut watches: Vec<_> = journals.iter().map(|j| j.partitions()).collect();
    let done = tokio::time::timeout(SETTLE, async {
        loop {
            let shares: Vec<BTreeSet<u32>> = watches
                .iter_mut()
                .map(|w| w.borrow_and_update().clone())
                .collect();
            let total: usize = shares.iter().map(BTreeSet::len).sum();
            let union: BTreeSet<u32> = shares.iter().flatten().copied().collect();
            if union == every_partition()
                && total == union.len()
                && shares.iter().all(|s| !s.is_empty())
            {
                return;
            }
            let changes = watches.iter_mut().map(|w| Box::pin(w.changed()));
            let _ = futures::future::select_all(changes).await;
        }
    })
    .await;
    let shares: Vec<usize> = watches.iter().map(|w| w.borrow().len()).collect();
    assert!(
        done.is_ok(),
        "shares did not settle within {SETTLE:?}: {shares:?}"
    );
    started.elapsed()
}

/// A stream id in `partition`.
fn stream_in(journal: &NatsJournal, partition: u32) -> StreamId {
    (0u32..)
        .map(|i| {
            let mut bytes = [7u8; 16];
            bytes[..4].copy_from_slice(&i.to_le_bytes());
            StreamId::from_bytes(bytes)
        })
        .find(|id| journal.partition_of(*id) == partition)
        .expect("some id falls in every partition")
}

fn event(n: u64) -> Vec<NewEvent> {
    vec![NewEvent::new("k", n, vec![])]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_share_the_partitions_and_take_over_those_of_one_that_leaves() {
    let server = NatsServer::start();
    let a = sharing(&server, "node-a").await;
    let b = sharing(&server, "node-b").await;
    let c = sharing(&server, "node-c").await;
    let took = settled(&[&a, &b, &c]).await;
    eprintln!(
        "three servers share the journal {took:?} after the last opened: {} / {} / {}",
        a.partitions().borrow().len(),
        b.partitions().borrow().len(),
        c.partitions().borrow().len()
    );

    // Each appends to its own partitions only; a refused append stores
    // nothing.
    let of_c = *c.partitions().borrow().first().expect("c holds some");
    let x = stream_in(&c, of_c);
    c.append(x, 1, event(1))
        .await
        .expect("c appends to its own");
    let refused = a.append(x, 2, event(2)).await;
    assert!(refused.is_err(), "a appended to a partition of c's");
    // Both others read it (and know its head at 1), then c appends again.
    assert_eq!(a.read(x, 1, 10).await.expect("a reads").len(), 1);
    assert_eq!(b.read(x, 1, 10).await.expect("b reads").len(), 1);
    c.append(x, 2, event(2)).await.expect("c appends again");
    // What c appended since is read by the others (their cached heads of
    // c's streams are not taken for the latest).
    for other in [&a, &b] {
        let next = other.read(x, 2, 10).await.expect("read on");
        assert_eq!(next.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![2]);
        let head = other.head(x).await.expect("a head").expect("x exists");
        assert_eq!(head.last_seq, 2);
    }

    // c leaves gracefully: a and b take its partitions; whichever took
    // x's appends after what c wrote, not after what it had read.
    c.release().await;
    let took = settled(&[&a, &b]).await;
    eprintln!("a graceful leave: its partitions taken {took:?} later");
    let heir = if a.partitions().borrow().contains(&of_c) {
        &a
    } else {
        &b
    };
    heir.append(x, 3, event(3))
        .await
        .expect("the new holder appends the next event");
    let read = a.read(x, 1, 10).await.expect("the chain reads back");
    assert_eq!(
        read.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert!(c.append(x, 4, event(4)).await.is_err(), "c let it go");

    // d joins: it takes its share from a and b.
    let d = sharing(&server, "node-d").await;
    let took = settled(&[&a, &b, &d]).await;
    eprintln!("a server joining: its share taken {took:?} after it opened");

    // b dies (its leases are not released): a and d take its partitions
    // once its leases end.
    drop(b);
    let took = settled(&[&a, &d]).await;
    eprintln!("a server dying: its partitions taken {took:?} later (leases of {TTL:?})");
    assert!(
        took >= TTL / 2,
        "taken before the dead server's leases ended"
    );
}

/// The next delivery of an inbox, or a failure after `SETTLE`.
async fn next(
    inbox: &mut tokio::sync::mpsc::Receiver<retrace_journal::Delivery>,
) -> retrace_journal::Delivery {
    tokio::time::timeout(SETTLE, inbox.recv())
        .await
        .expect("a message arrives")
        .expect("the inbox is open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_reaches_the_holder_of_its_partition_until_one_is_done_with_it() {
    let server = NatsServer::start();
    let a = sharing(&server, "node-a").await;
    let b = sharing(&server, "node-b").await;
    settled(&[&a, &b]).await;
    let mut inbox_a = a.inbox().expect("a sharing journal has an inbox");
    let mut inbox_b = b.inbox().expect("a sharing journal has an inbox");
    assert!(a.inbox().is_none(), "the inbox is handed out once");

    // Sent from either server, each message arrives at the holder of its
    // stream's partition.
    let of_a = *a.partitions().borrow().first().expect("a holds some");
    let of_b = *b.partitions().borrow().first().expect("b holds some");
    let (to_a, to_b) = (stream_in(&a, of_a), stream_in(&a, of_b));
    b.send(to_a, b"for a".to_vec()).await.expect("sent");
    a.send(to_b, b"for b".to_vec()).await.expect("sent");
    let got = next(&mut inbox_a).await;
    assert_eq!((got.to, got.message.as_slice()), (to_a, &b"for a"[..]));
    got.done();
    let got = next(&mut inbox_b).await;
    assert_eq!((got.to, got.message.as_slice()), (to_b, &b"for b"[..]));

    // One its holder cannot handle now arrives again; done, never again.
    got.later();
    let again = next(&mut inbox_b).await;
    assert_eq!(again.message, b"for b");
    again.done();

    // One handed out when its holder dies unanswered arrives at the
    // partition's next holder.
    a.send(to_b, b"outlives b".to_vec()).await.expect("sent");
    let unanswered = next(&mut inbox_b).await;
    assert_eq!(unanswered.message, b"outlives b");
    drop(inbox_b);
    drop(b);
    std::mem::forget(unanswered);
    let got = next(&mut inbox_a).await;
    assert_eq!((got.to, got.message.as_slice()), (to_b, &b"outlives b"[..]));
    assert!(
        a.partitions().borrow().contains(&of_b),
        "it arrived once a held the partition"
    );
    got.done();
    // Nothing else is pending: every message was done with once.
    a.send(to_a, b"last".to_vec()).await.expect("sent");
    assert_eq!(next(&mut inbox_a).await.message, b"last");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_server_knows_who_holds_each_partition() {
    let server = NatsServer::start();
    let open = |node: &'static str| {
        let url = format!("http://{node}.example");
        NatsJournal::open(NatsOptions {
            ownership: Some(Ownership {
                ttl: TTL,
                share: true,
                url: Some(url),
                ..Ownership::new(node)
            }),
            ..NatsOptions::new(server.url())
        })
    };
    let a = open("node-a").await.expect("opens");
    let b = open("node-b").await.expect("opens");
    settled(&[&a, &b]).await;
    // What each holds, as every server's map of the leases says.
    let held = |j: &NatsJournal, node: &str| -> Vec<(u32, String, Option<String>)> {
        j.partitions()
            .borrow()
            .iter()
            .map(|p| (*p, node.to_owned(), Some(format!("http://{node}.example"))))
            .collect()
    };
    let mut expected = held(&a, "node-a");
    expected.extend(held(&b, "node-b"));
    expected.sort();
    for journal in [&a, &b] {
        let mut holders = journal.holders();
        let agreed = tokio::time::timeout(
            SETTLE,
            holders.wait_for(|h| {
                let mut seen: Vec<_> = h
                    .iter()
                    .map(|(p, holder)| (*p, holder.node.clone(), holder.url.clone()))
                    .collect();
                seen.sort();
                seen == expected
            }),
        )
        .await
        .is_ok_and(|r| r.is_ok());
        assert!(
            agreed,
            "the leases' holders as watched differ from the shares"
        );
    }
    // One leaves gracefully: its partitions are named for the other.
    b.release().await;
    settled(&[&a]).await;
    let mut holders = a.holders();
    let moved = tokio::time::timeout(
        SETTLE,
        holders.wait_for(|h| {
            h.len() == PARTITIONS_DEFAULT as usize
                && h.values().all(|holder| holder.node == "node-a")
        }),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    assert!(
        moved,
        "the leaving server's partitions are named for the other"
    );
}

/// What a server taking partitions lists: `streams_in` gives the streams
/// of those partitions only (their heads alone are read), in id order and
/// in pages, whoever wrote them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_of_some_partitions_holds_their_streams_only() {
    let server = NatsServer::start();
    let a = sharing(&server, "node-a").await;
    settled(&[&a]).await;
    let mut written = Vec::new();
    for partition in 0..8 {
        let id = stream_in(&a, partition);
        a.append(id, 1, event(1))
            .await
            .expect("a holds every partition");
        written.push((partition, id));
    }
    let asked = BTreeSet::from([1, 3, 6]);
    let mut expected: Vec<StreamId> = written
        .iter()
        .filter(|(p, _)| asked.contains(p))
        .map(|(_, id)| *id)
        .collect();
    expected.sort();
    let whole = a.streams_in(&asked, None, 100).await.expect("a listing");
    assert_eq!(whole.iter().map(|h| h.stream).collect::<Vec<_>>(), expected);
    assert!(whole.iter().all(|h| h.last_seq == 1), "{whole:?}");
    let first = a.streams_in(&asked, None, 2).await.expect("a page");
    let rest = a
        .streams_in(&asked, first.last().map(|h| h.stream), 100)
        .await
        .expect("the next page");
    let paged: Vec<StreamId> = first.iter().chain(&rest).map(|h| h.stream).collect();
    assert_eq!(paged, expected);
    a.release().await;
}
