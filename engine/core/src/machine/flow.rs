//! How control moves through a workflow: entering queued steps (one function
//! per step kind), completing a step (its output mapping, then its `next`),
//! and ending a thread (the execution, or a parallel branch and, once all
//! have ended, the parallel step).
//!
//! Owns the step queue of a [`Run`] and what entering each kind of step
//! records. Built on `run` and `failure` (a step that cannot be entered
//! fails). It must never handle a trigger or an operator command itself;
//! `decide` and `commands` call into it.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::event::{ErrorInfo, Event, Thread, error_types};
use super::run::{Done, INLINE_CAPABILITIES, Run, Work};
use super::state::{ItemState, Status, Waiting, correlates};
use super::tags::{check_tags, tag_value};
use super::trigger::{PRIORITY_MAX, Rejection};
use crate::model::{Branch, Expr, MapSpec, Step, StepKind, WaitSpec, branch_key};

/// After this many events, one trigger stops entering steps and defers the
/// rest to a `Continue` trigger, so one append never outgrows the journal's
/// limit however long a loop of inline steps runs.
pub const EVENTS_PER_TRIGGER: usize = 1000;

/// The most items one map step takes.
pub const MAP_ITEMS_MAX: usize = 100_000;

/// "an object", "a string", ... for messages.
fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The step being entered: the activation it takes, its definition, and the
/// thread it runs in.
#[derive(Clone, Copy)]
struct Entry<'w> {
    act: u64,
    step: &'w Step,
    thread: Option<Thread>,
}

impl Entry<'_> {
    /// The `step_started` event of this entry, at `now_ms` (its deadline
    /// counts from then).
    fn started(&self, input: &Value, now_ms: u64) -> Event {
        self.started_with(input, TaskRank::default(), now_ms)
    }

    fn started_with(&self, input: &Value, rank: TaskRank, now_ms: u64) -> Event {
        Event::StepStarted {
            act: self.act,
            step: self.step.id.clone(),
            thread: self.thread,
            input: input.clone(),
            priority: rank.priority,
            deadline_at_ms: self.step.deadline_ms.map(|d| now_ms.saturating_add(d)),
            fairness_key: rank.fairness_key,
            agent_version: self.step.agent_version.clone(),
        }
    }
}

/// Where a task step's tasks stand in their queue, as its step gives it.
#[derive(Default)]
struct TaskRank {
    priority: Option<u8>,
    fairness_key: Option<String>,
}

impl<'w> Run<'_, 'w, '_> {
    /// Enters queued steps until the execution waits or ends.
    pub(super) fn enter_queued(&mut self) -> Done {
        while let Some(work) = self.work.pop() {
            if self.state.status.is_terminal() {
                break;
            }
            // A branch whose parallel step has ended meanwhile (it failed
            // while this entry was deferred) has nothing left to do.
            if let Some(t) = work.thread
                && !self.state.activations.contains_key(&t.parallel)
            {
                continue;
            }
            if self.state.status != Status::Running
                || self.state.waiting_for_limit()
                || self.events.len() >= EVENTS_PER_TRIGGER
            {
                self.emit(Event::StepDeferred {
                    step: work.step,
                    thread: work.thread,
                    from_output: work.from_output,
                    input: work.input,
                })?;
                continue;
            }
            self.enter(work)?;
        }
        Ok(())
    }

