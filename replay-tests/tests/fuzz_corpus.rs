//! The fuzz targets of `fuzz/`, run on stable Rust as ordinary tests, so CI
//! exercises them without nightly or libFuzzer: every target over every file
//! of its seed corpus (`fuzz/corpus/<target>/`), then over generated inputs —
//! arbitrary bytes, and corpus files mutated by bit flips, truncations,
//! splices and inserted bytes. The bodies live in
//! `retrace_replay_tests::fuzzing`; a failure prints the minimal input.
//!
//! `PROPTEST_CASES=<n>` sets how many arbitrary inputs each target gets,
//! and as many mutated seeds (default 256 of each). The seed files that come
//! from the journal and the engine are written by the ignored test
//! `write_seed_corpus`:
//! `cargo test -p retrace-replay-tests --test fuzz_corpus -- --ignored write_seed_corpus`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::executor::block_on;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};
use retrace_engine::clock::SimClock;
use retrace_engine::machine::Event;
use retrace_engine::runtime::Engine;
use retrace_journal::store::memory::MemoryStore;
use retrace_journal::{EventLog, Journal, NewEvent, Options, StreamId};
use retrace_replay_tests::fuzzing::{self, ContentType, HttpInput, STREAM, T0_MS};
use retrace_replay_tests::world::{self, Calls, Generation, T0};
use serde_json::{Value, json};

