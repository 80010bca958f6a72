//! The journal benchmark: durable appends with 1, 16 and 256 concurrent
//! appenders, the same without flushing, a raw sled baseline with the same
//! batch sizes, one raw fsync, and a full read-back. One line per scenario:
//! `scenario=<name> ops_per_s=<n> p50_us=<n> p99_us=<n> p999_us=<n>`.
//!
//! The 256-appender journal and raw sled run in 5 alternating rounds (each
//! raw round with its journal round's mean group size); their lines sum
//! the rounds, and `scenario=journal_vs_sled_raw_256 rounds=<n>
//! ratio_median=<r> ratios=<r,…>` gives the journal's speed over raw sled's
//! in each pair and the median.
//!
//! Run: `cargo run --release -p retrace-benches --bin journal -- --quick`

use std::io::Write;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use retrace_benches::{Args, histogram, record, report};
use retrace_journal::{EventLog, Journal, NewEvent, Options, StreamId};

/// Payload of every benchmark event: about the size of a small engine event.
const PAYLOAD_BYTES: usize = 128;
/// Alternating rounds of the journal and raw sled at 256 appenders.
const ROUNDS_256: u64 = 5;

struct Sizes {
    single_appends: u64,
    appends_16: u64,
    appends_256: u64,
    fsyncs: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse()?;
    let sizes = if args.quick {
        Sizes {
            single_appends: 500,
            appends_16: 8_000,
            appends_256: 100_000,
            fsyncs: 500,
        }
    } else {
        Sizes {
            single_appends: 3_000,
            appends_16: 50_000,
            appends_256: 400_000,
            fsyncs: 3_000,
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;

    let durable = Options::default();
    let nodurable = Options {
        durable: false,
        ..Options::default()
    };

    rt.block_on(async {
        let dir = args.scratch()?;
        appends(
            "journal_durable_1",
            dir.path(),
            &durable,
            1,
            sizes.single_appends,
        )
        .await?
        .report();

        let dir = args.scratch()?;
        appends(
            "journal_durable_16",
            dir.path(),
            &durable,
            16,
            sizes.appends_16,
        )
        .await?
        .report();

        // The journal at 256 appenders against raw sled, in alternating
        // rounds, each raw round with the group size its journal round had:
        // a machine whose speed drifts (other work, a shared host) then
        // slows both sides of a pair alike, and the median of the rounds'
        // ratios holds where one long run of each did not.
        let per_round = sizes.appends_256 / ROUNDS_256;
        let (mut journal_h, mut raw_h) = (histogram(), histogram());
        let (mut journal_t, mut raw_t) = (Duration::ZERO, Duration::ZERO);
        let mut ratios = Vec::new();
        let mut kept = None;
        for _ in 0..ROUNDS_256 {
            let dir = args.scratch()?;
            let run = appends("journal_durable_256", dir.path(), &durable, 256, per_round).await?;
            let raw_dir = args.scratch()?;
            let (h, took) = sled_raw(raw_dir.path(), per_round, run.mean_group)?;
            ratios.push(took.as_secs_f64() / run.elapsed.as_secs_f64().max(1e-9));
            journal_h.add(&run.latencies)?;
            raw_h.add(&h)?;
            journal_t += run.elapsed;
            raw_t += took;
            kept = Some((dir, run.journal));
        }
        report(
            "journal_durable_256",
            per_round * ROUNDS_256,
            journal_t,
            &journal_h,
        );
        report("sled_raw_256", per_round * ROUNDS_256, raw_t, &raw_h);
        ratios.sort_by(f64::total_cmp);
        println!(
            "scenario=journal_vs_sled_raw_256 rounds={ROUNDS_256} ratio_median={:.2} ratios={}",
            ratios[ratios.len() / 2],
            ratios
                .iter()
                .map(|r| format!("{r:.2}"))
                .collect::<Vec<_>>()
                .join(",")
        );

        let dir = args.scratch()?;
        appends(
            "journal_nodurable_256",
            dir.path(),
            &nodurable,
            256,
            sizes.appends_256,
        )
        .await?
        .report();

        let dir = args.scratch()?;
        fsync_raw(dir.path(), sizes.fsyncs)?;

        let Some((_dir, j)) = kept else {
            anyhow::bail!("no round ran")
        };
        read_back(&j).await?;
        anyhow::Ok(())
    })
}

fn event(seq: u64) -> NewEvent {
    let mut payload = vec![0u8; PAYLOAD_BYTES];
    payload[..8].copy_from_slice(&seq.to_le_bytes());
    NewEvent::new("bench_event", seq, payload)
}

/// One scenario of appends: what it did and how long it took.
struct Run {
    name: &'static str,
    journal: EventLog,
    ops: u64,
    elapsed: Duration,
    latencies: Histogram<u64>,
    mean_group: f64,
}

impl Run {
    fn report(&self) {
        report(self.name, self.ops, self.elapsed, &self.latencies);
    }
}

/// `appenders` tasks each append single events to their own execution until
/// `total` appends are done. Group-commit figures go to stderr.
async fn appends(
    name: &'static str,
    dir: &std::path::Path,
    options: &Options,
    appenders: u64,
    total: u64,
) -> anyhow::Result<Run> {
    let journal = EventLog::open(dir, options.clone())?;
    let per_task = total / appenders;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for a in 0..appenders {
        let journal = journal.clone();
        tasks.push(tokio::spawn(async move {
            let mut id = [7u8; 16];
            id[0] = (a % 251) as u8;
            id[1] = (a / 251) as u8;
            let id = StreamId::from_bytes(id);
            let mut h = histogram();
            for seq in 1..=per_task {
                let t = Instant::now();
                journal.append(id, seq, vec![event(seq)]).await?;
                record(&mut h, t.elapsed());
            }
            anyhow::Ok(h)
        }));
    }
    let mut all = histogram();
    for t in tasks {
        all.add(t.await??)?;
    }
    let elapsed = started.elapsed();
    let stats = journal.stats();
    let mean_group = stats.events as f64 / stats.groups.max(1) as f64;
    eprintln!(
        "  {name}: {} events in {} groups (mean {:.1}/group), {} flushes, mean flush {:.0} us, {:.0} events/s",
        stats.events,
        stats.groups,
        mean_group,
        stats.flushes,
        stats.flush_nanos as f64 / stats.flushes.max(1) as f64 / 1000.0,
        (per_task * appenders) as f64 / elapsed.as_secs_f64().max(1e-9),
    );
    Ok(Run {
        name,
        journal,
        ops: per_task * appenders,
        elapsed,
        latencies: all,
        mean_group,
    })
}

/// Plain sled: batches of the journal's mean group size, values of the size
/// of an encoded journal record, one flush per batch; no framing, no hashing.
/// Returns the latencies per batch and the time it took.
fn sled_raw(
    dir: &std::path::Path,
    total: u64,
    mean_group: f64,
) -> anyhow::Result<(Histogram<u64>, Duration)> {
    let db = sled::Config::new()
        .path(dir)
        .mode(sled::Mode::HighThroughput)
        .open()?;
    let tree = db.open_tree("raw")?;
    let batch_size = (mean_group.round() as u64).max(1);
    // A journal record is the payload plus ~60 bytes of framing and 32 of
    // hash, and writes three keys (record, global index, head).
    let value = vec![7u8; PAYLOAD_BYTES + 92];
    let mut h = histogram();
    let mut written = 0u64;
    let started = Instant::now();
    while written < total {
        let t = Instant::now();
        let mut batch = sled::Batch::default();
        for i in written..(written + batch_size).min(total) {
            batch.insert(&i.to_be_bytes(), value.as_slice());
        }
        tree.apply_batch(batch)?;
        db.flush()?;
        record(&mut h, t.elapsed());
        written += batch_size;
    }
    let took = started.elapsed();
    eprintln!(
        "  sled_raw_256: batches of {batch_size} (the journal round's mean group), {:.0} events/s",
        total as f64 / took.as_secs_f64().max(1e-9)
    );
    Ok((h, took))
}

/// One small write and `fdatasync`, over and over: what one durable
/// acknowledgement costs on this disk at the very least.
fn fsync_raw(dir: &std::path::Path, count: u64) -> anyhow::Result<()> {
    let mut file = std::fs::File::create(dir.join("fsync"))?;
    let mut h = histogram();
    let started = Instant::now();
    for i in 0..count {
        let t = Instant::now();
        file.write_all(&i.to_le_bytes())?;
        file.sync_data()?;
        record(&mut h, t.elapsed());
    }
    report("fsync_raw", count, started.elapsed(), &h);
    Ok(())
}

/// Reads the whole journal back in global order (one scan of the log), in
/// chunks of 1024; the latency figures are per chunk. Then the same events
/// execution by execution (the replay path), reported as
/// `journal_read_by_execution`.
async fn read_back(journal: &EventLog) -> anyhow::Result<()> {
    let mut h: Histogram<u64> = histogram();
    let mut events = 0u64;
    let started = Instant::now();
    let mut from = 1;
    loop {
        let t = Instant::now();
        let chunk = journal.read_global(from, 1024).await?;
        record(&mut h, t.elapsed());
        let Some(last) = chunk.last() else { break };
        from = last.position + 1;
        events += chunk.len() as u64;
    }
    report("journal_read", events, started.elapsed(), &h);
    eprintln!(
        "  journal_read: {events} events in global order, latency per read of up to 1024 events"
    );

    let mut h: Histogram<u64> = histogram();
    let mut events = 0u64;
    let started = Instant::now();
    let mut after = None;
    loop {
        let execs = journal.streams(after, 1024).await?;
        let Some(last) = execs.last() else { break };
        after = Some(last.stream);
        for e in &execs {
            let mut from = 1;
            loop {
                let t = Instant::now();
                let chunk = journal.read(e.stream, from, 1024).await?;
                record(&mut h, t.elapsed());
                let Some(last) = chunk.last() else { break };
                from = last.seq + 1;
                events += chunk.len() as u64;
            }
        }
    }
    report("journal_read_by_execution", events, started.elapsed(), &h);
    Ok(())
}