    /// Enters one step: the transition limit, its input, then what its kind
    /// does.
    fn enter(&mut self, work: Work) -> Done {
        let step = self.step(&work.step)?;
        let at = Entry {
            act: self.state.next_act,
            step,
            thread: work.thread,
        };
        if self.state.transitions >= self.state.max_transitions {
            let error = ErrorInfo::new(
                error_types::TRANSITION_LIMIT,
                format!(
                    "the execution entered {} steps, its limit (maxTransitions); a loop that never ends?",
                    self.state.transitions
                ),
            )
            .at(&step.id, None);
            return self.fail_execution(error);
        }
        // Building the context clones input and variables: only when the
        // step has something to evaluate.
        let needs_context = (work.input.is_none() && step.input.is_some())
            || step.priority.is_some()
            || step.fairness_key.is_some()
            || matches!(
                &step.kind,
                StepKind::Decision { .. }
                    | StepKind::Map(_)
                    | StepKind::Event {
                        correlation: Some(_),
                        ..
                    }
            );
        let context = if needs_context {
            self.context(&work.from_output, work.thread)
        } else {
            Value::Null
        };
        // An operator's retry or a redrive enters the step with its input
        // known: a map step then runs only the items that did not complete.
        let again = work.input.is_some();
        let input = match (work.input, &step.input) {
            (Some(input), _) => input,
            (None, Some(mapping)) => match mapping.evaluate(&context) {
                Ok(v) => v,
                Err(e) => {
                    let error = ErrorInfo::new(error_types::EXPRESSION, e.message);
                    return self.entry_failed(at, error);
                }
            },
            (None, None) => work.from_output.clone(),
        };
        match &step.kind {
            StepKind::Task { capability } if INLINE_CAPABILITIES.contains(&capability.as_str()) => {
                self.complete(at.act, step, at.thread, Some(input.clone()), input)
            }
            StepKind::Task { capability } => {
                let rank = step_priority(step, &context).and_then(|priority| {
                    Ok(TaskRank {
                        priority,
                        fairness_key: step_fairness_key(step, &context)?,
                    })
                });
                let rank = match rank {
                    Ok(rank) => rank,
                    Err(message) => {
                        let error = ErrorInfo::new(error_types::EXPRESSION, message);
                        return self.entry_failed(at, error);
                    }
                };
                self.emit(at.started_with(&input, rank, self.ctx.now_ms))?;
                self.schedule_task(at.act, step, capability, 1, input)
            }
            StepKind::Decision { expression, .. } => {
                self.enter_decision(at, expression, &context, work.from_output)
            }
            StepKind::Parallel { branches } => self.enter_parallel(at, branches, input),
            StepKind::Map(spec) => self.enter_map(at, spec, &context, input, again),
            StepKind::Wait(spec) => self.enter_wait(at, spec, input),
            StepKind::Event {
                name,
                correlation,
                timeout_ms,
            } => self.enter_event(at, name, correlation.as_ref(), *timeout_ms, &context, input),
            StepKind::Subworkflow { workflow, version } => {
                self.enter_subworkflow(at, workflow, version.as_deref(), input)
            }
        }
    }

    /// The step being entered fails (before it started).
    fn entry_failed(&mut self, at: Entry<'w>, error: ErrorInfo) -> Done {
        self.step_failed(at.act, at.step, at.thread, error, None)
    }

    /// A decision: evaluate, pick the branch, go there (inline, no start).
    fn enter_decision(
        &mut self,
        at: Entry<'w>,
        expression: &Expr,
        context: &Value,
        from_output: Value,
    ) -> Done {
        let value = match expression.evaluate(context) {
            Ok(v) => v,
            Err(e) => {
                let error = ErrorInfo::new(error_types::EXPRESSION, e.message);
                return self.entry_failed(at, error);
            }
        };
        let Some(target) = at.step.decision_target(&value) else {
            let error = ErrorInfo::new(
                error_types::NO_BRANCH,
                format!("no branch for value {} and no default", branch_key(&value)),
            );
            return self.entry_failed(at, error);
        };
        self.emit(Event::DecisionMade {
            act: at.act,
            step: at.step.id.clone(),
            thread: at.thread,
            value: branch_key(&value),
            target: target.to_string(),
        })?;
        self.work.push(Work::to(target, at.thread, from_output));
        Ok(())
    }

    /// A parallel step: start it and queue each branch's first step.
    fn enter_parallel(&mut self, at: Entry<'w>, branches: &[Branch], input: Value) -> Done {
        let act = at.act;
        self.emit(at.started(&input, self.ctx.now_ms))?;
        self.emit(Event::ParallelStarted {
            act,
            branches: branches.len(),
        })?;
        if branches.is_empty() {
            return self.complete(act, at.step, at.thread, None, json!({}));
        }
        // Pushed in reverse so branch 0 is entered first.
        for (branch, b) in branches.iter().enumerate().rev() {
            let thread = Some(Thread {
                parallel: act,
                branch,
            });
            self.work
                .push(Work::to(b.start.clone(), thread, input.clone()));
        }
        Ok(())
    }

