//! What the tests that SIGKILL servers mid-traffic share: a seeded random
//! source, a client that follows the engine-wide event stream through
//! restarts and records every event it is shown, and the check that every
//! stream of a journal on NATS reads back whole.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use retrace_journal::Journal;
use retrace_journal_nats::{NatsJournal, NatsOptions};
use serde_json::Value;

/// splitmix64: a seed repeats a run.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Every event a client was shown: (execution, seq) → hash.
pub type Shown = Arc<Mutex<BTreeMap<(String, u64), String>>>;

/// The pause before a client tries a refused request again (a client's
/// backoff, not a synchronisation).
const RETRY: Duration = Duration::from_millis(20);

/// Follows `/v1/events/stream` of whichever server `base` names now,
/// resuming with `Last-Event-ID`, and records every event it is shown in
/// `seen`; runs until aborted.
pub async fn follow_all_events(http: reqwest::Client, base: impl Fn() -> String, seen: Shown) {
    let mut last: Option<String> = None;
    loop {
        let mut req = http.get(format!("{}/v1/events/stream", base()));
        if let Some(id) = &last {
            req = req.header("Last-Event-ID", id);
        }
        let mut r = match req.send().await {
            Ok(r) if r.status().is_success() => r,
            _ => {
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        let mut buf = String::new();
        while let Ok(Some(chunk)) = r.chunk().await {
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let frame: String = buf.drain(..end + 2).collect();
                let mut id = None;
                let mut data = None;
                for line in frame.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data = Some(v.trim().to_string());
                    }
                }
                if let (Some(id), Some(data)) = (id, data)
                    && let Ok(v) = serde_json::from_str::<Value>(&data)
                {
                    let key = (
                        v["executionId"].as_str().unwrap_or("").to_string(),
                        v["seq"].as_u64().unwrap_or(0),
                    );
                    seen.lock()
                        .unwrap()
                        .insert(key, v["hash"].as_str().unwrap_or("").to_string());
                    last = Some(id);
                }
            }
        }
    }
}

/// Every stream reads back whole from NATS, each event checked against its
/// chain as it is read; how many streams there are.
pub async fn every_stream_reads_back(options: NatsOptions) -> usize {
    let journal = NatsJournal::open(options).await.unwrap();
    let mut after = None;
    let mut streams = 0;
    loop {
        let page = journal.streams(after, 100).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.stream);
        for head in &page {
            let records = journal.read(head.stream, 1, usize::MAX).await.unwrap();
            assert_eq!(records.len() as u64, head.last_seq, "{head:?}");
            streams += 1;
        }
    }
    streams
}
