//! The bodies of the fuzz targets in `fuzz/fuzz_targets/`: one `pub fn` per
//! target, taking whatever bytes the fuzzer (or the stable test
//! `tests/fuzz_corpus.rs`) hands it.
//!
//! A body must return normally on every input: a damaged or hostile input
//! gives an error value, never a panic, a hang or an unbounded allocation.
//! So every input is cut to [`INPUT_BYTES_MAX`] and every loop here is
//! bounded. Where a body asserts something (a workflow re-reads from its
//! canonical form to the same version; a record reads back the same twice;
//! a rebuilt journal verifies clean), the assertion is a promise of the code
//! under test, and its failure is a bug there, not here.
//!
//! A panic that the code under test catches on a thread of its own (the
//! expression compiler's, the journal writer's) would be invisible to the
//! stable test, so the bodies turn the error such a panic leaves behind back
//! into a panic.
//!
//! `http_request` is the one body with state: a process-wide engine, seeded
//! once with workflows, executions and an agent so requests get past the
//! `404`s, on a current-thread runtime of its own that runs only while an
//! input does; see [`http_request`] and [`HttpInput`] for the input format.
//!
//! The bugs these targets found are fixed; their minimal triggers stay in
//! the seed corpus (`gen-known-*`) as regression inputs.

use std::collections::BTreeSet;

use futures::executor::block_on;
use retrace_engine::ExecutionId;
use retrace_engine::machine::{self, ExecutionState};
use retrace_engine::model::{DefinitionError, EXPRESSION_LEN_MAX, Expr, Workflow, branch_key};
use retrace_engine::store::codec;
use retrace_journal::store::memory::MemoryStore;
use retrace_journal::{
    Error as JournalError, EventLog, EventRecord, Journal, NewEvent, Options, StreamId,
    verify_store,
};
use serde_json::{Value, json};

mod http;
pub use http::*;

/// The longest input a body looks at; the rest is ignored.
pub const INPUT_BYTES_MAX: usize = 64 * 1024;
/// Most store entries `journal_open` builds from one input.
pub const ENTRIES_MAX: usize = 256;
/// Most events `replay_fold` journals from one input.
pub const EVENTS_MAX: usize = 256;
/// Most executions `journal_open` reads back.
const EXECUTIONS_MAX: usize = 16;
/// How many records one read asks for.
const READ_LIMIT: usize = 512;

/// The execution the replay targets write to.
pub const EXECUTION: ExecutionId = ExecutionId::from_bytes(*b"retrace-fuzz-exe");
/// Its stream: the one the journal targets write to.
pub const STREAM: StreamId = StreamId::from_bytes(*b"retrace-fuzz-exe");
/// The clock reading every fuzz event is recorded at.
pub const T0_MS: u64 = 1_700_000_000_000;

/// What `on_large_stack` reports when the CEL compiler panicked on its thread.
const COMPILER_PANICKED: &str = "the expression compiler failed unexpectedly";

fn capped(data: &[u8]) -> &[u8] {
    &data[..data.len().min(INPUT_BYTES_MAX)]
}

// ---------------------------------------------------------------------------
// Workflow definitions
// ---------------------------------------------------------------------------

/// Target `workflow_definition`: the bytes as a JSON document and, if they
/// are UTF-8, as a YAML document. A workflow that is accepted must re-read
/// from its canonical JSON to the same canonical form and version.
pub fn workflow_definition(data: &[u8]) {
    let data = capped(data);
    check_definition(Workflow::from_json(data), "JSON");
    if let Ok(text) = std::str::from_utf8(data) {
        check_definition(Workflow::from_yaml(text), "YAML");
    }
}

fn check_definition(read: Result<Workflow, DefinitionError>, syntax: &str) {
    let workflow = match read {
        Ok(workflow) => workflow,
        Err(error) => {
            // The panic's message stands alone, for the whole document; the
            // same words elsewhere are only the input quoted back.
            let panicked = error
                .problems
                .iter()
                .any(|p| p.path.is_empty() && p.message == COMPILER_PANICKED);
            assert!(!panicked, "the compiler panicked on a {syntax} definition");
            return;
        }
    };
    let canonical = workflow.canonical_json();
    let again = match Workflow::from_json(canonical.as_bytes()) {
        Ok(again) => again,
        Err(error) => panic!(
            "the canonical form of a valid {syntax} workflow does not read back: {error}\n\
             canonical: {canonical}"
        ),
    };
    assert_eq!(
        again.canonical_json(),
        canonical,
        "the canonical form is not a fixed point"
    );
    assert_eq!(
        again.version(),
        workflow.version(),
        "the version changed through the canonical form"
    );
    assert!(
        workflow.step(workflow.start()).is_some(),
        "the start step {} is not a step",
        workflow.start()
    );
    for step in workflow.steps() {
        assert!(
            workflow.step(&step.id).is_some(),
            "step {} is lost",
            step.id
        );
    }
    for input in [
        Value::Null,
        json!({}),
        json!({"flag": true, "items": [1, "x"]}),
    ] {
        let _ = workflow.check_input(&input);
    }
}