    /// A map step: take its items (or, entered again after it failed, its
    /// failed run's items), then end at once if nothing is left to run.
    /// Items start later, as room allows ([`Run::launch_items`]).
    fn enter_map(
        &mut self,
        at: Entry<'w>,
        spec: &MapSpec,
        context: &Value,
        input: Value,
        again: bool,
    ) -> Done {
        let act = at.act;
        let redrive = again
            && self
                .state
                .failed_maps
                .iter()
                .any(|m| m.step == at.step.id && m.thread == at.thread);
        let items = if redrive {
            Vec::new()
        } else {
            match spec.items.evaluate(context) {
                Ok(Value::Array(items)) if items.len() <= MAP_ITEMS_MAX => items,
                Ok(Value::Array(items)) => {
                    let error = ErrorInfo::new(
                        error_types::EXPRESSION,
                        format!(
                            "the items of map step `{}` are {} elements, more than the \
                             {MAP_ITEMS_MAX} one map step takes",
                            at.step.id,
                            items.len()
                        ),
                    );
                    return self.entry_failed(at, error);
                }
                Ok(other) => {
                    let error = ErrorInfo::new(
                        error_types::EXPRESSION,
                        format!(
                            "the items of map step `{}` must be an array, not {}",
                            at.step.id,
                            json_kind(&other)
                        ),
                    );
                    return self.entry_failed(at, error);
                }
                Err(e) => {
                    let error = ErrorInfo::new(error_types::EXPRESSION, e.message);
                    return self.entry_failed(at, error);
                }
            }
        };
        self.emit(at.started(&input, self.ctx.now_ms))?;
        self.emit(Event::MapStarted {
            act,
            items,
            max_concurrency: spec.max_concurrency,
            redrive,
        })?;
        self.map_progressed(act)
    }

    /// Starts waiting items of every map step with room for them, as many
    /// as this trigger's events allow (each item's start and first step
    /// take about three); what is left waits for a `Continue`. Whether it
    /// started any.
    fn launch_items(&mut self) -> Result<bool, Rejection> {
        if self.state.status != Status::Running || self.state.waiting_for_limit() {
            return Ok(false);
        }
        let mut batch = EVENTS_PER_TRIGGER.saturating_sub(self.events.len()) / 3;
        if batch == 0 {
            return Ok(false);
        }
        let maps: Vec<u64> = self
            .state
            .activations
            .iter()
            .filter(
                |(_, a)| matches!(&a.waiting, Waiting::Items(i) if i.next_to_launch().is_some()),
            )
            .map(|(act, _)| *act)
            .collect();
        let mut started = Vec::new();
        for act in maps {
            while batch > 0 {
                let Some(a) = self.state.activations.get(&act) else {
                    break;
                };
                let Waiting::Items(items) = &a.waiting else {
                    break;
                };
                let Some(item) = items.next_to_launch() else {
                    break;
                };
                let value = items.items.get(item).cloned().unwrap_or(Value::Null);
                let StepKind::Map(spec) = &self.step(&a.step)?.kind else {
                    return Err(Rejection::UnknownStep(a.step.clone()));
                };
                let start = spec.each.start.clone();
                self.emit(Event::ItemStarted { act, item })?;
                let thread = Some(Thread {
                    parallel: act,
                    branch: item,
                });
                started.push(Work::to(start, thread, value));
                batch -= 1;
            }
        }
        // Entered in item order.
        let any = !started.is_empty();
        self.work.extend(started.into_iter().rev());
        Ok(any)
    }

    /// Enters queued steps and starts map items until neither has anything
    /// left to do in this trigger.
    pub(super) fn drain(&mut self) -> Done {
        loop {
            self.enter_queued()?;
            if !self.launch_items()? {
                return Ok(());
            }
        }
    }

    /// An item of map step `act` ended (or the step just took its items):
    /// when every item it runs has ended, the step completes with their
    /// results in item order (`null` for a failed item it tolerated).
    pub(super) fn map_progressed(&mut self, act: u64) -> Done {
        let Some(a) = self.state.activations.get(&act) else {
            return Err(Rejection::Stale(format!("activation {act}")));
        };
        let Waiting::Items(items) = &a.waiting else {
            return Err(Rejection::Stale(format!(
                "activation {act} is not a map step"
            )));
        };
        if !items.all_ended() {
            return Ok(());
        }
        let results = items
            .states
            .iter()
            .map(|s| match s {
                ItemState::Done(output) => output.clone(),
                ItemState::Open | ItemState::Failed(_) => Value::Null,
            })
            .collect();
        let thread = a.thread;
        let step = self.step(&a.step)?;
        self.complete(act, step, thread, None, Value::Array(results))
    }

