//! Trace tests of the pure state machine, written as data: every file under
//! `tests/traces/` is a script of commands, each followed by `----` and what
//! the machine did, so a reader sees "state, trigger → events" without
//! reading any Rust. The style is raft-rs's `datadriven`:
//!
//! ```text
//! # A comment line says what the next case shows.
//! complete task=2 output={"ok":true}
//! ----
//! task_completed {"act":2,"attempt":1,"output":{"ok":true},"task":"E.2.1"}
//! step_completed {"act":2,"output":{"ok":true},"step":"charge"}
//! execution_completed {"output":{"ok":true}}
//! ```
//!
//! A case is a command line, an optional body (up to `----`), and the
//! expected output (up to a blank line). Lines starting with `#` and blank
//! lines between cases are kept as they are.
//!
//! **Regenerating**: `UPDATE_EXPECT=1 cargo test -p retrace-core --test
//! machine_traces` rewrites every expected output in place with what the
//! machine does now. Read the diff before keeping it: an expected output is
//! a claim about the semantics (docs/dsl.md), not a recording. Without
//! `UPDATE_EXPECT` a mismatch fails with a line diff (`-` expected, `+`
//! actual).
//!
//! Commands (`<json>` is one JSON value, without spaces unless quoted or
//! inside brackets):
//!
//! - `workflow` with a JSON or YAML document as body: the workflow under
//!   test. Resets the execution, the clock (to 0) and the entropy (to 0).
//! - `catalog` with lines `name: v1 v2` as body: the other workflows the
//!   machine may start (subworkflows, handler workflows); the last version
//!   listed is the newest. Kept until the next `catalog`.
//! - `defaults retry=none|linear|exponential retries=N interval=MS
//!   task-timeout=MS max-transitions=N`: the engine-wide defaults (every
//!   argument optional). Kept until the next `defaults`.
//! - `limits history=N`: the engine's limits (`history` is the most events
//!   an execution's history holds; absent, the default). Kept until the
//!   next `limits`.
//! - `at ms=N`: move the fixed clock; `entropy value=N`: the random bits
//!   every later trigger gets.
//! - `start [input=<json>] [key=K] [priority=P] [signal=N [signal-payload=<json>]]
//!   [at=MS] [brief]`: `machine::start`, a new execution (with the same id)
//!   at `at` (default 0) on the clock; with `signal`, signal-with-start;
//!   `priority=P` gives it a priority (shown in `effects` when not 0).
//! - Triggers (`machine::handle`), each taking an optional `at=MS` that
//!   moves the clock first, and an optional flag `brief` that prints how
//!   many events of each kind and only the last two in full:
//!   `complete task=T [output=<json>]`, `fail task=T type=X [message=M]
//!   [retryable=B] [agent=A] [retry-after=MS]`, `timeout task=T [kind=K]`, `timer act=N`,
//!   `deadline act=N`,
//!   `signal name=N [payload=<json>] [correlation=<json>]`, `child-completed
//!   act=N [output=<json>]`, `child-failed act=N type=X [message=M]`,
//!   `pause [reason=R]`, `resume`, `continue`, `retry`, `skip
//!   [output=<json>]`, `redrive`, `cancel [compensate=B] [reason=R]`,
//!   `terminate [reason=R]`. A task `T` is an activation number (its
//!   outstanding attempt) or a task id such as `E.2.1`; a child is named by
//!   the activation `N` that started it.
//! - `effects`: `pending_effects` of the state, one per line.
//! - `state`: a summary of the state: status, live activations and what
//!   they wait for, variables, kept signals, deferred and held steps,
//!   compensation, output and error.
//! - `progress`: each entered step's standing (`machine::Progress`, folded
//!   from the recorded events), one per line: `step: state (runs N)`.
//!
//! A trigger prints the events it emitted, one per line: the kind, then the
//! rest of the event as compact JSON with sorted keys; or `rejected:` and
//! the refusal. In all output the execution id is written `E` (so task ids
//! read `E.<act>.<attempt>`), the id of the child started by activation `N`
//! is written `C<N>`, and the version of the workflow under test `V`.
//!
//! After every command the harness also checks what must always hold:
//! folding the recorded events from scratch gives the live state, every
//! event reads back as itself from its JSON, and a refused trigger changed
//! nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use retrace_core::ExecutionId;
use retrace_core::machine::{
    Activation, Ctx, Defaults, Effect, ErrorInfo, Event, ExecutionState, Limits, Progress,
    RetryStrategy, Role, StartParams, StartSignal, Trigger, Versions, Waiting, apply, child_id,
    handle, pending_effects, start,
};
use retrace_core::model::{Workflow, canonical_string};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------
// The runner: files of cases, expected outputs, rewriting, diffs.
// ---------------------------------------------------------------------------

