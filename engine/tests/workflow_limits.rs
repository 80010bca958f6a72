//! Workflow limits on a simulated clock: `concurrency` per key and
//! `rateLimit` per period; waiting executions deferred, not refused; what
//! holds each; pause, cancel and redrive; recovery from the journal alone.
//!
//! Invariant 33 (a limit is never exceeded, across crashes) is checked on
//! the whole journal in position order: at no position do more executions
//! of one key hold a slot than its limit ([`max_holding`]).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::support;

use std::collections::BTreeMap;
use std::time::Duration;

use retrace_engine::ExecutionId;
use retrace_engine::machine::Status;
use retrace_engine::runtime::{Engine, StartRequest};
use serde_json::{Value, json};
use support::{T0, World};

/// Holds until its execution is sent `go`.
fn gated(limits: Value) -> Value {
    let mut doc = json!({"name": "gated",
        "steps": [{"id": "gate", "type": "event", "event": {"name": "go"}}]});
    for (k, v) in limits.as_object().unwrap() {
        doc[k] = v.clone();
    }
    doc
}

/// The most executions of each key that held a concurrency slot at once,
/// over the whole journal in position order.
async fn max_holding(engine: &Engine) -> BTreeMap<String, usize> {
    let peaks = engine.read().limit_peaks().await.unwrap();
    peaks.into_iter().map(|p| (p.key, p.peak)).collect()
}

/// Waits (in real time, bounded) until `done` holds of the execution's state:
/// the limiter's loop runs on its own task.
async fn until(
    w: &World,
    id: ExecutionId,
    done: impl Fn(&retrace_engine::machine::ExecutionState) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let state = w.state(id).await;
        if done(&state) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "execution {id} never got there: {state:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn acquired(state: &retrace_engine::machine::ExecutionState) -> bool {
    state
        .limits
        .as_ref()
        .is_some_and(|g| !g.waiting && !g.acquired_at_ms.is_empty())
}

async fn go(w: &World, id: ExecutionId) {
    w.engine.signal(id, "go", json!({}), None).await.unwrap();
}

#[tokio::test]
async fn a_concurrency_limit_lets_limit_run_per_key_and_the_next_in_when_one_ends() {
    let w = World::new().await;
    w.define(gated(
        json!({"concurrency": {"key": "$.input.customer", "limit": 2}}),
    ))
    .await;
    let a1 = w.start("gated", json!({"customer": "a"})).await;
    let a2 = w.start("gated", json!({"customer": "a"})).await;
    let a3 = w.start("gated", json!({"customer": "a"})).await;
    let b1 = w.start("gated", json!({"customer": "b"})).await;
    for id in [a1, a2, b1] {
        w.wait_for(id, "event_awaited").await;
    }
    // a3 waits: its first step is deferred, and it says what holds it.
    let state = w.state(a3).await;
    assert!(state.waiting_for_limit(), "{state:?}");
    assert_eq!(state.status, Status::Running);
    assert!(state.activations.is_empty());
    assert_eq!(state.deferred.len(), 1);
    let held = w.engine.limit_holding(&state).unwrap();
    assert_eq!(
        (
            held.name.as_str(),
            held.key.as_str(),
            held.limit,
            held.in_use
        ),
        ("concurrency", "a", 2, 2)
    );
    assert_eq!(w.engine.limit_waiting(), 1);

    go(&w, a1).await;
    w.ended(a1).await;
    w.wait_for(a3, "event_awaited").await;
    for id in [a2, a3, b1] {
        go(&w, id).await;
        assert_eq!(w.ended(id).await.status, Status::Completed);
    }
    let max = max_holding(&w.engine).await;
    assert_eq!(max, BTreeMap::from([("a".into(), 2), ("b".into(), 1)]));
    // a3 took its slot only after a1 ended.
    let kinds = w.kinds(a3).await;
    assert_eq!(
        &kinds[..4],
        [
            "execution_started",
            "limit_waiting",
            "step_deferred",
            "limit_acquired"
        ]
    );
}