type Body = fn(&[u8]);
/// Raw store entries: (key, value).
type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Every target: its name (the folder of its corpus, the `[[bin]]` of
/// `fuzz/Cargo.toml`) and its body.
const TARGETS: [(&str, Body); 7] = [
    ("workflow_definition", fuzzing::workflow_definition),
    ("expression", fuzzing::expression),
    ("journal_record", fuzzing::journal_record),
    ("journal_open", fuzzing::journal_open),
    ("event_decode", fuzzing::event_decode),
    ("replay_fold", fuzzing::replay_fold),
    ("http_request", fuzzing::http_request),
];

/// The whole seed corpus stays small enough to keep in the repository.
const CORPUS_BYTES_MAX: usize = 256 * 1024;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn corpus_dir(target: &str) -> PathBuf {
    repo().join("fuzz/corpus").join(target)
}

/// A target's seed files, by name.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir(target);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .filter(|(name, _)| !name.starts_with('.'))
        .collect();
    files.sort();
    files
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

/// Runs `body` on `input`, turning a panic into its message.
fn run(body: Body, input: &[u8]) -> Result<(), String> {
    catch_unwind(AssertUnwindSafe(|| body(input))).map_err(|panic| {
        panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a panic without a message".into())
    })
}

#[test]
fn every_target_has_a_small_seed_corpus() {
    let mut total = 0;
    for (target, _) in TARGETS {
        let files = corpus(target);
        assert!(!files.is_empty(), "{target} has no seed corpus");
        total += files.iter().map(|(_, bytes)| bytes.len()).sum::<usize>();
        let bin = format!("fuzz_targets/{target}.rs");
        let manifest = std::fs::read_to_string(repo().join("fuzz/Cargo.toml")).unwrap();
        assert!(
            manifest.contains(&bin),
            "fuzz/Cargo.toml has no [[bin]] {target}"
        );
        assert!(
            repo().join("fuzz").join(&bin).exists(),
            "fuzz/{bin} is missing"
        );
    }
    assert!(
        total <= CORPUS_BYTES_MAX,
        "the seed corpus is {total} bytes"
    );
}

/// `http_request` calls every endpoint the router serves, and no other.
#[test]
fn http_request_knows_every_route() {
    let ours: BTreeSet<(String, String)> = fuzzing::ENDPOINTS
        .iter()
        .filter(|e| e.method != "*")
        .map(|e| {
            // The router names parameters by what they hold, not whose.
            let path = ["execution", "agent", "task", "schedule", "webhook"]
                .iter()
                .fold(e.path.to_owned(), |p, k| {
                    p.replace(&format!("{{{k}}}"), "{id}")
                })
                .replace("{workflow}", "{name}")
                .replace("{event}", "{name}")
                .replace("{token}", "{name}");
            (e.method.to_owned(), path)
        })
        .collect();
    let router: BTreeSet<(String, String)> = retrace_api::router::routes()
        .into_iter()
        .map(|(method, path)| (method.to_string(), path.to_owned()))
        .collect();
    assert_eq!(
        ours, router,
        "fuzzing::ENDPOINTS and the router's table differ"
    );
}

#[test]
fn every_seed_runs_clean() {
    let mut failures = Vec::new();
    for (target, body) in TARGETS {
        for (name, bytes) in corpus(target) {
            if let Err(message) = run(body, &bytes) {
                failures.push(format!("{target}/{name}: {message}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "seeds that fail:\n{}",
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------
// Generated inputs
// ---------------------------------------------------------------------------

/// One change to a seed. Positions are taken modulo the input's length.
#[derive(Debug, Clone)]
enum Mutation {
    FlipBit {
        at: usize,
        bit: u8,
    },
    SetByte {
        at: usize,
        byte: u8,
    },
    Truncate {
        at: usize,
    },
    Insert {
        at: usize,
        bytes: Vec<u8>,
    },
    Remove {
        at: usize,
        len: usize,
    },
    /// This input up to `at`, then another seed from `from` on.
    Splice {
        seed: usize,
        at: usize,
        from: usize,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = any::<usize>();
    prop_oneof![
        4 => (at, 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit { at, bit }),
        2 => (at, prop_oneof![Just(0u8), Just(0xff), Just(b'\n'), any::<u8>()])
            .prop_map(|(at, byte)| Mutation::SetByte { at, byte }),
        1 => at.prop_map(|at| Mutation::Truncate { at }),
        2 => (at, prop::collection::vec(any::<u8>(), 1..9))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        1 => (at, 1usize..17).prop_map(|(at, len)| Mutation::Remove { at, len }),
        1 => (any::<usize>(), at, at)
            .prop_map(|(seed, at, from)| Mutation::Splice { seed, at, from }),
    ]
}

fn mutate(seed: &[u8], seeds: &[Vec<u8>], mutations: &[Mutation]) -> Vec<u8> {
    let mut out = seed.to_vec();
    for m in mutations {
        let len = out.len();
        let pos = |at: usize| if len == 0 { 0 } else { at % len };
        match m {
            Mutation::FlipBit { at, bit } if len > 0 => out[pos(*at)] ^= 1 << bit,
            Mutation::SetByte { at, byte } if len > 0 => out[pos(*at)] = *byte,
            Mutation::Truncate { at } => out.truncate(pos(*at)),
            Mutation::Insert { at, bytes } => {
                let at = if len == 0 { 0 } else { at % (len + 1) };
                out.splice(at..at, bytes.iter().copied());
            }
            Mutation::Remove { at, len: n } if len > 0 => {
                let at = pos(*at);
                out.drain(at..(at + n).min(len));
            }
            Mutation::Splice { seed, at, from } => {
                let other = &seeds[seed % seeds.len()];
                let from = if other.is_empty() {
                    0
                } else {
                    from % other.len()
                };
                out.truncate(pos(*at));
                out.extend_from_slice(&other[from..]);
            }
            _ => {}
        }
    }
    out
}

/// Runs `body` on `PROPTEST_CASES` arbitrary inputs and as many mutated seeds.
fn fuzz(target: &str, body: Body) {
    let seeds: Vec<Vec<u8>> = corpus(target).into_iter().map(|(_, b)| b).collect();
    let config = Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    };
    let check = |input: Vec<u8>| run(body, &input).map_err(TestCaseError::fail);
    let arbitrary = prop::collection::vec(any::<u8>(), 0..1024);
    report(
        target,
        TestRunner::new(config.clone()).run(&arbitrary, check),
    );
    let shared = Arc::new(seeds);
    let mutated = (any::<usize>(), prop::collection::vec(mutation(), 1..6))
        .prop_map(move |(i, ms)| mutate(&shared[i % shared.len()], &shared, &ms));
    report(target, TestRunner::new(config).run(&mutated, check));
}

fn report(target: &str, result: Result<(), TestError<Vec<u8>>>) {
    match result {
        Ok(()) => {}
        Err(TestError::Fail(why, input)) => panic!(
            "{target} fails on {} bytes: {why}\ninput (escaped): {}",
            input.len(),
            input.escape_ascii()
        ),
        Err(TestError::Abort(why)) => panic!("{target}: {why}"),
    }
}

#[test]
fn workflow_definition_on_generated_inputs() {
    fuzz("workflow_definition", fuzzing::workflow_definition);
}

#[test]
fn expression_on_generated_inputs() {
    fuzz("expression", fuzzing::expression);
}

#[test]
fn journal_record_on_generated_inputs() {
    fuzz("journal_record", fuzzing::journal_record);
}

#[test]
fn journal_open_on_generated_inputs() {
    fuzz("journal_open", fuzzing::journal_open);
}

#[test]
fn event_decode_on_generated_inputs() {
    fuzz("event_decode", fuzzing::event_decode);
}

#[test]
fn replay_fold_on_generated_inputs() {
    fuzz("replay_fold", fuzzing::replay_fold);
}

#[test]
fn http_request_on_generated_inputs() {
    fuzz("http_request", fuzzing::http_request);
}

// ---------------------------------------------------------------------------
// The seed corpus
// ---------------------------------------------------------------------------

/// Rewrites the generated part of the seed corpus (the files named `gen-*`):
/// workflow documents and expressions from `examples/workflows/` and
/// `docs/dsl.md`, journal records and stores written through the journal,
/// and event histories of real engine runs.
#[test]
#[ignore = "writes fuzz/corpus/; run it after a format change"]
fn write_seed_corpus() {
    let mut seeds: BTreeMap<&str, BTreeMap<String, Vec<u8>>> = BTreeMap::new();
    let documents = documents();
    seeds.insert("workflow_definition", documents.clone());
    seeds.insert("expression", expressions(&documents));
    seeds.insert("journal_record", records());
    seeds.insert("journal_open", stores());
    let histories = histories();
    seeds.insert("event_decode", one_event_per_kind(&histories));
    seeds.insert(
        "replay_fold",
        histories
            .iter()
            .map(|(name, payloads)| (name.clone(), fuzzing::encode_lines(payloads)))
            .collect(),
    );
    seeds.insert("http_request", http_requests());
    for (target, files) in seeds {
        write_generated(target, files);
    }
}

/// Rewrites the generated seeds of `http_request` only (see
/// [`http_requests`]):
/// `cargo test -p retrace-replay-tests --test fuzz_corpus -- --ignored write_http_request_seeds`.
#[test]
#[ignore = "writes fuzz/corpus/http_request/; run it after a change of the input format"]
fn write_http_request_seeds() {
    write_generated("http_request", http_requests());
}

/// Replaces the files named `gen-*` of `target`'s corpus by `files`.
fn write_generated(target: &str, files: BTreeMap<String, Vec<u8>>) {
    let dir = corpus_dir(target);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("gen-")
        {
            std::fs::remove_file(path).unwrap();
        }
    }
    for (name, bytes) in files {
        std::fs::write(dir.join(format!("gen-{name}")), bytes).unwrap();
    }
}

/// Every workflow document of the examples and of `docs/dsl.md`.
fn documents() -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let examples = repo().join("examples/workflows");
    for entry in std::fs::read_dir(examples).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        out.insert(format!("example-{name}"), std::fs::read(&path).unwrap());
    }
    let dsl = std::fs::read_to_string(repo().join("docs/dsl.md")).unwrap();
    let mut block: Option<(String, String)> = None;
    let mut n = 0;
    for line in dsl.lines() {
        match &mut block {
            None => {
                for syntax in ["json", "yaml"] {
                    if line.starts_with(&format!("```{syntax}")) {
                        block = Some((syntax.to_string(), String::new()));
                    }
                }
            }
            Some((syntax, text)) if line.starts_with("```") => {
                n += 1;
                out.insert(format!("dsl-{n:02}.{syntax}"), text.clone().into_bytes());
                block = None;
            }
            Some((_, text)) => {
                text.push_str(line);
                text.push('\n');
            }
        }
    }
    out
}

/// Every expression the documents write, alone and with a context.
fn expressions(documents: &BTreeMap<String, Vec<u8>>) -> BTreeMap<String, Vec<u8>> {
    fn walk(value: &Value, key: Option<&str>, out: &mut BTreeSet<String>) {
        match value {
            Value::String(s)
                if s.starts_with("${") || matches!(key, Some("expression" | "correlation")) =>
            {
                out.insert(s.clone());
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, None, out)),
            Value::Object(map) => map.iter().for_each(|(k, v)| walk(v, Some(k), out)),
            _ => {}
        }
    }
    let mut found = BTreeSet::new();
    for bytes in documents.values() {
        if let Ok(value) = serde_json::from_slice::<Value>(bytes) {
            walk(&value, None, &mut found);
        }
    }
    let mut out = BTreeMap::new();
    for (i, source) in found.iter().enumerate() {
        out.insert(format!("{i:02}"), source.clone().into_bytes());
    }
    let with_context = [
        ("size(input.items) > 0", json!({"input": {"items": [1, 2]}})),
        (
            "input.items.map(x, x * 2)",
            json!({"input": {"items": [1, 2, 3]}}),
        ),
        (
            "has(variables.a) ? variables.a : input.b",
            json!({"input": {"b": "x"}, "variables": {}}),
        ),
        ("${ $.input.dir + '/src' }", json!({"input": {"dir": "/w"}})),
        (
            "error.type == 'broke' && error.attempt >= 2u",
            json!({"error": {"type": "broke", "attempt": 2}}),
        ),
    ];
    for (i, (source, context)) in with_context.iter().enumerate() {
        let mut bytes = source.as_bytes().to_vec();
        bytes.push(0);
        bytes.extend_from_slice(context.to_string().as_bytes());
        out.insert(format!("context-{i}"), bytes);
    }
    out
}

/// The raw bytes of log records at position 2 as `journal_record` sees them:
/// the second event of [`EXECUTION`] after `fuzzing::first_event`, or the
/// first of another execution.
fn records() -> BTreeMap<String, Vec<u8>> {
    let other = StreamId::from_bytes([0x0e; 16]);
    let cases: Vec<(&str, StreamId, NewEvent)> = vec![
        (
            "json",
            STREAM,
            NewEvent::new(
                "step_completed",
                T0_MS + 5,
                br#"{"type":"step_completed","act":1,"step":"a","output":{"ok":true}}"#.to_vec(),
            ),
        ),
        (
            "empty-payload",
            STREAM,
            NewEvent::new("continued", T0_MS, Vec::new()),
        ),
        (
            "binary",
            STREAM,
            NewEvent::new("blob", u64::MAX, (0u8..=255).collect::<Vec<_>>()),
        ),
        (
            "long-kind",
            STREAM,
            NewEvent::new("k".repeat(128), 0, b"x".to_vec()),
        ),
        (
            "other-execution",
            other,
            NewEvent::new(
                "execution_started",
                T0_MS,
                br#"{"type":"execution_started"}"#.to_vec(),
            ),
        ),
    ];
    let mut out = BTreeMap::new();
    for (name, execution, event) in cases {
        let store = MemoryStore::new();
        let log = EventLog::in_memory(store.clone(), Options::default()).unwrap();
        block_on(log.append(STREAM, 1, vec![fuzzing::first_event()])).unwrap();
        let expected = if execution == STREAM { 2 } else { 1 };
        block_on(log.append(execution, expected, vec![event])).unwrap();
        drop(log);
        let record = store
            .raw_entries()
            .into_iter()
            .find(|(key, _)| *key == fuzzing::log_key(2))
            .unwrap()
            .1;
        out.insert(name.to_string(), record);
    }
    out
}

/// Whole stores, as `journal_open` reads them: written through the journal,
/// closed cleanly or copied while open (heads not yet checkpointed), and a
/// few with one known bug's trigger.
fn stores() -> BTreeMap<String, Vec<u8>> {
    let ids = [
        STREAM,
        StreamId::from_bytes([0x0e; 16]),
        StreamId::from_bytes([0xa1; 16]),
    ];
    let mut out = BTreeMap::new();
    let store = MemoryStore::new();
    let log = EventLog::in_memory(store.clone(), Options::default()).unwrap();
    out.insert(
        "empty".into(),
        fuzzing::encode_entries(&store.raw_entries()),
    );
    for round in 0..3u64 {
        for (i, id) in ids.iter().enumerate() {
            let next = round * (i as u64 + 1) + 1;
            let events = (0..=i as u64)
                .map(|k| {
                    NewEvent::new(
                        "e",
                        T0_MS + k,
                        format!("{{\"r\":{round},\"k\":{k}}}").into_bytes(),
                    )
                })
                .collect();
            block_on(log.append(*id, next, events)).unwrap();
        }
    }
    block_on(log.put_snapshot(ids[1], 2, b"{\"state\":2}".to_vec())).unwrap();
    out.insert(
        "three-executions-open".into(),
        fuzzing::encode_entries(&store.duplicate().raw_entries()),
    );
    drop(log);
    out.insert(
        "three-executions-closed".into(),
        fuzzing::encode_entries(&store.raw_entries()),
    );

    // Past seq 128, an execution has a second `x` index entry.
    let store = MemoryStore::new();
    let log = EventLog::in_memory(store.clone(), Options::default()).unwrap();
    let events = (0..130)
        .map(|k| NewEvent::new("e", k, Vec::new()))
        .collect();
    block_on(log.append(STREAM, 1, events)).unwrap();
    drop(log);
    out.insert(
        "indexed-130".into(),
        fuzzing::encode_entries(&store.raw_entries()),
    );

    // The triggers of bugs the targets found (all fixed): regression inputs.
    let mut record = vec![1u8; 41];
    record[1..17].copy_from_slice(STREAM.as_bytes());
    record[17..25].copy_from_slice(&1u64.to_le_bytes());
    let mut head_key = vec![b'h'];
    head_key.extend_from_slice(STREAM.as_bytes());
    let mut head_at_max = vec![0xff; 8];
    head_at_max.extend_from_slice(&[0; 40]);
    let mheads = |p: u64| (b"mheads".to_vec(), p.to_le_bytes().to_vec());
    let known: [(&str, Entries); 4] = [
        (
            "known-j1-j3-position-max",
            vec![(fuzzing::log_key(u64::MAX), record.clone())],
        ),
        (
            "known-j3-open-position-max",
            vec![(fuzzing::log_key(u64::MAX), Vec::new()), mheads(u64::MAX)],
        ),
        (
            "known-j4-append-position-max",
            vec![
                (fuzzing::log_key(u64::MAX - 1), Vec::new()),
                mheads(u64::MAX - 1),
            ],
        ),
        (
            "known-j5-head-seq-max",
            vec![(fuzzing::log_key(1), record), (head_key, head_at_max)],
        ),
    ];
    for (name, entries) in known {
        out.insert(name.into(), fuzzing::encode_entries(&entries));
    }
    out
}

/// The event payloads of every execution of a few engine runs, one history
/// per distinct sequence of event kinds.
fn histories() -> BTreeMap<String, Vec<Vec<u8>>> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut out: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    let mut kinds_seen = BTreeSet::new();
    let mut keep = |store: &MemoryStore, label: &str| {
        let log = EventLog::in_memory(store.duplicate(), Options::default()).unwrap();
        let mut by_execution: BTreeMap<StreamId, Vec<Vec<u8>>> = BTreeMap::new();
        for r in block_on(log.read_global(1, 100_000)).unwrap() {
            by_execution.entry(r.stream).or_default().push(r.payload);
        }
        for (n, payloads) in by_execution.into_values().enumerate() {
            let kinds: Vec<&str> = payloads
                .iter()
                .filter_map(|p| serde_json::from_slice::<Event>(p).ok().map(|e| e.kind()))
                .collect();
            if kinds.len() != payloads.len() || kinds.first() != Some(&"execution_started") {
                continue; // not an execution (the catalog's stream)
            }
            if kinds_seen.insert(kinds.join(",")) && out.len() < 14 {
                out.insert(format!("{label}-{n}"), payloads);
            }
        }
    };
    for seed in 0..12u64 {
        let store = rt.block_on(run_world(seed)).unwrap();
        keep(&store, &format!("world-{seed:02}"));
    }
    let store = rt.block_on(run_operated()).unwrap();
    keep(&store, "operated");
    out
}

/// A workflow with every step type, run by the deterministic world.
fn main_workflows() -> Vec<Value> {
    let task = |id: &str, retries: u32, compensate: bool| {
        let mut t =
            json!({"id": id, "type": "task", "capability": "work", "output": {id: "$.output"}});
        if retries > 0 {
            t["retry"] = json!({"maxAttempts": retries + 1, "interval": 250, "backoffRate": 2});
        }
        if compensate {
            t["compensate"] = json!({"capability": "undo"});
        }
        t
    };
    let mut s0 = task("s0", 1, true);
    s0["next"] = json!("s1");
    s0["onError"] = json!("recover");
    let mut s4t = task("s4t", 1, false);
    s4t["next"] = json!("s5");
    let mut s6 = task("s6", 0, true);
    s6["onFailure"] = json!("pause");
    vec![
        json!({"name": "helper", "steps": [task("h1", 2, false)]}),
        json!({"name": "main", "timeoutMs": 86_400_000, "steps": [
            s0,
            {"id": "s1", "type": "wait", "wait": {"seconds": 30}, "next": "s2"},
            {"id": "s2", "type": "event", "event": {"name": world::EVENT}, "next": "s3"},
            {"id": "s3", "type": "parallel", "next": "s4", "parallel": {"branches": [
                {"name": "a", "steps": [task("s3a", 1, true)]},
                {"name": "b", "steps": [task("s3b", 2, false)]}]}},
            {"id": "s4", "type": "decision", "decision": {
                "expression": "input.flag", "branches": {"true": "s4t"}, "default": "recover"}},
            s4t,
            {"id": "s5", "type": "subworkflow", "subworkflow": {"workflow": "helper"}, "next": "s6"},
            s6,
            {"id": "recover", "type": "task", "capability": "transform", "input": "recovered"}
        ]}),
    ]
}

async fn define(engine: &Engine, docs: &[Value]) -> anyhow::Result<()> {
    for d in docs {
        engine.define_json(d.to_string().as_bytes()).await?;
    }
    Ok(())
}

/// The kinds of the events that end an execution.
const ENDS: [&str; 5] = [
    "execution_completed",
    "execution_failed",
    "execution_compensated",
    "execution_cancelled",
    "execution_terminated",
];

/// One run of `main` in the world with `seed`; returns its store.
async fn run_world(seed: u64) -> anyhow::Result<MemoryStore> {
    let store = MemoryStore::new();
    let clock = SimClock::new(T0);
    let calls: Calls = Arc::new(Mutex::new(Vec::new()));
    let generation = Generation::open(1, &store, &clock, None, seed, &calls).await?;
    let engine = generation.engine.clone();
    define(&engine, &main_workflows()).await?;
    let id = engine.start(world::start_request("main")).await?.id;
    let mut events = engine.read().subscribe(id, 1);
    let guard = Duration::from_secs(20);
    tokio::time::timeout(guard, async {
        while let Some(Ok(recorded)) = events.next().await {
            match recorded.event {
                // A step that failed with `onFailure: pause` is skipped by the operator.
                Event::ExecutionPaused { .. } => {
                    engine.skip(id, json!({"skipped": true})).await?;
                }
                e if ENDS.contains(&e.kind()) => break,
                _ => {}
            }
        }
        anyhow::Ok(())
    })
    .await??;
    drop(generation);
    Ok(store)
}

/// An execution an operator pauses, resumes, signals and cancels.
async fn run_operated() -> anyhow::Result<MemoryStore> {
    let store = MemoryStore::new();
    let clock = SimClock::new(T0);
    let calls: Calls = Arc::new(Mutex::new(Vec::new()));
    let seed = (0..1000)
        .find(|&s| world::behaviour(s, "t0", 1).is_ok() && world::behaviour(s, "t0", 2).is_ok())
        .unwrap();
    let generation = Generation::open(1, &store, &clock, None, seed, &calls).await?;
    let engine = generation.engine.clone();
    let doc = json!({"name": "operated", "steps": [
        {"id": "t0", "type": "task", "capability": "work", "compensate": {"capability": "undo"}, "next": "e"},
        {"id": "e", "type": "event", "event": {"name": "never", "correlation": "input.flag"}}
    ]});
    define(&engine, &[doc]).await?;
    let id = engine.start(world::start_request("operated")).await?.id;
    let mut events = engine.read().subscribe(id, 1);
    let guard = Duration::from_secs(20);
    tokio::time::timeout(guard, async {
        while let Some(Ok(recorded)) = events.next().await {
            if recorded.event.kind() == "event_awaited" {
                break;
            }
        }
        engine.pause(id, "looking").await?;
        engine.signal(id, "other", json!({"n": 1}), None).await?;
        engine.resume(id).await?;
        engine.cancel(id, "enough", true).await?;
        engine.wait_until_ended(id).await?;
        anyhow::Ok(())
    })
    .await??;
    drop(generation);
    Ok(store)
}

/// The first payload of each event kind in `histories`.
fn one_event_per_kind(histories: &BTreeMap<String, Vec<Vec<u8>>>) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for payload in histories.values().flatten() {
        if let Ok(event) = serde_json::from_slice::<Event>(payload) {
            out.entry(event.kind().to_string())
                .or_insert_with(|| payload.clone());
        }
    }
    out
}

// ---------------------------------------------------------------------------
// HTTP requests
// ---------------------------------------------------------------------------

/// Requests for `http_request` ([`HttpInput`]): every example workflow
/// defined and validated (JSON or YAML by its extension), every `curl` of
/// `docs/api.md` (its `$ID`, `$AGENT` and `$TASK` standing for the seeded
/// objects), one request without a body per endpoint naming seeded objects,
/// and a few edge cases.
fn http_requests() -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let examples = repo().join("examples/workflows");
    for entry in std::fs::read_dir(examples).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let yaml = name.ends_with(".yaml") || name.ends_with(".yml");
        let content_type = if yaml {
            "application/yaml"
        } else {
            "application/json"
        };
        let body = std::fs::read(&path).unwrap();
        for (what, path) in [
            ("define", "/v1/workflows"),
            ("validate", "/v1/workflows/validate"),
        ] {
            let input = HttpInput {
                endpoint: fuzzing::endpoint_index("POST", path).unwrap(),
                content_type: fuzzing::content_type_index(Some(content_type)).unwrap(),
                body: body.clone(),
                ..HttpInput::default()
            };
            out.insert(format!("{what}-{name}"), input.encode());
        }
    }
    let api = std::fs::read_to_string(repo().join("docs/api.md")).unwrap();
    let mut n = 0;
    for words in curl_commands(&api) {
        if let Some((label, input)) = curl_request(&words) {
            n += 1;
            out.insert(format!("doc-{n:02}-{label}"), input.encode());
        }
    }
    assert!(n >= 20, "only {n} requests found in docs/api.md");
    for (i, endpoint) in fuzzing::ENDPOINTS.iter().enumerate() {
        let input = HttpInput {
            endpoint: i as u8,
            sources: 0b0101,
            ..HttpInput::default()
        };
        let label = file_label(&format!("{}{}", endpoint.method, endpoint.path));
        out.insert(format!("endpoint-{i:02}-{label}"), input.encode());
    }
    let index = |method, path| fuzzing::endpoint_index(method, path).unwrap();
    let json = fuzzing::content_type_index(Some("application/json")).unwrap();
    let edges = [
        (
            "too-large",
            HttpInput {
                endpoint: index("POST", "/v1/executions"),
                content_type: json,
                body: format!(
                    r#"{{"workflow":"greet","input":"{}"}}"#,
                    "x".repeat(fuzzing::HTTP_BODY_BYTES_MAX)
                )
                .into_bytes(),
                ..HttpInput::default()
            },
        ),
        (
            "stream-last-event-id",
            HttpInput {
                endpoint: index("GET", "/v1/executions/{execution}/events/stream"),
                sources: 0b01,
                extras: fuzzing::EXTRA_LAST_EVENT_ID,
                header: b"2".to_vec(),
                ..HttpInput::default()
            },
        ),
        (
            "skip-paused",
            HttpInput {
                endpoint: index("POST", "/v1/executions/{execution}/skip"),
                content_type: json,
                sources: 0b11,
                extras: fuzzing::EXTRA_CONTENT_LENGTH,
                body: br#"{"output":{"charged":false}}"#.to_vec(),
                ..HttpInput::default()
            },
        ),
        (
            "signal-gated",
            HttpInput {
                endpoint: index("POST", "/v1/executions/{execution}/signals/{event}"),
                content_type: json,
                sources: 0b1010,
                body: br#"{"payload":{"by":"fuzz"}}"#.to_vec(),
                ..HttpInput::default()
            },
        ),
        (
            "poll-then-fail",
            HttpInput {
                endpoint: index("POST", "/v1/tasks/{task}/fail"),
                content_type: json,
                sources: 0b01,
                body: br#"{"error":{"type":"broke","message":"it broke","retryable":false}}"#
                    .to_vec(),
                ..HttpInput::default()
            },
        ),
        (
            "path-not-utf8",
            HttpInput {
                endpoint: index("GET", "/v1/workflows/{workflow}"),
                params: [b"\xff\xfe".to_vec(), Vec::new()],
                ..HttpInput::default()
            },
        ),
        (
            "raw-publish-stream",
            HttpInput {
                endpoint: index("*", "{raw}"),
                extras: 1, // POST
                params: [b"/v1/events/stream".to_vec(), Vec::new()],
                ..HttpInput::default()
            },
        ),
        (
            "yaml-content-type-garbage",
            HttpInput {
                endpoint: index("POST", "/v1/workflows"),
                content_type: fuzzing::content_type_index(Some("x/y; q=\"")).unwrap(),
                header: b"application/yaml; charset=\"".to_vec(),
                body: b"name: x\nsteps: []\n".to_vec(),
                ..HttpInput::default()
            },
        ),
    ];
    for (name, input) in edges {
        out.insert(format!("edge-{name}"), input.encode());
    }
    out
}