// ---------------------------------------------------------------------------
// Expressions
// ---------------------------------------------------------------------------

/// The context an expression is evaluated in when the input brings none.
pub fn default_context() -> Value {
    json!({
        "input": {
            "projectPath": "/work/app",
            "priority": "high",
            "flag": true,
            "items": [1, 2.5, "three", null, {"id": 4}],
            "user": {"name": "Ada", "email": "ada@example.com"},
            "n": 7,
        },
        "variables": {"done": false, "count": 3, "tags": ["a", "b"]},
        "output": {"issues": [], "ok": true},
        "error": {"type": "broke", "message": "it broke", "attempt": 2},
        "execution": {"id": "00000000-0000-0000-0000-000000000000"},
    })
}

/// Target `expression`: the bytes up to the first NUL are an expression's
/// source; the bytes after it, if they are a JSON object, its context.
/// An expression that compiles evaluates the same twice, and compiles and
/// evaluates the same wrapped in `${ … }`.
pub fn expression(data: &[u8]) {
    let data = capped(data);
    let (source, context) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], Some(&data[at + 1..])),
        None => (data, None),
    };
    let source = String::from_utf8_lossy(source);
    let context = context
        .and_then(|c| serde_json::from_slice::<Value>(c).ok())
        .filter(Value::is_object)
        .unwrap_or_else(default_context);
    let expr = match Expr::compile(&source) {
        Ok(expr) => expr,
        Err(message) => {
            // Exactly what `Expr::compile` says when the compiler panicked;
            // the same words elsewhere are only the source quoted back.
            assert!(
                message != format!("`{source}`: {COMPILER_PANICKED}"),
                "the compiler panicked"
            );
            return;
        }
    };
    assert_eq!(expr.source(), source, "the source was not kept as written");
    let first = expr.evaluate(&context);
    let second = expr.evaluate(&context);
    let same = match (&first, &second) {
        (Ok(a), Ok(b)) => a == b,
        (Err(a), Err(b)) => a.message == b.message,
        _ => false,
    };
    assert!(
        same,
        "evaluation is not deterministic: {first:?} vs {second:?}"
    );
    if let Ok(value) = &first {
        let _ = branch_key(value);
    }
    let wrapped_already = source.starts_with("${") && source.ends_with('}');
    if wrapped_already || source.len() + 3 > EXPRESSION_LEN_MAX {
        return;
    }
    let wrapped = format!("${{{source}}}");
    let wrapped = match Expr::compile(&wrapped) {
        Ok(expr) => expr,
        Err(message) => panic!("compiles bare but not wrapped in ${{ }}: {message}"),
    };
    // The messages name the source, which differs; the outcome must not.
    match (first, wrapped.evaluate(&context)) {
        (Ok(bare), Ok(inside)) => assert_eq!(bare, inside, "wrapping changed the value"),
        (Err(_), Err(_)) => {}
        (bare, inside) => panic!("wrapping changed the outcome: {bare:?} vs {inside:?}"),
    }
}

// ---------------------------------------------------------------------------
// Journal records
// ---------------------------------------------------------------------------

/// The store key of the log record at `position` (`docs/journal-format.md`).
pub fn log_key(position: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(9);
    key.push(b'l');
    key.extend_from_slice(&position.to_be_bytes());
    key
}