/// One case of a trace file.
#[derive(Debug)]
struct Case {
    /// 1-based line of the command.
    line: usize,
    command: String,
    body: String,
    expected: String,
}

/// A trace file: its cases, between lines kept as they are.
#[derive(Debug)]
enum Chunk {
    Kept(String),
    Case(Case),
}

fn parse(text: &str) -> Vec<Chunk> {
    let lines: Vec<&str> = text.lines().collect();
    let mut chunks = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if line.trim().is_empty() || line.starts_with('#') {
            chunks.push(Chunk::Kept(line.to_string()));
            i += 1;
            continue;
        }
        let start = i;
        let mut body = String::new();
        i += 1;
        while i < lines.len() && lines[i] != "----" {
            body.push_str(lines[i]);
            body.push('\n');
            i += 1;
        }
        assert!(
            i < lines.len(),
            "line {}: `{line}` has no `----`",
            start + 1
        );
        i += 1;
        let mut expected = String::new();
        while i < lines.len() && !lines[i].trim().is_empty() {
            expected.push_str(lines[i]);
            expected.push('\n');
            i += 1;
        }
        chunks.push(Chunk::Case(Case {
            line: start + 1,
            command: line.to_string(),
            body,
            expected,
        }));
    }
    chunks
}

/// The file again, with `outputs` (one per case, in order) as expected.
fn rewrite(chunks: &[Chunk], outputs: &[String]) -> String {
    let mut out = String::new();
    let mut outputs = outputs.iter();
    for chunk in chunks {
        match chunk {
            Chunk::Kept(line) => {
                out.push_str(line);
                out.push('\n');
            }
            Chunk::Case(case) => {
                out.push_str(&case.command);
                out.push('\n');
                out.push_str(&case.body);
                out.push_str("----\n");
                out.push_str(outputs.next().expect("one output per case"));
            }
        }
    }
    out
}

/// A line diff of `expected` and `actual` (longest common subsequence).
fn diff(expected: &str, actual: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            let _ = writeln!(out, "  {}", a[i]);
            (i, j) = (i + 1, j + 1);
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            let _ = writeln!(out, "- {}", a[i]);
            i += 1;
        } else {
            let _ = writeln!(out, "+ {}", b[j]);
            j += 1;
        }
    }
    out
}

/// Runs every case of `path`; the mismatches, or none after rewriting the
/// file when `update` is set.
fn run_file(path: &Path, update: bool) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let chunks = parse(&text);
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let mut harness = Harness::new();
    let mut outputs = Vec::new();
    let mut failures = Vec::new();
    for chunk in &chunks {
        let Chunk::Case(case) = chunk else { continue };
        let at = format!("{name}:{}", case.line);
        let output = harness.run(&at, &case.command, &case.body);
        if output != case.expected {
            failures.push(format!(
                "{at}: {}\n{}",
                case.command,
                diff(&case.expected, &output)
            ));
        }
        outputs.push(output);
    }
    if update {
        let rewritten = rewrite(&chunks, &outputs);
        if rewritten != text {
            std::fs::write(path, rewritten).unwrap();
        }
        return Vec::new();
    }
    failures
}

