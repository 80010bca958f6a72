//! Leases and fences against a real `nats-server`: a second server cannot
//! take a journal another holds, takes it at once when it is released, and
//! a server whose partitions were taken cannot append, whatever it sends
//! (the NATS server refuses it on the fence).

use std::time::Duration;

use async_nats::jetstream;
use retrace_journal::{Health, Journal, NewEvent, StreamId};
use retrace_journal_nats::server::NatsServer;
use retrace_journal_nats::{NatsJournal, NatsOptions, Ownership};

fn owned(server: &NatsServer, node: &str, wait: Duration) -> NatsOptions {
    owned_for(server, node, wait, Duration::from_secs(2))
}

fn owned_for(server: &NatsServer, node: &str, wait: Duration, ttl: Duration) -> NatsOptions {
    NatsOptions {
        ownership: Some(Ownership {
            ttl,
            wait,
            ..Ownership::new(node)
        }),
        ..NatsOptions::new(server.url())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_journal_is_refused_to_a_second_server_until_released() {
    let server = NatsServer::start();
    let a = NatsJournal::open(owned(&server, "node-a", Duration::ZERO))
        .await
        .expect("the first server takes every partition");
    let refused = NatsJournal::open(owned(&server, "node-b", Duration::from_millis(300))).await;
    let message = refused.expect_err("a held journal is refused").to_string();
    assert!(message.contains("held by node-a"), "{message}");
    a.release().await;
    let b = NatsJournal::open(owned(&server, "node-b", Duration::ZERO))
        .await
        .expect("released partitions are taken at once");
    let id = StreamId::from_bytes([5; 16]);
    b.append(id, 1, vec![NewEvent::new("k", 1, vec![])])
        .await
        .expect("the new holder appends");
    // The one that let go appends nothing more.
    assert!(
        a.append(id, 2, vec![NewEvent::new("k", 2, vec![])])
            .await
            .is_err()
    );
}

/// The leases bucket, through a client of its own (behind the journals'
/// backs).
async fn leases_bucket(server: &NatsServer) -> async_nats::jetstream::kv::Store {
    let client = async_nats::connect(server.url()).await.expect("connect");
    jetstream::new(client)
        .get_key_value("RETRACE_LEASES")
        .await
        .expect("the leases bucket")
}

/// Removes every lease behind its holder's back: what a holder paused
/// (SIGSTOP) past its leases finds when it wakes.
async fn end_leases_of(server: &NatsServer) {
    let leases = leases_bucket(server).await;
    for partition in 0..retrace_journal_nats::PARTITIONS_DEFAULT {
        leases
            .purge(format!("p{partition}"))
            .await
            .expect("purge a lease");
    }
}

/// A server paused past its leases, whose partitions another took, wakes
/// and appends: NATS refuses it on the fence (its own leases, long, have
/// not told it yet), and nothing of it is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_whose_partitions_were_taken_cannot_append() {
    let server = NatsServer::start();
    let old = NatsJournal::open(owned_for(
        &server,
        "old",
        Duration::ZERO,
        Duration::from_secs(60),
    ))
    .await
    .expect("open");
    let id = StreamId::from_bytes([6; 16]);
    old.append(id, 1, vec![NewEvent::new("k", 1, vec![])])
        .await
        .expect("append while holding");
    end_leases_of(&server).await;
    let new = NatsJournal::open(owned(&server, "new", Duration::from_secs(5)))
        .await
        .expect("the new server takes the free partitions");
    let refused = old
        .append(id, 2, vec![NewEvent::new("k", 2, vec![])])
        .await
        .expect_err("the old server's append is refused by the fence");
    assert!(
        refused
            .to_string()
            .contains("another retrace server took its partition"),
        "refused by NATS on the fence: {refused}"
    );
    let stored = new.read(id, 1, usize::MAX).await.expect("read");
    assert_eq!(stored.len(), 1, "nothing of the refused append is stored");
    new.append(id, 2, vec![NewEvent::new("k", 2, vec![])])
        .await
        .expect("the new holder goes on from the stored history");
}

/// A server whose partitions were taken notices at its next renewal: its
/// health says so, and its appends are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_notices_its_partitions_were_taken() {
    let server = NatsServer::start();
    let old = NatsJournal::open(owned(&server, "old", Duration::ZERO))
        .await
        .expect("open");
    end_leases_of(&server).await;
    let _new = NatsJournal::open(owned(&server, "new", Duration::from_secs(5)))
        .await
        .expect("the new server takes the free partitions");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while old.health() == Health::Writable {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the loss is never noticed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    match old.health() {
        Health::Unavailable { reason, .. } => assert!(reason.contains("taken"), "{reason}"),
        Health::Writable => unreachable!(),
    }
    let id = StreamId::from_bytes([7; 16]);
    let refused = old
        .append(id, 1, vec![NewEvent::new("k", 1, vec![])])
        .await
        .expect_err("refused");
    // Refused before it is sent once the renewal reached its partition,
    // by NATS on the fence until then.
    assert!(
        refused.to_string().contains("another retrace server"),
        "{refused}"
    );
}

/// A server that takes over a journal knows its streams: an append that
/// takes an existing stream for new is refused, never stored as a second
/// seq 1 (the fence alone would let it through).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_holder_refuses_to_start_an_existing_stream_again() {
    let server = NatsServer::start();
    let first = NatsJournal::open(owned(&server, "first", Duration::ZERO))
        .await
        .expect("open");
    let id = StreamId::from_bytes([8; 16]);
    first
        .append(
            id,
            1,
            vec![NewEvent::new("k", 1, vec![]), NewEvent::new("k", 2, vec![])],
        )
        .await
        .expect("append");
    first.release().await;
    drop(first);
    let second = NatsJournal::open(owned(&server, "second", Duration::ZERO))
        .await
        .expect("open");
    let again = second
        .append(id, 1, vec![NewEvent::new("k", 1, vec![])])
        .await;
    assert!(
        matches!(
            again,
            Err(retrace_journal::Error::SeqConflict { actual: 3, .. })
        ),
        "{again:?}"
    );
    assert_eq!(second.read(id, 1, usize::MAX).await.expect("read").len(), 2);
}

/// A renewal that timed out but landed leaves the key with the holder's
/// value at a revision it did not hear of (written here behind its back):
/// releasing still frees the partitions at once, instead of leaving them
/// taken by nobody until the keys end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_renewed_behind_its_holders_back_is_still_released() {
    let server = NatsServer::start();
    let holder = NatsJournal::open(owned_for(
        &server,
        "holder",
        Duration::ZERO,
        Duration::from_secs(60),
    ))
    .await
    .expect("open");
    let leases = leases_bucket(&server).await;
    for partition in 0..retrace_journal_nats::PARTITIONS_DEFAULT {
        leases
            .put(format!("p{partition}"), "holder".into())
            .await
            .expect("a late renewal lands");
    }
    holder.release().await;
    NatsJournal::open(owned(&server, "next", Duration::from_millis(500)))
        .await
        .expect("released partitions are taken at once");
}