    /// A wait step: start its timer.
    fn enter_wait(&mut self, at: Entry<'w>, spec: &WaitSpec, input: Value) -> Done {
        let due_at_ms = match spec {
            WaitSpec::Seconds(s) => self.ctx.now_ms.saturating_add(s.saturating_mul(1000)),
            WaitSpec::UntilMs(t) => *t,
        };
        self.emit(at.started(&input, self.ctx.now_ms))?;
        self.emit(Event::TimerStarted {
            act: at.act,
            due_at_ms,
        })
    }

    /// An event step: await the event, or take a kept signal that matches.
    fn enter_event(
        &mut self,
        at: Entry<'w>,
        name: &str,
        correlation: Option<&Expr>,
        timeout_ms: Option<u64>,
        context: &Value,
        input: Value,
    ) -> Done {
        let act = at.act;
        let correlation = match correlation {
            Some(expr) => match expr.evaluate(context) {
                Ok(v) => Some(v),
                Err(e) => {
                    let error = ErrorInfo::new(error_types::EXPRESSION, e.message);
                    return self.entry_failed(at, error);
                }
            },
            None => None,
        };
        self.emit(at.started(&input, self.ctx.now_ms))?;
        let timeout_at_ms = timeout_ms.map(|t| self.ctx.now_ms.saturating_add(t));
        self.emit(Event::EventAwaited {
            act,
            name: name.to_string(),
            correlation: correlation.clone(),
            timeout_at_ms,
        })?;
        // A signal that came before the step: take the oldest match.
        let kept = self.state.signals.iter().position(|s| {
            s.name == name && correlates(correlation.as_ref(), s.correlation.as_ref())
        });
        if let Some(index) = kept {
            let payload = self.state.signals[index].payload.clone();
            self.emit(Event::SignalTaken { act, index })?;
            return self.complete(act, at.step, at.thread, None, payload);
        }
        Ok(())
    }

    /// A subworkflow step: resolve the version, start the child.
    fn enter_subworkflow(
        &mut self,
        at: Entry<'w>,
        workflow: &str,
        version: Option<&str>,
        input: Value,
    ) -> Done {
        let version = match version {
            Some(v) if self.ctx.versions.has_version(workflow, v) => Some(v.to_string()),
            Some(_) => None,
            None => self.ctx.versions.latest_version(workflow),
        };
        let Some(version) = version else {
            let error = ErrorInfo::new(
                error_types::UNKNOWN_WORKFLOW,
                format!("no workflow {workflow} (at the version asked for) is defined"),
            );
            return self.entry_failed(at, error);
        };
        self.emit(at.started(&input, self.ctx.now_ms))?;
        self.emit(Event::ChildStarted {
            act: at.act,
            child: self.ctx.child_id(self.state.id, at.act, workflow),
            workflow: workflow.to_string(),
            version,
            input,
        })
    }

    /// Completes a step with `output`: output mapping, then onwards.
    pub(super) fn complete(
        &mut self,
        act: u64,
        step: &Step,
        thread: Option<Thread>,
        inline_input: Option<Value>,
        output: Value,
    ) -> Done {
        let mut variables = BTreeMap::new();
        if let Some(mappings) = &step.output {
            let context = self.context(&output, thread);
            for (name, mapping) in mappings {
                match mapping.evaluate(&context) {
                    Ok(v) => {
                        variables.insert(name.clone(), v);
                    }
                    Err(e) => {
                        let error = ErrorInfo::new(
                            error_types::EXPRESSION,
                            format!("output {name}: {}", e.message),
                        );
                        return self.step_failed(act, step, thread, error, None);
                    }
                }
            }
        }
        let tags = match self.step_tags(step, thread, &output) {
            Ok(tags) => tags,
            Err(message) => {
                let error = ErrorInfo::new(error_types::EXPRESSION, message);
                return self.step_failed(act, step, thread, error, None);
            }
        };
        self.emit(Event::StepCompleted {
            act,
            step: step.id.clone(),
            thread,
            output: output.clone(),
            variables,
            input: inline_input,
            tags,
        })?;
        match &step.next {
            Some(next) => {
                self.work.push(Work::to(next.clone(), thread, output));
                Ok(())
            }
            None => self.thread_ended(thread, output),
        }
    }

