//! What a message between servers sharing a journal costs (the inbox:
//! a child's start, a child's end, an agent task sent to the home, a
//! result sent back — `docs/scaling.md` counts two a step when agents'
//! tasks go through the home). One journal shares the journal alone (so it
//! holds all 64 partitions) and sends ~300-byte messages to streams spread
//! over every partition; its inbox hands each back and it is done with
//! it (acknowledged, which deletes it). First 1,000 one at a time (the
//! latency from sending to receiving), then as fast as they go, many sends
//! in flight. One line per scenario: `scenario=inbox_<r1|r3> messages=<n>
//! messages_per_s=<n> nats_cpu_s_per_1k=<s> client_cpu_s_per_1k=<s>
//! one_at_a_time_p50_us=<n> one_at_a_time_p99_us=<n>`, CPU per 1,000
//! messages of the fast part, of the nats-server processes and of this
//! process (the sender and the receiver are both here).
//!
//! The NATS servers are started here, on loopback (`RETRACE_NATS_SERVER`
//! names the binary); they sync to disk as `RETRACE_NATS_SYNC_INTERVAL`
//! says (`always` by default; NATS's own schedule is `2m`).
//!
//! Run: `RETRACE_NATS_SYNC_INTERVAL=2m cargo run --release -p retrace-benches --bin inbox -- --quick`

use std::time::{Duration, Instant};

use futures::StreamExt;
use retrace_benches::{Args, cpu_seconds, histogram, record};
use retrace_journal::{Journal, StreamId};
use retrace_journal_nats::server::{NatsCluster, NatsServer};
use retrace_journal_nats::{NatsJournal, NatsOptions, Ownership, PARTITIONS_DEFAULT};

/// Sends awaiting their acknowledgement at once.
const IN_FLIGHT: usize = 256;
/// About a message's size (a task spec's).
const PAYLOAD_BYTES: usize = 300;
/// Messages sent one at a time first, for the latency.
const SEQUENTIAL: u64 = 1_000;

fn main() -> anyhow::Result<()> {
    let args = Args::parse()?;
    let messages: u64 = if args.quick { 20_000 } else { 100_000 };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    if args.wants("inbox_r1") {
        let server = NatsServer::start();
        let pids: Vec<u32> = server.pid().into_iter().collect();
        rt.block_on(run("inbox_r1", vec![server.url()], 1, &pids, messages))?;
    }
    if args.wants("inbox_r3") {
        let cluster = NatsCluster::start(3);
        rt.block_on(run(
            "inbox_r3",
            cluster.urls(),
            3,
            &cluster.pids(),
            messages,
        ))?;
    }
    Ok(())
}

async fn run(
    name: &str,
    urls: Vec<String>,
    replicas: usize,
    pids: &[u32],
    messages: u64,
) -> anyhow::Result<()> {
    let journal = NatsJournal::open(NatsOptions {
        servers: urls,
        replicas,
        ownership: Some(Ownership {
            share: true,
            ..Ownership::new("bench")
        }),
        ..NatsOptions::new("unused")
    })
    .await?;
    // Alone, it takes every partition; wait until it holds them.
    let mut held = journal.partitions();
    tokio::time::timeout(
        Duration::from_secs(30),
        held.wait_for(|h| h.len() == PARTITIONS_DEFAULT as usize),
    )
    .await?
    .map(|_| ())?;
    let mut inbox = journal
        .inbox()
        .ok_or_else(|| anyhow::anyhow!("a sharing journal has an inbox"))?;
    // A stream per partition to send to.
    let streams: Vec<StreamId> = (0..PARTITIONS_DEFAULT)
        .map(|p| {
            (0u32..)
                .map(|i| {
                    let mut bytes = [9u8; 16];
                    bytes[..4].copy_from_slice(&i.to_le_bytes());
                    StreamId::from_bytes(bytes)
                })
                .find(|id| journal.partition_of(*id) == p)
                .unwrap_or(StreamId::NIL)
        })
        .collect();
    let payload = vec![b'x'; PAYLOAD_BYTES];
    let total = SEQUENTIAL + messages;
    // The receiver tells when it took each message (for the one-at-a-time
    // latency) and ends after `SEQUENTIAL + messages`.
    let (took, mut taken) = tokio::sync::mpsc::unbounded_channel::<()>();
    let receiver = tokio::spawn(async move {
        for received in 0..total {
            let Some(delivery) = inbox.recv().await else {
                anyhow::bail!("the inbox closed after {received}");
            };
            delivery.done();
            let _ = took.send(());
        }
        anyhow::Ok(())
    });

    // One at a time: from sending to the receiver holding it.
    let mut latencies = histogram();
    for i in 0..SEQUENTIAL {
        let to = streams[i as usize % streams.len()];
        let sent = Instant::now();
        journal.send(to, payload.clone()).await?;
        taken
            .recv()
            .await
            .ok_or_else(|| anyhow::anyhow!("the receiver stopped"))?;
        record(&mut latencies, sent.elapsed());
    }

    let nats_before: f64 = pids.iter().filter_map(|p| cpu_seconds(Some(*p))).sum();
    let self_before = cpu_seconds(None).unwrap_or(0.0);
    let started = Instant::now();
    let mut pending = futures::stream::FuturesUnordered::new();
    for i in 0..messages {
        if pending.len() >= IN_FLIGHT
            && let Some(sent) = pending.next().await
        {
            sent?;
        }
        let to = streams[i as usize % streams.len()];
        pending.push(journal.send(to, payload.clone()));
    }
    while let Some(sent) = pending.next().await {
        sent?;
    }
    receiver.await??;
    let elapsed = started.elapsed();
    let nats_after: f64 = pids.iter().filter_map(|p| cpu_seconds(Some(*p))).sum();
    let self_after = cpu_seconds(None).unwrap_or(0.0);
    let per_1k = |cpu: f64| cpu / messages as f64 * 1_000.0;
    println!(
        "scenario={name} messages={messages} messages_per_s={:.0} nats_cpu_s_per_1k={:.3} \
         client_cpu_s_per_1k={:.3} one_at_a_time_p50_us={} one_at_a_time_p99_us={}",
        messages as f64 / elapsed.as_secs_f64(),
        per_1k(nats_after - nats_before),
        per_1k(self_after - self_before),
        latencies.value_at_quantile(0.5),
        latencies.value_at_quantile(0.99),
    );
    journal.release().await;
    Ok(())
}
