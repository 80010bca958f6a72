//! Many subscriptions to one stream each, opened at once while their
//! streams are written, as the HTTP API opens them (one per SSE client):
//! every subscriber sees its stream's every event, in order, and none ends
//! early.

use std::sync::Arc;
use std::time::Duration;

use retrace_journal::{Journal, NewEvent, StreamId, Tail};
use retrace_journal_nats::server::NatsServer;
use retrace_journal_nats::{NatsJournal, NatsOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_tails_opened_at_once_each_see_their_whole_stream() {
    let server = NatsServer::start();
    let journal: Arc<dyn Journal> = Arc::new(
        NatsJournal::open(NatsOptions::new(server.url()))
            .await
            .expect("open"),
    );
    let mut tasks = Vec::new();
    for n in 0..64u8 {
        let journal = journal.clone();
        tasks.push(tokio::spawn(async move {
            let id = StreamId::from_bytes([n; 16]);
            let mut tail = journal.subscribe(Tail::Stream {
                stream: id,
                from_seq: 1,
            });
            for seq in 1..=10u64 {
                journal
                    .append(id, seq, vec![NewEvent::new("k", seq, vec![n])])
                    .await
                    .expect("append");
            }
            for seq in 1..=10u64 {
                let next = tokio::time::timeout(Duration::from_secs(30), tail.next()).await;
                match next {
                    Ok(Some(Ok(record))) => assert_eq!(record.seq, seq),
                    other => panic!("stream {n}: event {seq}: {other:?}"),
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("a subscriber");
    }
}

/// A tail that falls far behind the live feed (more appends than the feed
/// holds while it reads nothing) still gives every event once, in order:
/// it reads what it missed from the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tail_far_behind_the_feed_reads_what_it_missed_from_the_stream() {
    let server = NatsServer::start();
    let journal = NatsJournal::open(NatsOptions::new(server.url()))
        .await
        .expect("open");
    let mut all = journal.subscribe(Tail::All { from_position: 1 });
    let total = 6_000u64;
    let appends: Vec<_> = (0..total)
        .map(|i| {
            let id = StreamId::from_bytes([(i % 7) as u8 + 1; 16]);
            journal.append(id, i / 7 + 1, vec![NewEvent::new("k", i, vec![])])
        })
        .collect();
    for append in appends {
        append.await.expect("append");
    }
    let mut last = 0;
    for i in 0..total {
        let record = tokio::time::timeout(Duration::from_secs(30), all.next())
            .await
            .unwrap_or_else(|_| panic!("event {i} never came"))
            .expect("the tail goes on")
            .expect("a record");
        assert!(record.position > last, "in order, once");
        assert_eq!(
            record.recorded_at_ms, i,
            "every event, in the order appended"
        );
        last = record.position;
    }
}

/// A tail goes on across a restart of the NATS server: what is appended
/// after the restart reaches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tail_goes_on_across_a_restart_of_the_nats_server() {
    let mut server = NatsServer::start();
    let journal = NatsJournal::open(NatsOptions::new(server.url()))
        .await
        .expect("open");
    let id = StreamId::from_bytes([9; 16]);
    let mut tail = journal.subscribe(Tail::Stream {
        stream: id,
        from_seq: 1,
    });
    journal
        .append(id, 1, vec![NewEvent::new("k", 1, vec![])])
        .await
        .expect("append");
    let first = tail.next().await.expect("open").expect("a record");
    assert_eq!(first.seq, 1);
    server.restart();
    // Appends fail until the client has reconnected; then the second lands.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match journal
            .append(id, 2, vec![NewEvent::new("k", 2, vec![])])
            .await
        {
            Ok(_) => break,
            Err(retrace_journal::Error::SeqConflict { actual: 3, .. }) => break,
            Err(e) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "never reconnected: {e}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    let second = tokio::time::timeout(Duration::from_secs(30), tail.next())
        .await
        .expect("the event after the restart reaches the tail")
        .expect("the tail goes on")
        .expect("a record");
    assert_eq!(second.seq, 2);
    assert!(second.chains_to(&first.hash));
}