/// The first event of the journal the record target damages.
pub fn first_event() -> NewEvent {
    NewEvent::new("first", T0_MS, br#"{"seed":1}"#.to_vec())
}

fn placeholder_event() -> NewEvent {
    NewEvent::new("placeholder", T0_MS + 1, b"{}".to_vec())
}

/// Target `journal_record`: a journal holds two events of [`STREAM`]
/// (positions 1 and 2); the bytes replace the stored record at position 2,
/// as a damaged disk would, and everything is read back through the journal.
/// What reads back reads back the same twice, keeps its chain, and survives
/// an index rebuild and a restart; a rebuild that succeeds leaves a journal
/// that verifies clean.
pub fn journal_record(data: &[u8]) {
    let data = capped(data);
    let store = MemoryStore::new();
    let log = open_or_panic(&store);
    let appended = block_on(log.append(STREAM, 1, vec![first_event(), placeholder_event()]));
    if let Err(error) = appended {
        panic!("a fresh journal refused two events: {error}");
    }
    store.raw_put(log_key(2), data.to_vec());

    // The execution the damaged record claims, too.
    let streams = executions_in(&store.raw_entries());
    read_everything(&log, &streams);
    let _ = verify(&log);
    let rebuilt = live(block_on(log.rebuild_indexes()), "rebuild_indexes");
    if rebuilt.is_err() {
        return;
    }
    let before = read_everything(&log, &streams);
    match verify(&log) {
        Ok(report) => assert!(
            report.is_sound(),
            "a journal with freshly rebuilt indexes does not verify: {:?}",
            report.defects
        ),
        Err(error) => panic!("verify failed after a successful rebuild: {error}"),
    }
    check_rebuilt(&log);
    drop(log);
    let reopened = match EventLog::in_memory(store.clone(), Options::default()) {
        Ok(log) => log,
        Err(error) => panic!("a journal whose indexes were rebuilt does not reopen: {error}"),
    };
    let after = read_everything(&reopened, &streams);
    assert_eq!(before, after, "what reads back changed across a restart");
}

fn open_or_panic(store: &MemoryStore) -> EventLog {
    match EventLog::in_memory(store.clone(), Options::default()) {
        Ok(log) => log,
        Err(error) => panic!("an empty journal does not open: {error}"),
    }
}

/// A result of a journal whose writer must still be alive: `Closed` from a
/// journal that is still open means its writer thread died (panicked).
fn live<T>(result: Result<T, JournalError>, what: &str) -> Result<T, JournalError> {
    if let Err(JournalError::Closed) = &result {
        panic!("the journal writer died during {what}");
    }
    result
}

fn verify(log: &EventLog) -> Result<retrace_journal::VerifyReport, JournalError> {
    live(block_on(log.verify()), "verify")
}

/// What one round of reads saw, comparable across rounds (errors by message).
type Reads = Vec<Result<Vec<EventRecord>, String>>;

/// Reads the whole journal, globally and per execution, twice; checks the two
/// rounds agree and that every history that reads is a chain.
fn read_everything(log: &EventLog, streams: &[StreamId]) -> Reads {
    let round = || {
        let mut reads: Reads = Vec::new();
        reads.push(block_on(log.read_global(1, READ_LIMIT)).map_err(|e| e.to_string()));
        for &id in streams {
            for from_seq in [1, 2] {
                let read = block_on(log.read(id, from_seq, READ_LIMIT));
                if let Ok(records) = &read {
                    check_chain(id, from_seq, records);
                }
                reads.push(read.map_err(|e| e.to_string()));
            }
            let _ = block_on(log.head(id));
            let _ = block_on(log.latest_snapshot(id));
        }
        let _ = block_on(log.streams(None, EXECUTIONS_MAX));
        reads
    };
    let first = round();
    let second = round();
    assert_eq!(first, second, "two rounds of reads disagree");
    first
}

/// What `Journal::read` promises of an execution's history.
fn check_chain(id: StreamId, from_seq: u64, records: &[EventRecord]) {
    let mut previous: Option<&EventRecord> = None;
    for (offset, record) in (0u64..).zip(records) {
        assert_eq!(record.stream, id, "read returned another execution's event");
        assert_eq!(
            record.seq,
            from_seq + offset,
            "read returned a history with a gap"
        );
        if let Some(p) = previous {
            assert_eq!(
                record.prev_position, p.position,
                "read returned a broken back-link"
            );
            assert!(record.position > p.position, "read went back in the log");
        }
        previous = Some(record);
    }
}

/// After a successful rebuild every execution reads back whole.
fn check_rebuilt(log: &EventLog) {
    let heads = match block_on(log.streams(None, EXECUTIONS_MAX)) {
        Ok(heads) => heads,
        Err(error) => panic!("listing executions failed after a rebuild: {error}"),
    };
    for head in heads {
        if head.last_seq > READ_LIMIT as u64 {
            continue;
        }
        match block_on(log.read(head.stream, 1, READ_LIMIT)) {
            Ok(records) => assert_eq!(
                records.len() as u64,
                head.last_seq,
                "execution {} reads back {} of its {} events after a rebuild",
                head.stream,
                records.len(),
                head.last_seq
            ),
            Err(error) => panic!(
                "execution {} does not read back after a rebuild: {error}",
                head.stream
            ),
        }
    }
}

// ---------------------------------------------------------------------------
// Journal opening
// ---------------------------------------------------------------------------

/// Encodes raw store entries as `journal_open` reads them: per entry, the
/// key's length (one byte), the key, the value's length (two bytes,
/// little-endian) and the value. Longer keys and values are cut.
pub fn encode_entries(entries: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (key, value) in entries {
        let key = &key[..key.len().min(u8::MAX as usize)];
        let value = &value[..value.len().min(u16::MAX as usize)];
        out.push(key.len() as u8);
        out.extend_from_slice(key);
        out.extend_from_slice(&(value.len() as u16).to_le_bytes());
        out.extend_from_slice(value);
    }
    out
}

/// The inverse of [`encode_entries`]; a cut-off last entry keeps what there is.
pub fn decode_entries(data: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut entries = Vec::new();
    let mut rest = data;
    while let Some((&key_len, tail)) = rest.split_first() {
        if entries.len() == ENTRIES_MAX {
            break;
        }
        let (key, tail) = tail.split_at(tail.len().min(key_len as usize));
        let value_len = match tail {
            [a, b, ..] => u16::from_le_bytes([*a, *b]) as usize,
            _ => 0,
        };
        let tail = tail.get(2..).unwrap_or(&[]);
        let (value, tail) = tail.split_at(tail.len().min(value_len));
        entries.push((key.to_vec(), value.to_vec()));
        rest = tail;
    }
    entries
}

/// The executions a raw store mentions (in `l` records, `x`, `h` and `s` keys).
fn executions_in(entries: &[(Vec<u8>, Vec<u8>)]) -> Vec<StreamId> {
    let mut ids = BTreeSet::new();
    ids.insert(STREAM);
    for (key, value) in entries {
        let bytes = match key.first() {
            Some(b'x' | b'h' | b's') => key.get(1..17),
            Some(b'l') => value.get(1..17),
            _ => None,
        };
        if let Some(id) = bytes.and_then(|b| <[u8; 16]>::try_from(b).ok()) {
            ids.insert(StreamId::from_bytes(id));
        }
    }
    ids.into_iter().take(EXECUTIONS_MAX).collect()
}

/// Target `journal_open`: the bytes are raw store entries (see
/// [`encode_entries`]) — log records, index and head entries, snapshots and
/// metadata, in any state. Opening gives an error or a journal; on a journal
/// every read, `verify`, an append and an index rebuild give values or
/// errors, and after a successful rebuild every execution reads back whole
/// and the journal reopens.
pub fn journal_open(data: &[u8]) {
    let entries = decode_entries(capped(data));
    let store = MemoryStore::new();
    for (key, value) in &entries {
        store.raw_put(key.clone(), value.clone());
    }
    let _ = verify_store(&store);
    let log = match EventLog::in_memory(store.clone(), Options::default()) {
        Ok(log) => log,
        Err(error) => {
            assert!(!error.to_string().is_empty(), "an error without a message");
            return;
        }
    };
    let streams = executions_in(&entries);
    read_everything(&log, &streams);
    let _ = verify(&log);
    {
        let next = block_on(log.head(STREAM))
            .ok()
            .flatten()
            .map_or(1, |h| h.last_seq.saturating_add(1));
        let _ = live(
            block_on(log.append(STREAM, next, vec![first_event()])),
            "append",
        );
    }
    if live(block_on(log.rebuild_indexes()), "rebuild_indexes").is_err() {
        return;
    }
    check_rebuilt(&log);
    drop(log);
    if let Err(error) = EventLog::in_memory(store.clone(), Options::default()) {
        panic!("a journal whose indexes were rebuilt does not reopen: {error}");
    }
}

// ---------------------------------------------------------------------------
// Events and replay
// ---------------------------------------------------------------------------

/// A journal record of [`EXECUTION`] carrying `payload`.
fn record_with(payload: &[u8]) -> EventRecord {
    EventRecord {
        stream: STREAM,
        seq: 1,
        position: 1,
        prev_position: 0,
        recorded_at_ms: T0_MS,
        kind: "fuzz".into(),
        payload: payload.to_vec(),
        hash: [0; 32],
        format: retrace_journal::record::FORMAT_VERSION,
    }
}

/// Target `event_decode`: the bytes as the payload of a journal record,
/// decoded as the engine decodes events for replay. An event that decodes
/// encodes back to itself and can be applied to a new execution.
pub fn event_decode(data: &[u8]) {
    let record = record_with(capped(data));
    let Ok(event) = codec::decode(&record) else {
        return;
    };
    let encoded = match codec::encode(&event, T0_MS) {
        Ok(encoded) => encoded,
        Err(error) => panic!("a decoded event does not encode: {error}"),
    };
    assert_eq!(
        encoded.kind,
        event.kind(),
        "the record kind is not the event's"
    );
    match codec::decode(&record_with(&encoded.payload)) {
        Ok(back) => assert_eq!(back, event, "the event does not round-trip"),
        Err(error) => panic!("an encoded event does not decode: {error}"),
    }
    let mut state = ExecutionState::empty(EXECUTION);
    let _ = machine::apply(&mut state, 1, T0_MS, &event);
}

/// Encodes event payloads as `replay_fold` reads them: one per line.
pub fn encode_lines(payloads: &[Vec<u8>]) -> Vec<u8> {
    payloads.join(&b'\n')
}

/// Target `replay_fold`: each line of the input is the payload of one event
/// of [`EXECUTION`], journalled in order; the execution is then rebuilt from
/// the journal as recovery rebuilds it. Replay must give an error or a
/// state, the same one twice and the same one from any snapshot; a state
/// must survive its snapshot encoding, and its pending effects must derive.
pub fn replay_fold(data: &[u8]) {
    let payloads: Vec<&[u8]> = capped(data)
        .split(|&b| b == b'\n')
        .take(EVENTS_MAX)
        .collect();
    let store = MemoryStore::new();
    let log = open_or_panic(&store);
    let events: Vec<NewEvent> = (0u64..)
        .zip(&payloads)
        .map(|(i, p)| NewEvent::new("fuzz", T0_MS + i, p.to_vec()))
        .collect();
    if let Err(error) = block_on(log.append(STREAM, 1, events)) {
        panic!("a fresh journal refused {} events: {error}", payloads.len());
    }
    let empty = ExecutionState::empty(EXECUTION);
    let full = block_on(codec::fold_from(&log, empty.clone(), u64::MAX)).map_err(|e| e.to_string());
    let again =
        block_on(codec::fold_from(&log, empty.clone(), u64::MAX)).map_err(|e| e.to_string());
    assert_eq!(full, again, "replay is not deterministic");
    // Every prefix that folds is a state a snapshot could hold.
    let mut state = empty;
    let mut snapshot: Option<ExecutionState> = None;
    for (seq, payload) in (1u64..).zip(&payloads) {
        let Ok(event) = codec::decode(&record_with(payload)) else {
            break;
        };
        if machine::apply(&mut state, seq, T0_MS + seq - 1, &event).is_err() {
            break;
        }
        let restored = snapshot_round_trip(&state);
        if seq as usize == payloads.len().div_ceil(2) {
            snapshot = Some(restored);
        }
    }
    if let Some(snapshot) = snapshot {
        let resumed =
            block_on(codec::fold_from(&log, snapshot, u64::MAX)).map_err(|e| e.to_string());
        match (&full, &resumed) {
            (Ok(full), Ok(resumed)) => {
                assert_eq!(full, resumed, "replay from a snapshot differs")
            }
            (Err(_), Err(_)) => {}
            _ => panic!("replay from a snapshot differs: {full:?} vs {resumed:?}"),
        }
    }
    if let Ok(state) = &full {
        let effects = machine::pending_effects(state);
        for effect in &effects {
            let _ = effect.key();
        }
    }
}

/// `state` through its snapshot encoding and back, which must change nothing.
fn snapshot_round_trip(state: &ExecutionState) -> ExecutionState {
    let bytes = match codec::encode_state(state) {
        Ok(bytes) => bytes,
        Err(error) => panic!("a state does not encode: {error}"),
    };
    match serde_json::from_slice::<ExecutionState>(&bytes) {
        Ok(back) => {
            assert_eq!(&back, state, "a state does not survive its snapshot");
            back
        }
        Err(error) => panic!(
            "a state's snapshot does not decode: {error}\n{}",
            String::from_utf8_lossy(&bytes)
        ),
    }
}