    /// The tags a completing step's `tags` mapping sets, each value read by
    /// [`tag_value`]; the execution's tags with them must keep
    /// [`check_tags`]' bounds, or the step fails (with an expression
    /// error with this message).
    fn step_tags(
        &self,
        step: &Step,
        thread: Option<Thread>,
        output: &Value,
    ) -> Result<BTreeMap<String, String>, String> {
        let mut tags = BTreeMap::new();
        if step.tags.is_empty() {
            return Ok(tags);
        }
        let context = self.context(output, thread);
        for (key, mapping) in &step.tags {
            let value = mapping
                .evaluate(&context)
                .map_err(|e| e.message)
                .and_then(|v| tag_value(&v))
                .map_err(|message| format!("tag {key}: {message}"))?;
            tags.insert(key.clone(), value);
        }
        let mut all = self.state.tags.clone();
        all.extend(tags.clone());
        check_tags(&all).map_err(|problems| problems.join("; "))?;
        Ok(tags)
    }

    /// A thread ran out of steps: the execution or a branch is done.
    fn thread_ended(&mut self, thread: Option<Thread>, output: Value) -> Done {
        let Some(t) = thread else {
            return self.emit(Event::ExecutionCompleted { output });
        };
        if let Some(Waiting::Items(_)) = self.state.activations.get(&t.parallel).map(|a| &a.waiting)
        {
            self.emit(Event::ItemCompleted {
                act: t.parallel,
                item: t.branch,
                output,
            })?;
            return self.map_progressed(t.parallel);
        }
        self.emit(Event::BranchCompleted {
            act: t.parallel,
            branch: t.branch,
            output,
        })?;
        let Some(parallel) = self.state.activations.get(&t.parallel) else {
            return Err(Rejection::Stale(format!("activation {}", t.parallel)));
        };
        let step = self.step(&parallel.step)?;
        let (StepKind::Parallel { branches }, Waiting::Branches { outputs }) =
            (&step.kind, &parallel.waiting)
        else {
            return Err(Rejection::UnknownStep(step.id.clone()));
        };
        if outputs.len() < branches.len() {
            return Ok(());
        }
        // Each branch's output under the branch's name.
        let joined: serde_json::Map<String, Value> = branches
            .iter()
            .enumerate()
            .map(|(i, b)| {
                (
                    b.name.clone(),
                    outputs
                        .iter()
                        .find(|(b, _)| *b == i)
                        .map_or(Value::Null, |(_, o)| o.clone()),
                )
            })
            .collect();
        let parent_thread = parallel.thread;
        self.complete(t.parallel, step, parent_thread, None, Value::Object(joined))
    }
}

/// A task step's priority, evaluated in the context its input was: `None`
/// when it gives none (its tasks get the execution's).
/// The longest fairness key, in bytes.
pub const FAIRNESS_KEY_LEN_MAX: usize = 256;

/// A task step's fairness key: a string as is, a number or a boolean as
/// its JSON text; `null` is none.
fn step_fairness_key(step: &Step, context: &Value) -> Result<Option<String>, String> {
    let Some(mapping) = &step.fairness_key else {
        return Ok(None);
    };
    let key = match mapping.evaluate(context).map_err(|e| e.message)? {
        Value::Null => return Ok(None),
        Value::String(text) => text,
        value @ (Value::Number(_) | Value::Bool(_)) => value.to_string(),
        other => {
            let what = if other.is_array() {
                "an array"
            } else {
                "an object"
            };
            return Err(format!(
                "the fairness key of step `{}` must be a string, a number or a boolean, not \
                 {what}",
                step.id
            ));
        }
    };
    if key.len() > FAIRNESS_KEY_LEN_MAX {
        return Err(format!(
            "the fairness key of step `{}` is longer than {FAIRNESS_KEY_LEN_MAX} bytes",
            step.id
        ));
    }
    Ok(Some(key))
}

fn step_priority(step: &Step, context: &Value) -> Result<Option<u8>, String> {
    let Some(mapping) = &step.priority else {
        return Ok(None);
    };
    let value = mapping.evaluate(context).map_err(|e| e.message)?;
    value
        .as_u64()
        .and_then(|p| u8::try_from(p).ok())
        .filter(|p| *p <= PRIORITY_MAX)
        .map(Some)
        .ok_or_else(|| {
            format!(
                "the priority of step `{}` must be an integer from 0 to {PRIORITY_MAX}, not {value}",
                step.id
            )
        })
}
