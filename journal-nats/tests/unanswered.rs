//! Appends that get no answer: the NATS server a journal is connected to is
//! paused (SIGSTOP) past the acknowledgement timeout while appends are in
//! flight, then resumed, and it passes on what it held. An append is
//! either acknowledged and stored once, or reported failed and never
//! stored: no append reported failed shows up in the stream later, none
//! is stored twice. And the journal, cut off past its leases, gives its
//! partitions up by itself.

use std::time::Duration;

use retrace_journal::{Journal, NewEvent, StreamId};
use retrace_journal_nats::server::NatsCluster;
use retrace_journal_nats::{NatsJournal, NatsOptions, Ownership};

/// Longer than the client's acknowledgement timeout (5 s).
const PAUSE: Duration = Duration::from_secs(7);

fn signal(pid: u32, name: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{name} {pid}");
}

/// Appends to `stream` one event at a time until `stop`; after a failed
/// append, reads the stream back and goes on from what it holds. Returns
/// the payloads of the acknowledged appends, in order, and how many failed.
async fn writer(
    journal: NatsJournal,
    stream: StreamId,
    stop: tokio::sync::watch::Receiver<bool>,
) -> (Vec<Vec<u8>>, usize) {
    let mut acknowledged: Vec<Vec<u8>> = Vec::new();
    let mut failed = 0;
    let mut n = 0u64;
    while !*stop.borrow() {
        n += 1;
        let payload = n.to_be_bytes().to_vec();
        let seq = acknowledged.len() as u64 + 1;
        let event = NewEvent::new("step", n, payload.clone());
        match journal.append(stream, seq, vec![event]).await {
            Ok(appended) => {
                assert_eq!(appended.first_seq, seq);
                acknowledged.push(payload);
            }
            Err(e) => {
                failed += 1;
                // What a failed append left: it must not have been stored.
                // (A read may fail too while NATS catches up: read again.)
                let stored = tokio::time::timeout(std::time::Duration::from_secs(60), async {
                    loop {
                        if let Ok(stored) = journal.read(stream, 1, usize::MAX).await {
                            return stored;
                        }
                    }
                })
                .await
                .expect("the stream reads back once NATS answers");
                assert_eq!(
                    stored.len(),
                    acknowledged.len(),
                    "an append reported failed ({e}) is stored"
                );
            }
        }
    }
    (acknowledged, failed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_append_is_stored_once_or_reported_failed_and_never_stored() {
    let mut cluster = NatsCluster::start(3);
    let urls = cluster.urls();
    // Connected to the first server only, so its pause holds what was sent.
    let journal = NatsJournal::open(NatsOptions {
        replicas: 3,
        ownership: Some(Ownership::new("unanswered")),
        ..NatsOptions::new(urls[0].clone())
    })
    .await
    .expect("the journal opens on the cluster");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let streams: Vec<StreamId> = (1..=8u8).map(|i| StreamId::from_bytes([i; 16])).collect();
    let writers: Vec<_> = streams
        .iter()
        .map(|s| tokio::spawn(writer(journal.clone(), *s, stopped.clone())))
        .collect();
    // Let appends flow, then hold them in the paused server.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = cluster.node(0).pid().expect("the server runs");
    let lost = tokio::spawn({
        let journal = journal.clone();
        async move { journal.lost().await }
    });
    signal(pid, "STOP");
    tokio::time::sleep(PAUSE).await;
    // Cut off from NATS past its leases (3 s), the journal stopped claiming
    // its partitions by itself, while still cut off.
    assert!(
        lost.is_finished(),
        "a journal NATS did not answer for {PAUSE:?} still claims its partitions"
    );
    let why = lost.await.expect("the watch ends");
    assert!(why.contains("not renewed"), "{why}");
    signal(pid, "CONT");
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.send(true).expect("the writers listen");
    let mut failed = 0;
    for (stream, writer) in streams.iter().zip(writers) {
        let (acknowledged, f) = writer.await.expect("a writer ends");
        failed += f;
        let stored: Vec<Vec<u8>> = journal
            .read(*stream, 1, usize::MAX)
            .await
            .expect("the stream reads back")
            .into_iter()
            .map(|r| r.payload)
            .collect();
        assert_eq!(
            stored, acknowledged,
            "stream {stream}: stored exactly what was acknowledged"
        );
    }
    eprintln!("appends reported failed: {failed}");
}