/// The words of every `curl` command in the `sh` blocks of a Markdown
/// document, split as a shell would (quotes, `\` line continuations,
/// comments).
fn curl_commands(markdown: &str) -> Vec<Vec<String>> {
    let mut commands = Vec::new();
    let mut block: Option<String> = None;
    for line in markdown.lines() {
        match &mut block {
            None if line.starts_with("```sh") => block = Some(String::new()),
            None => {}
            Some(text) if line.starts_with("```") => {
                commands.extend(shell_words(text));
                block = None;
            }
            Some(text) => {
                text.push_str(line);
                text.push('\n');
            }
        }
    }
    commands.retain(|words| words.first().is_some_and(|w| w == "curl"));
    commands
}

/// `text` as shell commands, each a list of words.
fn shell_words(text: &str) -> Vec<Vec<String>> {
    let mut commands = Vec::new();
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                let w = word.get_or_insert_with(String::new);
                for q in chars.by_ref() {
                    if q == c {
                        break;
                    }
                    w.push(q);
                }
            }
            '\\' if chars.peek() == Some(&'\n') => {
                chars.next();
            }
            '#' if word.is_none() => {
                while chars.peek().is_some_and(|&n| n != '\n') {
                    chars.next();
                }
            }
            '\n' | ' ' | '\t' => {
                words.extend(word.take());
                if c == '\n' && !words.is_empty() {
                    commands.push(std::mem::take(&mut words));
                }
            }
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    if !words.is_empty() {
        commands.push(words);
    }
    commands
}

