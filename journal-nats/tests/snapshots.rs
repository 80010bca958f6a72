//! A read after a snapshot starts at the message holding the snapshot's
//! seq (the snapshot keeps it), not at the stream's first message: after a
//! restart, loading an execution from its snapshot reads only what follows.

use std::time::Duration;

use async_nats::jetstream;
use retrace_journal::{Journal, NewEvent, StreamId};
use retrace_journal_nats::server::NatsServer;
use retrace_journal_nats::{NatsJournal, NatsOptions};

fn events(from: u64, n: u64) -> Vec<NewEvent> {
    (from..from + n)
        .map(|i| NewEvent::new("k", i, vec![]))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_after_a_snapshot_starts_at_the_snapshots_message() {
    let server = NatsServer::start();
    let id = StreamId::from_bytes([4; 16]);
    let first_message = {
        let journal = NatsJournal::open(NatsOptions::new(server.url()))
            .await
            .expect("open");
        let first = journal.append(id, 1, events(1, 3)).await.expect("append");
        journal.append(id, 4, events(4, 3)).await.expect("append");
        journal
            .put_snapshot(id, 6, b"six".to_vec())
            .await
            .expect("snapshot at the head");
        journal.append(id, 7, events(7, 2)).await.expect("append");
        journal.append(id, 9, events(9, 2)).await.expect("append");
        first.first_position / retrace_journal_nats::EVENTS_PER_MESSAGE
    };
    // The stream's first message goes missing behind the journal's back.
    let client = async_nats::connect(server.url()).await.expect("connect");
    let stream = jetstream::new(client)
        .get_stream("RETRACE_EVENTS")
        .await
        .expect("the stream");
    assert!(stream.delete_message(first_message).await.expect("delete"));

    let journal = NatsJournal::open(NatsOptions::new(server.url()))
        .await
        .expect("reopen");
    let snapshot = journal
        .latest_snapshot(id)
        .await
        .expect("read the snapshot")
        .expect("a snapshot");
    assert_eq!(
        (snapshot.seq, snapshot.state.as_slice()),
        (6, b"six".as_slice())
    );
    // Loading from the snapshot reads from its message on: the missing first
    // message is not read, and what follows is chain-checked.
    let after = tokio::time::timeout(Duration::from_secs(30), journal.read(id, 7, usize::MAX))
        .await
        .expect("in time")
        .expect("the events after the snapshot");
    assert_eq!(
        after.iter().map(|r| r.seq).collect::<Vec<_>>(),
        [7, 8, 9, 10]
    );
    assert!(after[1].chains_to(&after[0].hash));
    // A read of the whole history still starts at the beginning, and finds
    // it broken.
    assert!(journal.read(id, 1, usize::MAX).await.is_err());
}