#[tokio::test]
async fn a_rate_limit_lets_limit_start_per_period_and_the_rest_wait_for_room() {
    let w = World::new().await;
    w.define(
        json!({"name": "rated", "rateLimit": {"limit": 2, "periodMs": 10_000},
        "steps": [{"id": "a", "type": "task", "capability": "noop"}]}),
    )
    .await;
    let ids = [
        w.start("rated", json!({})).await,
        w.start("rated", json!({})).await,
        w.start("rated", json!({})).await,
    ];
    w.ended(ids[0]).await;
    w.ended(ids[1]).await;
    let third = w.state(ids[2]).await;
    assert!(third.waiting_for_limit());
    let held = w.engine.limit_holding(&third).unwrap();
    assert_eq!(
        (held.name.as_str(), held.key.as_str(), held.in_use),
        ("rateLimit", "", 2)
    );
    // Not a moment before the first start leaves the window.
    w.clock.advance(9_999);
    w.clock.advance(1);
    let state = w.ended(ids[2]).await;
    assert_eq!(state.status, Status::Completed);
    let gate = state.limits.unwrap();
    assert_eq!(gate.acquired_at_ms, vec![T0 + 10_000]);
}

#[tokio::test]
async fn a_paused_waiting_execution_gives_its_turn_and_a_cancelled_holder_its_slot() {
    let w = World::new().await;
    w.define(gated(json!({"concurrency": {"limit": 1}}))).await;
    let first = w.start("gated", json!({})).await;
    let second = w.start("gated", json!({})).await;
    let third = w.start("gated", json!({})).await;
    w.wait_for(first, "event_awaited").await;
    w.engine.pause(second, "hold on").await.unwrap();
    w.engine
        .cancel(first, "no longer needed", false)
        .await
        .unwrap();
    // The paused one is passed over; the third gets the slot.
    w.wait_for(third, "event_awaited").await;
    assert!(w.state(second).await.waiting_for_limit());
    go(&w, third).await;
    w.ended(third).await;
    w.engine.resume(second).await.unwrap();
    w.wait_for(second, "event_awaited").await;
    go(&w, second).await;
    assert_eq!(w.ended(second).await.status, Status::Completed);
    assert_eq!(max_holding(&w.engine).await.get(""), Some(&1));
}

#[tokio::test]
async fn limits_hold_across_a_crash_from_the_journal_alone() {
    let mut w = World::new().await;
    w.define(gated(
        json!({"concurrency": {"key": "$.input.k", "limit": 1},
        "rateLimit": {"key": "$.input.k", "limit": 2, "periodMs": 60_000}}),
    ))
    .await;
    let first = w.start("gated", json!({"k": 1})).await;
    let second = w.start("gated", json!({"k": 1})).await;
    let third = w.start("gated", json!({"k": 1})).await;
    w.wait_for(first, "event_awaited").await;
    w.crash_and_recover().await;
    // Recovered: the first still holds the slot, the others wait.
    assert!(w.state(second).await.waiting_for_limit());
    go(&w, first).await;
    w.ended(first).await;
    w.wait_for(second, "event_awaited").await;
    w.crash_and_recover().await;
    go(&w, second).await;
    w.ended(second).await;
    // Two starts in the window (recovered from the journal): the third
    // waits for the first start to leave it, a minute after T0.
    let state = w.state(third).await;
    let held = w.engine.limit_holding(&state).unwrap();
    assert_eq!((held.name.as_str(), held.in_use), ("rateLimit", 2));
    w.clock.advance(60_000);
    w.wait_for(third, "event_awaited").await;
    go(&w, third).await;
    w.ended(third).await;
    assert_eq!(max_holding(&w.engine).await.get("1"), Some(&1));
}