/// A `curl` command of `docs/api.md` as an input, with a label for its file
/// name; `None` for one whose body is a file.
fn curl_request(words: &[String]) -> Option<(String, HttpInput)> {
    let mut method = None;
    let mut headers = Vec::new();
    let mut body: Option<&str> = None;
    let mut url = None;
    let mut args = words[1..].iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-X" => method = args.next().map(String::as_str),
            "-H" => headers.extend(args.next().and_then(|h| h.split_once(':'))),
            "-d" | "--data-binary" => body = args.next().map(String::as_str),
            a if a.starts_with("$RETRACE") => url = Some(&a["$RETRACE".len()..]),
            _ => {}
        }
    }
    if body.is_some_and(|b| b.starts_with('@')) {
        return None;
    }
    let method = method.unwrap_or(if body.is_some() { "POST" } else { "GET" });
    let (path, query) = url?.split_once('?').unwrap_or((url?, ""));
    let mut input = HttpInput {
        query: query.as_bytes().to_vec(),
        body: body
            .unwrap_or("")
            .replace(DOCS_AGENT, "$AGENT")
            .into_bytes(),
        ..HttpInput::default()
    };
    let mut content_type = body.map(|_| "application/x-www-form-urlencoded");
    for (name, value) in &headers {
        let value = value.trim();
        match name.to_ascii_lowercase().as_str() {
            "content-type" => content_type = Some(value),
            "last-event-id" => {
                input.extras |= fuzzing::EXTRA_LAST_EVENT_ID;
                input.header = value.as_bytes().to_vec();
            }
            _ => {}
        }
    }
    input.content_type = fuzzing::content_type_index(content_type).unwrap();
    if fuzzing::CONTENT_TYPES[input.content_type as usize] == ContentType::HeaderLine {
        input.header = content_type.unwrap_or("").as_bytes().to_vec();
    }
    match route(method, path) {
        Some((endpoint, params)) => {
            input.endpoint = endpoint;
            for (i, (kind, value)) in params.into_iter().enumerate() {
                // The docs' ids stand for objects that exist, as here.
                let seeded = match (kind, value) {
                    ("execution", "$ID" | DOCS_EXECUTION)
                    | ("agent", "$AGENT")
                    | ("task", "$TASK") => Some(0),
                    ("execution", "$OTHER") | ("task", "$OTHER_TASK") => Some(1),
                    ("workflow", v) => fuzzing::SEEDED_WORKFLOWS.iter().position(|w| *w == v),
                    ("schedule", v) => fuzzing::SEEDED_SCHEDULES.iter().position(|w| *w == v),
                    ("capability", v) => fuzzing::SEEDED_CAPABILITIES.iter().position(|c| *c == v),
                    ("event", v) => fuzzing::SEEDED_EVENTS.iter().position(|e| *e == v),
                    _ => None,
                };
                match seeded {
                    Some(choice) => input.sources |= (choice as u8 + 1) << (2 * i),
                    None => input.params[i] = value.as_bytes().to_vec(),
                }
            }
        }
        None => {
            input.endpoint = fuzzing::endpoint_index("*", "{raw}").unwrap();
            input.extras |= fuzzing::RAW_METHODS.iter().position(|m| *m == method)? as u8;
            input.params[0] = path.as_bytes().to_vec();
        }
    }
    Some((file_label(&format!("{method}{path}")), input))
}

