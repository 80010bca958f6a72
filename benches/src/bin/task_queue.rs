//! What handing tasks to agents through a JetStream work-queue stream would
//! cost, to weigh against forwarding agents' polls to the server that
//! holds the journal (what `retrace serve --nats` does; its cost is
//! `agent_http --nats-cluster --nodes 3`'s, about 40 µs of retrace CPU per
//! step). A producer publishes tasks (~300 bytes, what a task spec weighs)
//! to `tasks.<capability>` of a work-queue stream, acknowledged; a pull
//! consumer takes them and acknowledges each (which removes it): first
//! 1,000 one at a time (the latency from publishing to taking), then as
//! fast as they go. One line per scenario: `scenario=task_queue_<r1|r3>
//! tasks=<n> tasks_per_s=<n> nats_cpu_s_per_1k=<s> client_cpu_s_per_1k=<s>
//! one_at_a_time_p50_us=<n> one_at_a_time_p99_us=<n>`, the CPU being that
//! of the nats-server processes and of this process (producer and
//! consumer: what the servers holding the journal and those serving
//! agents would spend between them) per 1,000 tasks of the fast part.
//!
//! The NATS servers are started here, on loopback (`RETRACE_NATS_SERVER`
//! names the binary); they sync to disk as `RETRACE_NATS_SYNC_INTERVAL`
//! says (`always` by default; NATS's own schedule is `2m`).
//!
//! Run: `RETRACE_NATS_SYNC_INTERVAL=2m cargo run --release -p retrace-benches --bin task_queue -- --quick`

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;
use retrace_benches::{Args, cpu_seconds, histogram, record};
use retrace_journal_nats::server::{NatsCluster, NatsServer};

/// Publishes awaiting their acknowledgement at once.
const IN_FLIGHT: usize = 256;
/// About a task spec's size on the wire.
const PAYLOAD_BYTES: usize = 300;
/// Tasks sent one at a time first, for the latency.
const SEQUENTIAL: u64 = 1_000;

fn bytes_of(n: usize) -> bytes::Bytes {
    bytes::Bytes::from(vec![b'x'; n])
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse()?;
    let tasks: u64 = if args.quick { 20_000 } else { 200_000 };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    if args.wants("task_queue_r1") {
        let server = NatsServer::start();
        let pids: Vec<u32> = server.pid().into_iter().collect();
        rt.block_on(run("task_queue_r1", &[server.url()], 1, &pids, tasks))?;
    }
    if args.wants("task_queue_r3") {
        let cluster = NatsCluster::start(3);
        rt.block_on(run(
            "task_queue_r3",
            &cluster.urls(),
            3,
            &cluster.pids(),
            tasks,
        ))?;
    }
    Ok(())
}

async fn run(
    name: &str,
    urls: &[String],
    replicas: usize,
    pids: &[u32],
    tasks: u64,
) -> anyhow::Result<()> {
    let client = async_nats::ConnectOptions::new().connect(urls).await?;
    let js = jetstream::new(client);
    // A cluster answers once it has elected its JetStream leader.
    let deadline = Instant::now() + Duration::from_secs(30);
    let tasks_stream = loop {
        let made = js
            .create_stream(stream::Config {
                name: "TASKS".into(),
                subjects: vec!["tasks.>".into()],
                retention: stream::RetentionPolicy::WorkQueue,
                storage: stream::StorageType::File,
                num_replicas: replicas,
                ..Default::default()
            })
            .await;
        match made {
            Ok(s) => break s,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e.into()),
        }
    };
    let agents: consumer::PullConsumer = tasks_stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some("agents".into()),
            filter_subject: "tasks.work".into(),
            ack_policy: consumer::AckPolicy::Explicit,
            max_ack_pending: 10_000,
            ..Default::default()
        })
        .await?;

    // The consumer tells when it took each task (for the one-at-a-time
    // latency) and ends after `SEQUENTIAL + tasks`.
    let (took, mut taken_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let total = SEQUENTIAL + tasks;
    let consumer = tokio::spawn(async move {
        let mut messages = agents.messages().await?;
        for taken in 0..total {
            let Some(message) = messages.next().await else {
                anyhow::bail!("the consumer's messages ended after {taken}");
            };
            let message = message.map_err(|e| anyhow::anyhow!("{e}"))?;
            message.ack().await.map_err(|e| anyhow::anyhow!("{e}"))?;
            let _ = took.send(());
        }
        anyhow::Ok(())
    });
    let payload = bytes_of(PAYLOAD_BYTES);

    // One task at a time: published (acknowledged) until taken.
    let mut latencies = histogram();
    for _ in 0..SEQUENTIAL {
        let sent = Instant::now();
        js.publish("tasks.work", payload.clone()).await?.await?;
        taken_rx
            .recv()
            .await
            .ok_or_else(|| anyhow::anyhow!("the consumer stopped"))?;
        record(&mut latencies, sent.elapsed());
    }

    // As fast as they go: `IN_FLIGHT` publishes awaiting acknowledgement.
    let nats_before: f64 = pids.iter().filter_map(|p| cpu_seconds(Some(*p))).sum();
    let self_before = cpu_seconds(None).unwrap_or(0.0);
    let started = Instant::now();
    let mut pending = futures::stream::FuturesUnordered::new();
    for _ in 0..tasks {
        if pending.len() >= IN_FLIGHT
            && let Some(acked) = pending.next().await
        {
            let _: jetstream::publish::PublishAck = acked?;
        }
        let ack = js.publish("tasks.work", payload.clone()).await?;
        pending.push(ack.into_future());
    }
    while let Some(acked) = pending.next().await {
        acked?;
    }
    consumer.await??;
    let elapsed = started.elapsed();
    let nats_after: f64 = pids.iter().filter_map(|p| cpu_seconds(Some(*p))).sum();
    let self_after = cpu_seconds(None).unwrap_or(0.0);
    let per_1k = |cpu: f64| cpu / tasks as f64 * 1_000.0;
    println!(
        "scenario={name} tasks={tasks} tasks_per_s={:.0} nats_cpu_s_per_1k={:.3} \
         client_cpu_s_per_1k={:.3} one_at_a_time_p50_us={} one_at_a_time_p99_us={}",
        tasks as f64 / elapsed.as_secs_f64(),
        per_1k(nats_after - nats_before),
        per_1k(self_after - self_before),
        latencies.value_at_quantile(0.5),
        latencies.value_at_quantile(0.99),
    );
    Ok(())
}