#[tokio::test]
async fn a_redriven_execution_waits_for_its_slot_again() {
    let w = World::new().await;
    w.define(json!({"name": "flaky", "concurrency": {"limit": 1},
        "steps": [{"id": "t", "type": "task", "capability": "work"}]}))
        .await;
    let agent = w.agent(&["work"]);
    let first = w.start("flaky", json!({})).await;
    let task = w.claim(&agent).await;
    w.fail(&task, "boom", "no").await;
    assert_eq!(w.ended(first).await.status, Status::Failed);
    let second = w.start("flaky", json!({})).await;
    let held = w.claim(&agent).await;
    w.engine.redrive(first).await.unwrap();
    until(&w, first, |s| s.waiting_for_limit()).await;
    w.complete(&held, json!({})).await;
    w.ended(second).await;
    let retried = w.claim(&agent).await;
    w.complete(&retried, json!({})).await;
    let state = w.ended(first).await;
    assert_eq!(state.status, Status::Completed);
    assert_eq!(state.limits.unwrap().acquired_at_ms.len(), 2);
    assert_eq!(max_holding(&w.engine).await.get(""), Some(&1));
}

#[tokio::test]
async fn an_input_whose_key_cannot_be_taken_is_refused_before_anything_starts() {
    let w = World::new().await;
    w.define(gated(
        json!({"concurrency": {"key": "$.input.customer", "limit": 1}}),
    ))
    .await;
    let refused = w
        .engine
        .start(StartRequest {
            workflow: "gated".into(),
            input: json!({"customer": {"nested": true}}),
            ..StartRequest::default()
        })
        .await
        .unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("must be a string, a number or a boolean"),
        "{refused}"
    );
    assert!(
        w.engine
            .executions(Some("gated"), None, None, 10)
            .is_empty()
    );
    // A missing key is the whole workflow's key, "".
    let id = w.start("gated", json!({})).await;
    w.wait_for(id, "event_awaited").await;
    assert!(acquired(&w.state(id).await));
}

mod limiter_model {
    //! The limiter alone against a model: random starts, ends, pauses,
    //! resumes, grants recorded late or refused, and time passing. After
    //! every step: no key holds more than its concurrency limit, no rate
    //! window holds more than its limit, and no execution that may go is
    //! left waiting (invariant 33, and the limiter's liveness).

    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use retrace_engine::ExecutionId;
    use retrace_engine::limits::Limiter;
    use retrace_engine::machine::{ExecutionState, LimitGate, LimitKey, Status};

    const CONCURRENCY: u32 = 2;
    const RATE: u32 = 3;
    const PERIOD_MS: u64 = 1_000;