#[test]
fn machine_traces() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/traces");
    let update = std::env::var_os("UPDATE_EXPECT").is_some();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no trace files in {}", dir.display());
    let failures: Vec<String> = files.iter().flat_map(|f| run_file(f, update)).collect();
    assert!(
        failures.is_empty(),
        "{} trace case(s) differ (UPDATE_EXPECT=1 rewrites them):\n\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------
// Commands: `key=value` arguments, values JSON or bare words.
// ---------------------------------------------------------------------------

/// Splits a command line at spaces outside quotes and brackets.
fn tokens(line: &str) -> Vec<String> {
    let (mut out, mut current, mut depth, mut quoted, mut escaped) =
        (Vec::new(), String::new(), 0i32, false, false);
    for c in line.chars() {
        if quoted {
            quoted = escaped || c != '"';
            escaped = !escaped && c == '\\';
        } else if c == '"' {
            quoted = true;
        } else if c == '{' || c == '[' {
            depth += 1;
        } else if c == '}' || c == ']' {
            depth -= 1;
        } else if c.is_whitespace() && depth == 0 {
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
            continue;
        }
        current.push(c);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// A command's arguments; each must be used, so a typo fails the case.
struct Args {
    at: String,
    values: BTreeMap<String, Option<String>>,
}

impl Args {
    fn parse(at: &str, words: &[String]) -> Args {
        let values = words
            .iter()
            .map(|w| match w.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (w.clone(), None),
            })
            .collect();
        Args {
            at: at.to_string(),
            values,
        }
    }

    fn raw(&mut self, key: &str) -> Option<String> {
        match self.values.remove(key) {
            Some(Some(v)) => Some(v),
            Some(None) => panic!("{}: `{key}` needs a value", self.at),
            None => None,
        }
    }

    fn flag(&mut self, key: &str) -> bool {
        match self.values.remove(key) {
            Some(None) => true,
            Some(Some(v)) => panic!("{}: `{key}` is a flag, not `{key}={v}`", self.at),
            None => false,
        }
    }

    fn json(&mut self, key: &str) -> Option<Value> {
        let raw = self.raw(key)?;
        Some(serde_json::from_str(&raw).unwrap_or_else(|e| {
            panic!("{}: `{key}={raw}` is not JSON: {e}", self.at);
        }))
    }

    /// A string: bare, or a JSON string when it starts with a quote.
    fn text(&mut self, key: &str) -> Option<String> {
        let raw = self.raw(key)?;
        if raw.starts_with('"') {
            return serde_json::from_str(&raw).ok();
        }
        Some(raw)
    }

    fn number(&mut self, key: &str) -> Option<u64> {
        let raw = self.raw(key)?;
        Some(raw.parse().unwrap_or_else(|_| {
            panic!("{}: `{key}={raw}` is not a number", self.at);
        }))
    }

    fn boolean(&mut self, key: &str) -> Option<bool> {
        let raw = self.raw(key)?;
        Some(raw.parse().unwrap_or_else(|_| {
            panic!("{}: `{key}={raw}` is not true or false", self.at);
        }))
    }

    fn need_text(&mut self, key: &str) -> String {
        let value = self.text(key);
        value.unwrap_or_else(|| panic!("{}: `{key}=` is required", self.at))
    }

    fn need_number(&mut self, key: &str) -> u64 {
        let value = self.number(key);
        value.unwrap_or_else(|| panic!("{}: `{key}=` is required", self.at))
    }

    fn done(self) {
        let left: Vec<&String> = self.values.keys().collect();
        assert!(left.is_empty(), "{}: unknown arguments {left:?}", self.at);
    }
}

// ---------------------------------------------------------------------------
// The harness: one workflow, one execution, a fixed clock.
// ---------------------------------------------------------------------------

/// The execution id every trace uses (written `E`).
const ID: ExecutionId = ExecutionId::from_bytes([0xee; 16]);

/// Other workflows' versions, newest last.
#[derive(Default)]
struct Catalog(BTreeMap<String, Vec<String>>);

impl Versions for Catalog {
    fn latest_version(&self, workflow: &str) -> Option<String> {
        self.0.get(workflow)?.last().cloned()
    }
    fn has_version(&self, workflow: &str, version: &str) -> bool {
        self.0
            .get(workflow)
            .is_some_and(|versions| versions.iter().any(|v| v == version))
    }
    fn limited(&self, _: &str) -> bool {
        false
    }
}

struct Harness {
    workflow: Option<Workflow>,
    catalog: Catalog,
    defaults: Defaults,
    limits: Limits,
    now_ms: u64,
    entropy: u64,
    state: Option<ExecutionState>,
    /// Every event with the time it was recorded at.
    history: Vec<(u64, Event)>,
}

impl Harness {
    fn new() -> Harness {
        Harness {
            workflow: None,
            catalog: Catalog::default(),
            defaults: Defaults::default(),
            limits: Limits::default(),
            now_ms: 0,
            entropy: 0,
            state: None,
            history: Vec::new(),
        }
    }

    /// Runs one command; its output, ending with a newline.
    fn run(&mut self, at: &str, command: &str, body: &str) -> String {
        let words = tokens(command);
        let mut args = Args::parse(at, &words[1..]);
        let output = match words[0].as_str() {
            "workflow" => self.define(at, body),
            "catalog" => {
                self.catalog = catalog(at, body);
                "ok".to_string()
            }
            "defaults" => {
                self.defaults = defaults(&mut args);
                "ok".to_string()
            }
            "limits" => {
                self.limits = Limits {
                    history_events_max: args
                        .number("history")
                        .unwrap_or(Limits::default().history_events_max),
                };
                "ok".to_string()
            }
            "at" => {
                self.now_ms = args.need_number("ms");
                "ok".to_string()
            }
            "entropy" => {
                self.entropy = args.need_number("value");
                "ok".to_string()
            }
            "start" => self.start(&mut args),
            "effects" => self.effects(),
            "state" => self.summary(),
            "progress" => self.progress(),
            _ => self.trigger(&mut args, &words[0]),
        };
        args.done();
        self.check(at);
        let mut output = self.readable(&output);
        output.push('\n');
        output
    }

    fn define(&mut self, at: &str, body: &str) -> String {
        let parsed = if body.trim_start().starts_with('{') {
            Workflow::from_json(body.as_bytes())
        } else {
            Workflow::from_yaml(body)
        };
        let workflow = parsed.unwrap_or_else(|e| panic!("{at}: {e}"));
        *self = Harness {
            workflow: Some(workflow),
            catalog: std::mem::take(&mut self.catalog),
            defaults: self.defaults.clone(),
            limits: self.limits,
            ..Harness::new()
        };
        "ok".to_string()
    }

    fn start(&mut self, args: &mut Args) -> String {
        self.now_ms = args.number("at").unwrap_or(0);
        let brief = args.flag("brief");
        let params = StartParams {
            input: args.json("input").unwrap_or_else(|| json!({})),
            parent: None,
            idempotency_key: args.text("key"),
            priority: args.number("priority").map(|p| p as u8),
            tags: Default::default(),
            signal: args.text("signal").map(|name| StartSignal {
                name,
                payload: args.json("signal-payload").unwrap_or(Value::Null),
                correlation: None,
            }),
        };
        let workflow = self.workflow.as_ref().expect("`workflow` before `start`");
        let ctx = Ctx {
            now_ms: self.now_ms,
            entropy: self.entropy,
            versions: &self.catalog,
            defaults: &self.defaults,
            limits: &self.limits,
            by: None,
            agent: None,
            reason: None,
            placement: None,
        };
        match start(ID, workflow, &ctx, params) {
            Ok((state, events)) => {
                self.state = Some(state);
                self.history = events.iter().map(|e| (self.now_ms, e.clone())).collect();
                render_events(&events, brief)
            }
            Err(rejection) => format!("rejected: {rejection}"),
        }
    }

    fn trigger(&mut self, args: &mut Args, command: &str) -> String {
        if let Some(ms) = args.number("at") {
            self.now_ms = ms;
        }
        let brief = args.flag("brief");
        let trigger = self.parse_trigger(args, command);
        let (Some(workflow), Some(state)) = (self.workflow.as_ref(), self.state.as_mut()) else {
            panic!("{}: `start` before `{command}`", args.at);
        };
        let ctx = Ctx {
            now_ms: self.now_ms,
            entropy: self.entropy,
            versions: &self.catalog,
            defaults: &self.defaults,
            limits: &self.limits,
            by: None,
            agent: None,
            reason: None,
            placement: None,
        };
        let before = state.clone();
        match handle(state, workflow, &ctx, trigger) {
            Ok(events) => {
                let now = self.now_ms;
                self.history.extend(events.iter().map(|e| (now, e.clone())));
                render_events(&events, brief)
            }
            Err(rejection) => {
                assert_eq!(
                    *state, before,
                    "{}: refused, yet the state changed",
                    args.at
                );
                format!("rejected: {rejection}")
            }
        }
    }

    fn parse_trigger(&self, args: &mut Args, command: &str) -> Trigger {
        let error = |args: &mut Args| {
            let mut error = ErrorInfo::new(
                args.need_text("type"),
                args.text("message").unwrap_or_else(|| "it broke".into()),
            );
            error.retryable = args.boolean("retryable");
            error.agent = args.text("agent");
            error
        };
        let child = |args: &mut Args| child_id(ID, args.need_number("act"));
        let reason = |args: &mut Args| args.text("reason").unwrap_or_else(|| "operator".into());
        match command {
            "complete" => Trigger::TaskCompleted {
                task: self.task(args),
                output: args.json("output").unwrap_or(Value::Null),
            },
            "fail" => Trigger::TaskFailed {
                task: self.task(args),
                error: error(args),
                retry_after_ms: args.number("retry-after"),
            },
            "timeout" => Trigger::TaskTimedOut {
                task: self.task(args),
                kind: args.text("kind").unwrap_or_else(|| "start_to_close".into()),
            },
            "deadline" => Trigger::DeadlinePassed {
                act: args.need_number("act"),
            },
            "timer" => Trigger::TimerFired {
                act: args.need_number("act"),
            },
            "signal" => Trigger::Signal {
                name: args.need_text("name"),
                payload: args.json("payload").unwrap_or(Value::Null),
                correlation: args.json("correlation"),
            },
            "child-completed" => Trigger::ChildCompleted {
                child: child(args),
                output: args.json("output").unwrap_or(Value::Null),
            },
            "child-failed" => Trigger::ChildFailed {
                child: child(args),
                error: error(args),
            },
            "pause" => Trigger::Pause {
                reason: reason(args),
            },
            "resume" => Trigger::Resume,
            "continue" => Trigger::Continue,
            "limit-acquired" => Trigger::LimitAcquired,
            "retry" => Trigger::Retry,
            "skip" => Trigger::Skip {
                output: args.json("output").unwrap_or(Value::Null),
            },
            "redrive" => Trigger::Redrive,
            "cancel" => Trigger::Cancel {
                compensate: args.boolean("compensate").unwrap_or(false),
                reason: reason(args),
            },
            "terminate" => Trigger::Terminate {
                reason: reason(args),
            },
            other => panic!("{}: unknown command `{other}`", args.at),
        }
    }

    /// `task=N` (the outstanding attempt of activation N) or `task=E.N.A`.
    fn task(&self, args: &mut Args) -> String {
        let raw = args.need_text("task");
        if let Some(rest) = raw.strip_prefix("E.") {
            return format!("{ID}.{rest}");
        }
        let act: u64 = raw.parse().unwrap_or_else(|_| {
            panic!("{}: `task={raw}` is neither N nor E.N.A", args.at);
        });
        match self
            .state
            .as_ref()
            .and_then(|s| s.activations.get(&act).map(|a| &**a))
        {
            Some(Activation {
                waiting: Waiting::Task { task, .. },
                ..
            }) => task.clone(),
            _ => panic!("{}: activation {act} has no outstanding task", args.at),
        }
    }

    fn effects(&self) -> String {
        /// A priority is shown only when it is not the default.
        fn shown_priority(priority: u8) -> String {
            match priority {
                0 => String::new(),
                p => format!(" priority={p}"),
            }
        }
        let state = self.state.as_ref().expect("`start` before `effects`");
        let lines: Vec<String> = pending_effects(state)
            .into_iter()
            .map(|effect| match effect {
                Effect::Task {
                    task,
                    act,
                    step,
                    capability,
                    attempt,
                    input,
                    timeouts,
                    priority,
                    fairness_key,
                    agent_version,
                } => format!(
                    "task {task} act={act} step={step} capability={capability} \
                     attempt={attempt} input={} timeouts={}{}{}{}",
                    compact(&input),
                    compact(&json!(timeouts)),
                    shown_priority(priority),
                    fairness_key
                        .map(|k| format!(" fairness={k}"))
                        .unwrap_or_default(),
                    agent_version
                        .map(|v| format!(" agent-version={v}"))
                        .unwrap_or_default()
                ),
                Effect::Timer { act, due_at_ms } => format!("timer act={act} due={due_at_ms}"),
                Effect::Deadline { act, due_at_ms } => {
                    format!("deadline act={act} due={due_at_ms}")
                }
                Effect::Await {
                    act,
                    name,
                    correlation,
                } => match correlation {
                    Some(c) => format!("await act={act} name={name} correlation={}", compact(&c)),
                    None => format!("await act={act} name={name}"),
                },
                Effect::Continue { seq } => format!("continue seq={seq}"),
                Effect::Child {
                    act,
                    child,
                    workflow,
                    version,
                    input,
                    priority,
                } => format!(
                    "child {child} act={act} workflow={workflow} version={version} input={}{}",
                    compact(&input),
                    shown_priority(priority)
                ),
            })
            .collect();
        if lines.is_empty() {
            return "(none)".to_string();
        }
        lines.join("\n")
    }

    /// Each entered step's standing, folded from the recorded events.
    fn progress(&self) -> String {
        let id = self.state.as_ref().expect("`start` before `progress`").id;
        let mut state = ExecutionState::empty(id);
        let mut progress = Progress::default();
        for (seq, (at_ms, event)) in (1u64..).zip(&self.history) {
            progress.observe(&state, event);
            apply(&mut state, seq, *at_ms, event).expect("the history folds");
        }
        let steps = progress.steps(&state);
        if steps.is_empty() {
            return "no step entered".to_string();
        }
        steps
            .iter()
            .map(|(step, p)| format!("{step}: {} (runs {})", p.state.as_str(), p.runs))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn summary(&self) -> String {
        let s = self.state.as_ref().expect("`start` before `state`");
        let mut out = format!("status: {}", s.status.as_str());
        for a in s.activations.values() {
            let thread = a
                .thread
                .map(|t| format!(" [{}/{}]", t.parallel, t.branch))
                .unwrap_or_default();
            let role = match &a.role {
                Role::Step => String::new(),
                Role::Compensation { of } => format!(" undoing {of}"),
                Role::Handler { .. } => " handler".to_string(),
            };
            let _ = write!(out, "\nact {} {}{thread}{role}: ", a.act, a.step);
            out.push_str(&waiting(&a.waiting));
        }
        let mut line = |name: &str, value: Value| {
            let _ = write!(out, "\n{name}: {}", compact(&value));
        };
        if !s.variables.is_empty() {
            line("variables", json!(s.variables));
        }
        if !s.signals.is_empty() {
            line("kept signals", json!(s.signals));
        }
        if !s.deferred.is_empty() {
            line("deferred", json!(s.deferred));
        }
        if !s.failed_steps.is_empty() {
            line("held", json!(s.failed_steps));
        }
        for m in &s.failed_maps {
            line(&format!("failed map {}", m.step), json!(m.states));
        }
        if let Some(c) = &s.compensation {
            line("compensation", json!(c));
        }
        if let Some(output) = &s.output {
            line("output", output.clone());
        }
        if let Some(error) = &s.error {
            line("error", json!(error));
        }
        out
    }

    /// Output with the long ids and the version written short.
    fn readable(&self, text: &str) -> String {
        let mut text = text.replace(&ID.to_string(), "E");
        if let Some(wf) = &self.workflow {
            text = text.replace(wf.version(), "V");
        }
        let acts = self.state.as_ref().map_or(0, |s| s.next_act).max(64);
        for act in (1..=acts).rev() {
            text = text.replace(&child_id(ID, act).to_string(), &format!("C{act}"));
        }
        text
    }

    /// What must hold after every command.
    fn check(&self, at: &str) {
        let Some(live) = &self.state else { return };
        let mut folded = ExecutionState::empty(ID);
        for (seq, (at_ms, event)) in self.history.iter().enumerate() {
            let json = serde_json::to_string(event).unwrap();
            let back: Event = serde_json::from_str(&json).unwrap();
            assert_eq!(&back, event, "{at}: {json} does not read back as itself");
            apply(&mut folded, seq as u64 + 1, *at_ms, event)
                .unwrap_or_else(|e| panic!("{at}: replay refused an event: {e}"));
        }
        assert_eq!(
            &folded, live,
            "{at}: replaying the events differs from live"
        );
    }
}

fn catalog(at: &str, body: &str) -> Catalog {
    let mut catalog = Catalog::default();
    for line in body.lines().filter(|l| !l.trim().is_empty()) {
        let (name, versions) = line
            .split_once(':')
            .unwrap_or_else(|| panic!("{at}: `{line}` is not `name: v1 v2`"));
        let versions = versions.split_whitespace().map(str::to_string).collect();
        catalog.0.insert(name.trim().to_string(), versions);
    }
    catalog
}

fn defaults(args: &mut Args) -> Defaults {
    let strategy = match args.text("retry").as_deref() {
        None | Some("none") => RetryStrategy::None,
        Some("linear") => RetryStrategy::Linear,
        Some("exponential") => RetryStrategy::Exponential,
        Some(other) => panic!("{}: unknown retry strategy {other}", args.at),
    };
    let base = Defaults::default();
    let mut defaults = Defaults::with_retry_strategy(
        strategy,
        args.number("retries").unwrap_or(0) as u32,
        args.number("interval").unwrap_or(1000),
        args.number("task-timeout").unwrap_or(base.task_timeout_ms),
    );
    defaults.max_transitions = args
        .number("max-transitions")
        .unwrap_or(base.max_transitions);
    defaults
}

/// Compact JSON with sorted keys, whatever `serde_json`'s features.
fn compact(value: &Value) -> String {
    canonical_string(value)
}

/// One line per event: its kind, then its fields as compact JSON.
fn render_event(event: &Event) -> String {
    let mut value = serde_json::to_value(event).unwrap();
    if let Some(fields) = value.as_object_mut() {
        fields.remove("type");
        if fields.is_empty() {
            return event.kind().to_string();
        }
    }
    format!("{} {}", event.kind(), compact(&value))
}

fn render_events(events: &[Event], brief: bool) -> String {
    if events.is_empty() {
        return "(no events)".to_string();
    }
    if !brief || events.len() <= 2 {
        return events
            .iter()
            .map(render_event)
            .collect::<Vec<_>>()
            .join("\n");
    }
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for event in events {
        match counts.iter_mut().find(|(kind, _)| *kind == event.kind()) {
            Some((_, n)) => *n += 1,
            None => counts.push((event.kind(), 1)),
        }
    }
    let counts: Vec<String> = counts.iter().map(|(k, n)| format!("{k} ×{n}")).collect();
    let last: Vec<String> = events[events.len() - 2..]
        .iter()
        .map(render_event)
        .collect();
    format!(
        "{} events: {}\n… last two:\n{}",
        events.len(),
        counts.join(", "),
        last.join("\n")
    )
}

/// What an activation waits for, in a few words.
fn waiting(waiting: &Waiting) -> String {
    match waiting {
        Waiting::Starting => "starting".to_string(),
        Waiting::Task {
            attempt,
            task,
            capability,
            ..
        } => format!("task {task} ({capability}, attempt {attempt})"),
        Waiting::Retry { attempt, due_at_ms } => {
            format!("retry (attempt {attempt} at {due_at_ms})")
        }
        Waiting::Timer { due_at_ms } => format!("timer (due at {due_at_ms})"),
        Waiting::Event {
            name,
            correlation,
            timeout_at_ms,
        } => {
            let mut out = format!("event {name}");
            if let Some(c) = correlation {
                let _ = write!(out, " correlation={}", compact(c));
            }
            if let Some(t) = timeout_at_ms {
                let _ = write!(out, " (times out at {t})");
            }
            out
        }
        Waiting::Child {
            child,
            workflow,
            version,
            ..
        } => format!("child {child} ({workflow} {version})"),
        Waiting::Branches { outputs } => {
            let ended: Vec<usize> = outputs.iter().map(|(b, _)| *b).collect();
            format!("branches (ended: {ended:?})")
        }
        Waiting::Items(items) => format!(
            "items ({} of {} ended, {} failed, {} running, next {:?})",
            items.ended,
            items.todo.len(),
            items.failed,
            items.launched - items.ended,
            items.next_to_launch()
        ),
    }
}