/// `text` as part of a file name: lowercase letters, digits and `_`, cut.
fn file_label(text: &str) -> String {
    text.to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(40)
        .collect()
}

/// A request's path parameters: (kind, value).
type Params<'a> = Vec<(&'static str, &'a str)>;

/// The execution and agent ids `docs/api.md`'s examples show.
const DOCS_EXECUTION: &str = "01a1fb96-2826-7012-96b6-9bd448d552cf";
const DOCS_AGENT: &str = "cdbe6540-610b-4e02-b9c4-c4b2faf83992";

/// The endpoint of [`fuzzing::ENDPOINTS`] that `method path` calls, and its
/// parameters (kind, value), preferring literal segments over parameters.
fn route<'a>(method: &str, path: &'a str) -> Option<(u8, Params<'a>)> {
    let segments: Vec<&str> = path.split('/').collect();
    // (literal segments, endpoint, parameters)
    let mut best: Option<(usize, u8, Params<'a>)> = None;
    for (i, endpoint) in fuzzing::ENDPOINTS.iter().enumerate() {
        if endpoint.method != method {
            continue;
        }
        let pattern: Vec<&'static str> = endpoint.path.split('/').collect();
        if pattern.len() != segments.len() {
            continue;
        }
        let mut literal = 0;
        let mut params = Vec::new();
        let fits = pattern.iter().zip(&segments).all(|(p, s)| {
            match p.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                Some(kind) => {
                    params.push((kind, *s));
                    true
                }
                None => {
                    literal += 1;
                    p == s
                }
            }
        });
        if fits && best.as_ref().is_none_or(|(l, _, _)| literal > *l) {
            best = Some((literal, i as u8, params));
        }
    }
    best.map(|(_, i, params)| (i, params))
}