    #[derive(Debug, Clone)]
    enum Op {
        Start(u8),
        End(usize),
        Pause(usize),
        Resume(usize),
        Record(usize),
        Refuse(usize),
        Advance(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0u8..3).prop_map(Op::Start),
            2 => any::<usize>().prop_map(Op::End),
            1 => any::<usize>().prop_map(Op::Pause),
            1 => any::<usize>().prop_map(Op::Resume),
            3 => any::<usize>().prop_map(Op::Record),
            1 => any::<usize>().prop_map(Op::Refuse),
            2 => (1u64..800).prop_map(Op::Advance),
        ]
    }

    struct Model {
        now: u64,
        states: Vec<ExecutionState>,
        /// Granted, not yet recorded.
        granted: Vec<ExecutionId>,
        /// Every grant that stood: (key, when).
        starts: Vec<(String, u64)>,
        /// When each grant not yet recorded was made.
        granted_at: BTreeMap<ExecutionId, u64>,
    }

    fn state(i: usize, key: u8, now: u64) -> ExecutionState {
        let mut s = ExecutionState::empty(ExecutionId::from_bytes((i as u128 + 1).to_be_bytes()));
        s.workflow = "w".into();
        s.started_at_ms = now;
        let key = format!("k{key}");
        s.limits = Some(LimitGate {
            limits: vec![
                LimitKey {
                    name: "concurrency".into(),
                    key: key.clone(),
                    limit: CONCURRENCY,
                    period_ms: None,
                },
                LimitKey {
                    name: "rateLimit".into(),
                    key,
                    limit: RATE,
                    period_ms: Some(PERIOD_MS),
                },
            ],
            waiting: true,
            acquired_at_ms: Vec::new(),
        });
        s
    }

    fn key(s: &ExecutionState) -> String {
        s.limits.as_ref().unwrap().limits[0].key.clone()
    }

    fn holds(m: &Model, s: &ExecutionState) -> bool {
        !s.status.is_terminal()
            && (m.granted.contains(&s.id) || !s.limits.as_ref().unwrap().waiting)
    }

    proptest! {
        #[test]
        fn the_limiter_never_exceeds_a_limit_and_never_strands_one_that_may_go(
            ops in prop::collection::vec(op(), 1..120)
        ) {
            let mut limiter = Limiter::default();
            let mut m = Model { now: 0, states: Vec::new(), granted: Vec::new(), starts: Vec::new(),
                granted_at: BTreeMap::new() };
            for op in ops {
                let pick = |n: usize| (!m.states.is_empty()).then(|| n % m.states.len());
                match op {
                    Op::Start(k) => {
                        let s = state(m.states.len(), k, m.now);
                        limiter.observe(&s);
                        m.states.push(s);
                    }
                    Op::End(n) => if let Some(i) = pick(n) {
                        m.states[i].status = Status::Completed;
                        m.granted.retain(|id| *id != m.states[i].id);
                        limiter.observe(&m.states[i]);
                    },
                    Op::Pause(n) => if let Some(i) = pick(n) && m.states[i].status == Status::Running {
                        m.states[i].status = Status::Paused;
                        limiter.observe(&m.states[i]);
                    },
                    Op::Resume(n) => if let Some(i) = pick(n) && m.states[i].status == Status::Paused {
                        m.states[i].status = Status::Running;
                        limiter.observe(&m.states[i]);
                    },
                    Op::Record(n) => if !m.granted.is_empty() {
                        let id = m.granted.remove(n % m.granted.len());
                        let s = m.states.iter_mut().find(|s| s.id == id).unwrap();
                        let gate = s.limits.as_mut().unwrap();
                        gate.waiting = false;
                        limiter.observe(s);
                    },
                    Op::Refuse(n) => if !m.granted.is_empty() {
                        let id = m.granted.remove(n % m.granted.len());
                        limiter.refused(id);
                        // Its start did not stand.
                        let k = key(m.states.iter().find(|s| s.id == id).unwrap());
                        let at = m.granted_at.remove(&id).unwrap();
                        let i = m.starts.iter().position(|s| *s == (k.clone(), at)).unwrap();
                        m.starts.remove(i);
                        let s = m.states.iter().find(|s| s.id == id).unwrap();
                        limiter.observe(s);
                    },
                    Op::Advance(ms) => m.now += ms,
                }
                for id in limiter.grant(m.now) {
                    let s = m.states.iter().find(|s| s.id == id).unwrap();
                    prop_assert!(s.limits.as_ref().unwrap().waiting && s.status == Status::Running,
                        "granted one that does not wait: {:?}", s);
                    m.starts.push((key(s), m.now));
                    m.granted.push(id);
                    m.granted_at.insert(id, m.now);
                }
                let mut held: BTreeMap<String, u32> = BTreeMap::new();
                for s in m.states.iter().filter(|s| holds(&m, s)) {
                    *held.entry(key(s)).or_default() += 1;
                }
                let in_window = |k: &str| m.starts.iter()
                    .filter(|(key, at)| key == k && at + PERIOD_MS > m.now).count() as u32;
                for (k, n) in &held {
                    prop_assert!(*n <= CONCURRENCY, "key {} holds {}", k, n);
                }
                for k in ["k0", "k1", "k2"] {
                    prop_assert!(in_window(k) <= RATE, "key {} started {} in a period", k, in_window(k));
                }
                for s in &m.states {
                    let waits = s.status == Status::Running
                        && s.limits.as_ref().unwrap().waiting
                        && !m.granted.contains(&s.id);
                    if waits {
                        let k = key(s);
                        let full = held.get(&k).copied().unwrap_or(0) >= CONCURRENCY
                            || in_window(&k) >= RATE;
                        prop_assert!(full, "execution {} of key {} may go but waits", s.id, k);
                    }
                }
            }
        }
    }
}
