//! Bad workflow documents and the exact problems each must produce.
//!
//! Every case goes through `check`, which renders the problems one per line
//! as `path: message` (or `ok`) and compares them with the expectation. To
//! review changed messages, run with `UPDATE_EXPECT=1` and read the diff.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use expect_test::{Expect, expect};
use retrace_core::model::{Language, Workflow};

fn render(result: Result<Workflow, retrace_core::model::DefinitionError>) -> String {
    match result {
        Ok(_) => "ok\n".to_owned(),
        Err(error) => {
            assert!(!error.problems.is_empty(), "an error lists its problems");
            error
                .problems
                .iter()
                .map(|problem| format!("{}: {}\n", problem.path, problem.message))
                .collect()
        }
    }
}

fn check(json: &str, expected: Expect) {
    expected.assert_eq(&render(Workflow::from_json(json.as_bytes())));
}

fn check_yaml(yaml: &str, expected: Expect) {
    expected.assert_eq(&render(Workflow::from_yaml(yaml)));
}

#[test]
fn a_minimal_workflow_is_valid() {
    check(
        r#"{"name": "w", "steps": [{"id": "a", "type": "task", "capability": "noop"}]}"#,
        expect![[r#"
            ok
        "#]],
    );
}

#[test]
fn text_that_is_not_a_document() {
    check(
        r#"{"name": "w", "steps": ["#,
        expect![[r#"
            : the document is not valid JSON: EOF while parsing a list at line 1 column 24
        "#]],
    );
    check(
        r#"{"name": "w", "name": "v", "steps": []}"#,
        expect![[r#"
            : the document is not valid JSON: duplicate key `name` at line 1 column 20
        "#]],
    );
    check(
        "[]",
        expect![[r#"
            : must be an object, not an array
        "#]],
    );
    check_yaml(
        "name: w\nsteps: [\n",
        expect![[r#"
            : the document is not valid YAML: did not find expected node content at line 3 column 1, while parsing a flow node
        "#]],
    );
}

#[test]
fn required_top_level_fields() {
    check(
        "{}",
        expect![[r#"
            name: is required
            steps: is required
        "#]],
    );
    check(
        r#"{"name": "w", "steps": []}"#,
        expect![[r#"
            steps: must contain at least one step
        "#]],
    );
    check(
        r#"{"name": 7, "steps": {"id": "a"}}"#,
        expect![[r#"
            name: must be a string, not the number 7
            steps: must be an array, not an object
        "#]],
    );
}

#[test]
fn unknown_fields_are_named_with_a_suggestion() {
    check(
        r#"{"name": "w", "stpes": [], "steps": [
            {"id": "a", "type": "task", "capabilty": "noop", "nxt": "a", "banana": 1}
        ]}"#,
        expect![[r#"
            steps[0].capability: is required for a `task` step
            steps[0].banana: unknown field; expected one of `agentVersion`, `capability`, `compensate`, `deadlineMs`, `decision`, `event`, `fairnessKey`, `id`, `input`, `map`, `name`, `next`, `onError`, `onFailure`, `output`, `parallel`, `priority`, `retry`, `subworkflow`, `tags`, `timeout`, `type`, `wait`
            steps[0].capabilty: unknown field; did you mean `capability`?
            steps[0].nxt: unknown field; did you mean `next`?
            stpes: unknown field; did you mean `steps`?
        "#]],
    );
}

#[test]
fn map_steps_and_their_item_flow() {
    check(
        r#"{"name": "w", "steps": [
            {"id": "a", "type": "map", "map": {"steps": []}, "next": "inner"},
            {"id": "b", "type": "map", "map": {"items": "$.nope", "maxConcurrency": 0,
              "toleratedFailures": -1, "toleratedFailurePercent": 101, "itmes": 1,
              "steps": [{"id": "inner", "type": "task", "capability": "noop", "next": "c"}]}},
            {"id": "c", "type": "map", "map": {"items": "$.input", "maxConcurrency": 10001,
              "steps": [{"id": "d", "type": "task", "capability": "noop", "input": "$.item.x"}]}}
        ]}"#,
        expect![[r#"
            steps[0].map.items: is required: a mapping that gives the array to run the steps for, such as `$.input.files`
            steps[0].map.steps: must contain at least one step
            steps[1].map.maxConcurrency: must be a whole number of at least 1, not the number 0
            steps[1].map.toleratedFailures: must be a whole number of at least 0, not the number -1
            steps[1].map.toleratedFailurePercent: must be a percentage from 0 to 100, not 101
            steps[1].map.itmes: unknown field; did you mean `items`?
            steps[2].map.maxConcurrency: must be at most 10000
            steps[0].next: step `inner` is inside the item steps of map step `b`; a top-level step can only lead to a top-level step
            steps[1].map.items: `$.nope` has a `$` outside a string at line 1 column 1; in an expression `$.` may only come before one of `input`, `variables`, `output`, `error`, `execution`, `item`, `index`, `workflowName`, `executionId`, `stepId`
            steps[1].map.steps[0].next: step `c` is outside the item steps of map step `b`; an item step can only lead to a step of the same item flow
        "#]],
    );
}

#[test]
fn step_types_and_their_own_fields() {
    check(
        r#"{"name": "w", "steps": [
            {"id": "a", "type": "taks", "capability": "noop"},
            {"id": "b", "type": "task", "capability": "noop", "decision": {}, "wait": {"seconds": 1}, "next": "a"},
            {"id": "c", "type": "decision", "decision": {"expression": "true", "branches": {"true": "a"}}, "next": "a"},
            {"id": "d", "type": "wait"},
            {"type": "task", "capability": "noop"}
        ]}"#,
        expect![[r#"
            steps[0].type: unknown step type `taks`; expected one of task, decision, parallel, map, wait, event, subworkflow
            steps[1].decision: does not belong to a `task` step (it is for `decision` steps)
            steps[1].wait: does not belong to a `task` step (it is for `wait` steps)
            steps[2].next: does not belong to a `decision` step, which goes where its branches say
            steps[3].wait: is required for a `wait` step
            steps[4].id: is required
        "#]],
    );
}

#[test]
fn names_must_be_well_formed() {
    check(
        r#"{"name": "Project Setup", "steps": [
            {"id": "a.b", "type": "task", "capability": "Git Ops", "output": {"my-var": "$.output", "in": 1}},
            {"id": "e", "type": "event", "event": {"name": "needs approval"}},
            {"id": "s", "type": "subworkflow", "subworkflow": {"workflow": "other one"}}
        ]}"#,
        expect![[r#"
            name: workflow name `Project Setup` is not well-formed: use letters, digits, `_`, `.` and `-`, starting with a letter or digit
            steps[0].id: step id `a.b` is not well-formed: use letters, digits, `_` and `-`, not starting with `-`
            steps[0].capability: capability `Git Ops` is not well-formed: use lowercase letters, digits, `_`, `.`, `:` and `-`, starting with a letter or digit
            steps[0].output.in: variable name `in` is a reserved word in expressions; choose another
            steps[0].output.my-var: variable name `my-var` is not well-formed: use letters, digits and `_`, starting with a letter or `_`
            steps[1].event.name: event name `needs approval` is not well-formed: use letters, digits, `_`, `.`, `:`, `/` and `-`, starting with a letter or digit
            steps[2].subworkflow.workflow: workflow name `other one` is not well-formed: use letters, digits, `_`, `.` and `-`, starting with a letter or digit
        "#]],
    );
}

#[test]
fn step_ids_are_unique_across_the_whole_workflow() {
    check(
        r#"{"name": "w", "steps": [
            {"id": "a", "type": "task", "capability": "noop", "next": "p"},
            {"id": "p", "type": "parallel", "parallel": {"branches": [
                {"name": "one", "steps": [{"id": "a", "type": "task", "capability": "noop"}]},
                {"name": "two", "steps": [{"id": "p", "type": "task", "capability": "noop"}]}
            ]}},
            {"id": "a", "type": "task", "capability": "noop"}
        ]}"#,
        expect![[r#"
            steps[1].parallel.branches[0].steps[0].id: duplicate step id `a`; it is first declared at steps[0]
            steps[1].parallel.branches[1].steps[0].id: duplicate step id `p`; it is first declared at steps[1]
            steps[2].id: duplicate step id `a`; it is first declared at steps[0]
        "#]],
    );
}

#[test]
fn every_target_must_exist() {
    check(
        r#"{"name": "w", "start": "begin", "steps": [
            {"id": "a", "type": "task", "capability": "noop", "next": "b", "onError": "oops"},
            {"id": "d", "type": "decision", "decision": {
                "expression": "input.x", "branches": {"1": "a", "high priority": "nowhere"}, "default": "gone"}}
        ]}"#,
        expect![[r#"
            steps[0].next: no step has the id `b`
            steps[0].onError: no step has the id `oops`
            steps[1].decision.branches["high priority"]: no step has the id `nowhere`
            steps[1].decision.default: no step has the id `gone`
            start: no step has the id `begin`
        "#]],
    );
}

#[test]
fn targets_stay_in_their_scope() {
    check(
        r#"{"name": "w", "start": "in_one", "steps": [
            {"id": "top", "type": "task", "capability": "noop", "next": "in_one", "onError": "p"},
            {"id": "p", "type": "parallel", "next": "top", "parallel": {"branches": [
                {"name": "one", "steps": [
                    {"id": "in_one", "type": "task", "capability": "noop", "next": "in_two"},
                    {"id": "also_one", "type": "task", "capability": "noop", "onError": "top"}
                ]},
                {"name": "two", "steps": [
                    {"id": "in_two", "type": "decision", "decision": {
                        "expression": "true", "branches": {"true": "in_two"}, "default": "p"}}
                ]}
            ]}}
        ]}"#,
        expect![[r#"
            steps[0].next: step `in_one` is inside a branch of parallel step `p`; a top-level step can only lead to a top-level step
            steps[1].parallel.branches[0].steps[0].next: step `in_two` is outside this branch; a step in a parallel branch can only lead to a step of the same branch
            steps[1].parallel.branches[0].steps[1].onError: step `top` is outside this branch; a step in a parallel branch can only lead to a step of the same branch
            steps[1].parallel.branches[1].steps[0].decision.default: step `p` is outside this branch; a step in a parallel branch can only lead to a step of the same branch
            start: step `in_one` is inside a branch of parallel step `p`; a top-level step can only lead to a top-level step
        "#]],
    );
}

#[test]
fn loops_are_allowed() {
    check(
        r#"{"name": "w", "maxTransitions": 100, "steps": [
            {"id": "poll", "type": "task", "capability": "status", "output": {"done": "$.output.done"}, "next": "check"},
            {"id": "check", "type": "decision", "decision": {
                "expression": "variables.done", "branches": {"true": "end", "false": "pause"}}},
            {"id": "pause", "type": "wait", "wait": {"seconds": 30}, "next": "poll"},
            {"id": "end", "type": "task", "capability": "noop"}
        ]}"#,
        expect![[r#"
            ok
        "#]],
    );
}

#[test]
fn parallel_steps_need_named_branches_with_steps() {
    check(
        r#"{"name": "w", "steps": [
            {"id": "p", "type": "parallel", "parallel": {"branches": []}},
            {"id": "q", "type": "parallel", "parallel": {"branches": [
                {"name": "x", "steps": []},
                {"name": "x", "steps": [{"id": "s", "type": "task", "capability": "noop"}]},
                {"steps": [{"id": "t", "type": "task", "capability": "noop"}], "extra": true},
                "not a branch"
            ]}}
        ]}"#,
        expect![[r#"
            steps[0].parallel.branches: must contain at least one branch
            steps[1].parallel.branches[0].steps: must contain at least one step
            steps[1].parallel.branches[2].name: is required
            steps[1].parallel.branches[2].extra: unknown field; expected one of `name`, `steps`
            steps[1].parallel.branches[3]: must be an object, not the string "not a branch"
        "#]],
    );
}

#[test]
fn expressions_and_paths_are_checked_when_defined() {
    // Language 1: no dialect (see the language 2 test below).
    check(
        r#"{"name": "w", "language": 1, "steps": [
            {"id": "d", "type": "decision", "decision": {
                "expression": "size($.variables.issues) >", "branches": {"true": "t"}}},
            {"id": "t", "type": "task", "capability": "noop", "input": {
                "a": "$.variables.projectPath || $.input.projectPath",
                "b": "$.workflowName",
                "c": ["ok", "${ HOME }"],
                "d": "${ $.input.x + $.nope }",
                "e": "${ }",
                "f": "$ not a path, a literal",
                "g": "prefix ${ input.x } is a literal too"
            }, "output": {"v": "${ output.x + }"}},
            {"id": "e", "type": "event", "event": {"name": "go", "correlation": "input.id ==", "timeoutMs": 0}}
        ]}"#,
        expect![[r#"
            steps[2].event.timeoutMs: must be a whole number of at least 1, not the number 0
            steps[0].decision.expression: `size($.variables.issues) >` is not a valid expression: Syntax error: mismatched input '<EOF>' expecting {'[', '{', '(', '.', '-', '!', 'true', 'false', 'null', NUM_FLOAT, NUM_INT, NUM_UINT, STRING, BYTES, IDENTIFIER} at line 1 column 27
            steps[1].input.a: `$.variables.projectPath || $.input.projectPath` is not a well-formed path (`$.` then a root, then `.field` or `[index]` parts); to compute a value write an expression instead: `${ $.variables.projectPath || $.input.projectPath }`
            steps[1].input.b: `$.workflowName` starts with the unknown root `workflowName`; a path starts with `$.` and one of `input`, `variables`, `output`, `error`, `execution`, `item`, `index`
            steps[1].input.c[1]: `${ HOME }` reads `HOME`, which is not defined; an expression reads `input`, `variables`, `output`, `error`, `execution`, `item`, `index`
            steps[1].input.d: `${ $.input.x + $.nope }` has a `$` outside a string at line 1 column 16; in an expression `$.` may only come before one of `input`, `variables`, `output`, `error`, `execution`, `item`, `index`
            steps[1].input.e: the expression is empty
            steps[1].output.v: `${ output.x + }` is not a valid expression: Syntax error: mismatched input '<EOF>' expecting {'[', '{', '(', '.', '-', '!', 'true', 'false', 'null', NUM_FLOAT, NUM_INT, NUM_UINT, STRING, BYTES, IDENTIFIER} at line 1 column 16
            steps[2].event.correlation: `input.id ==` is not a valid expression: Syntax error: mismatched input '<EOF>' expecting {'[', '{', '(', '.', '-', '!', 'true', 'false', 'null', NUM_FLOAT, NUM_INT, NUM_UINT, STRING, BYTES, IDENTIFIER} at line 1 column 12
        "#]],
    );
}

#[test]
fn retry_values_must_be_sane() {
    check(
        r#"{"name": "w", "steps": [
            {"id": "a", "type": "task", "capability": "noop", "retry": {
                "maxAttempts": 0, "backoffRate": 0.5, "jitter": 1.5, "interval": 500, "maxInterval": 100,
                "nonRetryable": ["Bad Type", 3]}},
            {"id": "b", "type": "task", "capability": "noop", "retry": {"interval": -1, "maxAttempt": 3}},
            {"id": "c", "type": "task", "capability": "noop", "retry": {"maxAttempts": 1001}},
            {"id": "d", "type": "task", "capability": "noop", "retry": {"maxAttempts": 2.5, "backoffRate": "fast"}}
        ]}"#,
        expect![[r#"
            steps[0].retry.maxAttempts: must be a whole number of at least 1, not the number 0
            steps[0].retry.backoffRate: must be at least 1.0 (1.0 keeps the interval constant)
            steps[0].retry.maxInterval: must not be less than `interval` (500 ms)
            steps[0].retry.jitter: must be a fraction between 0.0 and 1.0
            steps[0].retry.nonRetryable[1]: must be a string, not the number 3
            steps[0].retry.nonRetryable[0]: error type `Bad Type` is not well-formed: use letters, digits, `_`, `.`, `:` and `-`, starting with a letter or digit
            steps[1].retry.maxAttempts: is required (the number of attempts, the first included)
            steps[1].retry.interval: must be a whole number of at least 0, not the number -1
            steps[1].retry.maxAttempt: unknown field; did you mean `maxAttempts`?
            steps[2].retry.maxAttempts: must be at most 1000
            steps[3].retry.maxAttempts: must be a whole number of at least 1, not the number 2.5
            steps[3].retry.backoffRate: must be a number, not the string "fast"
        "#]],
    );
}

#[test]
fn deadlines_must_be_positive_milliseconds() {
    check(
        r#"{"name": "w", "deadlineMs": 0, "steps": [
            {"id": "a", "type": "task", "capability": "noop", "deadlineMs": "soon"},
            {"id": "b", "type": "wait", "wait": {"seconds": 1}, "deadlineMs": 2.5}
        ]}"#,
        expect![[r#"
            steps[0].deadlineMs: must be a whole number of at least 1, not the string "soon"
            steps[1].deadlineMs: must be a whole number of at least 1, not the number 2.5
            deadlineMs: must be a whole number of at least 1, not the number 0
        "#]],
    );
}

#[test]
fn a_fairness_key_belongs_to_task_steps_and_must_compile() {
    check(
        r#"{"name": "w", "fairnessKey": "${ input.tenant + }", "steps": [
            {"id": "a", "type": "task", "capability": "noop", "fairnessKey": 5},
            {"id": "b", "type": "wait", "wait": {"seconds": 1}, "fairnessKey": "$.input.t"}
        ]}"#,
        expect![[r#"
            steps[0].fairnessKey: must be a string, not the number 5
            steps[1].fairnessKey: only a `task` step has a fairness key
            fairnessKey: `${ input.tenant + }` is not a valid expression: Syntax error: mismatched input '<EOF>' expecting {'[', '{', '(', '.', '-', '!', 'true', 'false', 'null', NUM_FLOAT, NUM_INT, NUM_UINT, STRING, BYTES, IDENTIFIER} at line 1 column 20
        "#]],
    );
}

#[test]
fn timeouts_must_be_sane() {
    check(
        r#"{"name": "w", "timeoutMs": 0, "maxTransitions": -5, "steps": [
            {"id": "a", "type": "task", "capability": "noop", "timeout": 0},
            {"id": "b", "type": "task", "capability": "noop", "timeout": {}},
            {"id": "c", "type": "task", "capability": "noop", "timeout": {"heartbeatMs": 0, "startToClose": 5}},
            {"id": "d", "type": "task", "capability": "noop", "timeout": "5s"},
            {"id": "e", "type": "task", "capability": "noop", "timeout": {"startToCloseMs": 1000, "scheduleToStartMs": 10, "heartbeatMs": 5}}
        ]}"#,
        expect![[r#"
            steps[0].timeout: must be a whole number of milliseconds of at least 1, or an object
            steps[1].timeout: needs at least one of `startToCloseMs`, `scheduleToStartMs`, `heartbeatMs`
            steps[2].timeout.heartbeatMs: must be a whole number of at least 1, not the number 0
            steps[2].timeout.startToClose: unknown field; did you mean `startToCloseMs`?
            steps[3].timeout: must be a number of milliseconds or an object, not the string "5s"
            timeoutMs: must be a whole number of at least 1, not the number 0
            maxTransitions: must be a whole number of at least 1, not the number -5
        "#]],
    );
}

#[test]
fn waits_need_exactly_one_of_seconds_and_until() {
    check(
        r#"{"name": "w", "steps": [
            {"id": "a", "type": "wait", "wait": {"seconds": 5, "until": "2030-01-01T00:00:00Z"}},
            {"id": "b", "type": "wait", "wait": {}},
            {"id": "c", "type": "wait", "wait": {"until": "tomorrow"}},
            {"id": "d", "type": "wait", "wait": {"until": "1969-12-31T23:59:59Z"}},
            {"id": "e", "type": "wait", "wait": {"until": "2030-01-31T09:00:00+01:00"}},
            {"id": "f", "type": "wait", "wait": {"seconds": 0}}
        ]}"#,
        expect![[r#"
            steps[0].wait: needs exactly one of `seconds` (a duration) and `until` (an RFC 3339 instant)
            steps[1].wait: needs exactly one of `seconds` (a duration) and `until` (an RFC 3339 instant)
            steps[2].wait.until: `tomorrow` is not an RFC 3339 instant such as `2030-01-31T09:00:00Z`: premature end of input
            steps[3].wait.until: `1969-12-31T23:59:59Z` is before 1970-01-01T00:00:00Z
        "#]],
    );
}

#[test]
fn subworkflows_and_error_handlers() {
    check(
        r#"{"name": "w", "steps": [
            {"id": "child", "type": "subworkflow", "subworkflow": {"workflow": "w", "version": ""}},
            {"id": "p", "type": "parallel", "parallel": {"branches": [
                {"name": "b", "steps": [{"id": "inner", "type": "task", "capability": "noop"}]}]}},
            {"id": "e", "type": "event", "event": {}}
        ], "errorHandlers": [
            {"error": "*", "handler": "inner"},
            {"error": "Bad Error", "handler": "not a workflow"},
            {"error": "Timeout", "handler": "w"},
            {"handler": "child"},
            {"error": "*", "handler": "child", "retry": {"maxAttempts": 2}}
        ]}"#,
        expect![[r#"
            steps[0].subworkflow.version: must not be empty
            steps[2].event.name: is required
            errorHandlers[1].error: error type `Bad Error` is not well-formed: use letters, digits, `_`, `.`, `:` and `-`, starting with a letter or digit, or `*`
            errorHandlers[3].error: is required
            steps[0].subworkflow.workflow: subworkflow cycle: `w` would start itself; a workflow cannot be its own subworkflow
            errorHandlers[0].handler: step `inner` is inside a branch of parallel step `p`; an error handler must be a top-level step or a workflow name
            errorHandlers[1].handler: no step has the id `not a workflow`, and workflow name `not a workflow` is not well-formed: use letters, digits, `_`, `.` and `-`, starting with a letter or digit
            errorHandlers[2].handler: names this workflow itself; a failing handler would start itself again
        "#]],
    );
}

#[test]
fn on_failure_and_schemas() {
    check(
        r#"{"name": "w", "input": {"type": "strin"}, "output": "text", "steps": [
            {"id": "a", "type": "task", "capability": "noop", "onFailure": "retry",
             "compensate": {"capability": "Undo", "input": {"x": "$.output.id"}, "retries": 1}}
        ]}"#,
        expect![[r#"
            output: must be a JSON Schema (an object or a boolean), not the string "text"
            steps[0].compensate.capability: capability `Undo` is not well-formed: use lowercase letters, digits, `_`, `.`, `:` and `-`, starting with a letter or digit
            steps[0].compensate.retries: unknown field; expected one of `capability`, `input`, `retry`
            steps[0].onFailure: must be "fail" or "pause", not the string "retry"
            input: is not a valid JSON Schema: "strin" is not valid under any of the schemas listed in the 'anyOf' keyword
        "#]],
    );
}

#[test]
fn several_problems_are_all_reported_at_once() {
    check_yaml(
        r#"
name: orders
steps:
  - id: charge
    type: task
    capability: billing.charge
    retry: { maxAttempts: 0 }
    next: ship
  - id: ship
    type: task
    capabilty: shipping
    onError: refund
  - id: charge
    type: wait
    wait: { seconds: 10, until: "2030-01-01T00:00:00Z" }
  - id: route
    type: decision
    decision:
      expression: "${ input.total > }"
      branches: { "true": charge, "false": nowhere }
errorHandlers:
  - { error: "*", handler: orders }
"#,
        expect![[r#"
            steps[0].retry.maxAttempts: must be a whole number of at least 1, not the number 0
            steps[1].capability: is required for a `task` step
            steps[1].capabilty: unknown field; did you mean `capability`?
            steps[2].wait: needs exactly one of `seconds` (a duration) and `until` (an RFC 3339 instant)
            steps[2].id: duplicate step id `charge`; it is first declared at steps[0]
            steps[1].onError: no step has the id `refund`
            steps[3].decision.branches.false: no step has the id `nowhere`
            steps[3].decision.expression: `${ input.total > }` is not a valid expression: Syntax error: mismatched input '<EOF>' expecting {'[', '{', '(', '.', '-', '!', 'true', 'false', 'null', NUM_FLOAT, NUM_INT, NUM_UINT, STRING, BYTES, IDENTIFIER} at line 1 column 19
            errorHandlers[0].handler: names this workflow itself; a failing handler would start itself again
        "#]],
    );
}

#[test]
fn a_workflow_has_at_most_a_thousand_steps() {
    let steps: Vec<serde_json::Value> = (0..1001)
        .map(|n| serde_json::json!({"id": format!("s{n}"), "type": "task", "capability": "noop"}))
        .collect();
    let doc = serde_json::json!({"name": "big", "steps": steps}).to_string();
    check(
        &doc,
        expect![[r#"
            steps: has 1001 steps (nested ones included); a workflow may have at most 1000
        "#]],
    );
    let mut fits = serde_json::json!({"name": "big", "steps": steps});
    fits["steps"].as_array_mut().unwrap().pop();
    assert!(Workflow::from_json(fits.to_string().as_bytes()).is_ok());
}

/// The finding of issue 11: `maxTransitions: 9223372036854775807` was
/// accepted, so a loop of inline steps ran until the disk filled. It has a
/// maximum now, far above the engine's default, and a larger value is
/// refused with the limit named.
#[test]
fn max_transitions_has_a_maximum() {
    check(
        r#"{"name": "w", "maxTransitions": 9223372036854775807,
            "steps": [{"id": "a", "type": "task", "capability": "noop", "next": "a"}]}"#,
        expect![[r#"
            maxTransitions: must be at most 1000000 (the engine's limit on transitions)
        "#]],
    );
    check(
        r#"{"name": "w", "maxTransitions": 1000000,
            "steps": [{"id": "a", "type": "task", "capability": "noop", "next": "a"}]}"#,
        expect![[r#"
            ok
        "#]],
    );
    check(
        r#"{"name": "w", "maxTransitions": 0,
            "steps": [{"id": "a", "type": "task", "capability": "noop"}]}"#,
        expect![[r#"
            maxTransitions: must be a whole number of at least 1, not the number 0
        "#]],
    );
    let max = retrace_core::model::WorkflowDefinition::MAX_TRANSITIONS_MAX;
    assert_eq!(max, 1_000_000, "docs/dsl.md states it");
    let default = retrace_core::machine::Defaults::default().max_transitions;
    assert!(
        default <= max,
        "the engine's default ({default}) is allowed"
    );
}

/// A definition stored before `maxTransitions` had a maximum is read back
/// as it was accepted (a data folder written by an earlier build opens),
/// with the same canonical form and version; only new definitions are held
/// to the maximum.
#[test]
fn a_stored_definition_is_read_as_it_was_accepted() {
    let doc = r#"{"name": "w", "maxTransitions": 9223372036854775807,
        "steps": [{"id": "a", "type": "task", "capability": "noop", "next": "a"}]}"#;
    assert!(Workflow::from_json(doc.as_bytes()).is_err());
    let stored = Workflow::from_stored_json(doc.as_bytes()).unwrap();
    assert_eq!(stored.max_transitions(), Some(9_223_372_036_854_775_807));
    let again = Workflow::from_stored_json(stored.canonical_json().as_bytes()).unwrap();
    assert_eq!(again.version(), stored.version());
    // Every other rule still applies to a stored definition.
    check_stored(
        r#"{"name": "w", "maxTransitions": 0, "steps": []}"#,
        expect![[r#"
            steps: must contain at least one step
            maxTransitions: must be a whole number of at least 1, not the number 0
        "#]],
    );
    // A definition stored without a language is language 1; defined now,
    // the same document is recorded as the newest language, and reads back
    // as that, with its version.
    let fine = r#"{"name": "w", "steps": [{"id": "a", "type": "task", "capability": "noop"}]}"#;
    let stored = Workflow::from_stored_json(fine.as_bytes()).unwrap();
    assert_eq!(stored.language(), Language::V1);
    let defined = Workflow::from_json(fine.as_bytes()).unwrap();
    assert_eq!(defined.language(), Language::NEWEST);
    let again = Workflow::from_stored_json(defined.canonical_json().as_bytes()).unwrap();
    assert_eq!(again.version(), defined.version());
    assert_eq!(again.language(), Language::NEWEST);
}

#[test]
fn language_2_checks_its_expressions_and_templates_when_defined() {
    check(
        r#"{"name": "w", "steps": [
            {"id": "t", "type": "task", "capability": "noop", "input": {
                "a": "$.variables.projectPath ||",
                "b": "$.nope.x || 1",
                "c": "Feature: ${ input.feature",
                "d": "Feature: ${ input.feature + }",
                "e": "${ HOME } and ${ input.x }",
                "f": "$ not a path, a literal",
                "g": "\\${ stays text }"
            }}
        ]}"#,
        expect![[r#"
            steps[0].input.a: `$.variables.projectPath ||` is not a valid expression: Syntax error: mismatched input '<EOF>' expecting {'[', '{', '(', '.', '-', '!', 'true', 'false', 'null', NUM_FLOAT, NUM_INT, NUM_UINT, STRING, BYTES, IDENTIFIER} at line 1 column 27
            steps[0].input.b: `$.nope.x || 1` has a `$` outside a string at line 1 column 1; in an expression `$.` may only come before one of `input`, `variables`, `output`, `error`, `execution`, `item`, `index`, `workflowName`, `executionId`, `stepId`
            steps[0].input.c: `Feature: ${ input.feature` has a `${` at byte 9 that no `}` closes; write `\${` for a literal `${`
            steps[0].input.d: `${ input.feature + }` is not a valid expression: Syntax error: mismatched input '<EOF>' expecting {'[', '{', '(', '.', '-', '!', 'true', 'false', 'null', NUM_FLOAT, NUM_INT, NUM_UINT, STRING, BYTES, IDENTIFIER} at line 1 column 21
            steps[0].input.e: `${ HOME }` reads `HOME`, which is not defined; an expression reads `input`, `variables`, `output`, `error`, `execution`, `item`, `index`, `workflowName`, `executionId`, `stepId`
        "#]],
    );
}

fn check_stored(json: &str, expected: Expect) {
    expected.assert_eq(&render(Workflow::from_stored_json(json.as_bytes())));
}

#[test]
fn a_priority_is_a_task_steps_and_from_0_to_9() {
    check(
        r#"{"name": "w", "steps": [
            {"id": "a", "type": "task", "capability": "x", "priority": 10, "next": "b"},
            {"id": "b", "type": "task", "capability": "x", "priority": "high", "next": "c"},
            {"id": "c", "type": "wait", "wait": {"seconds": 1}, "priority": 3, "next": "d"},
            {"id": "d", "type": "task", "capability": "x", "priority": "${ input.p + }", "next": "e"},
            {"id": "e", "type": "task", "capability": "x", "priority": "$.input.p"}
        ]}"#,
        expect![[r#"
            steps[0].priority: must be an integer from 0 to 9, or a `$.` path or `${ … }` expression that gives one when the step starts
            steps[1].priority: must be an integer from 0 to 9, or a `$.` path or `${ … }` expression that gives one when the step starts
            steps[2].priority: only a `task` step has a priority
            steps[3].priority: `${ input.p + }` is not a valid expression: Syntax error: mismatched input '<EOF>' expecting {'[', '{', '(', '.', '-', '!', 'true', 'false', 'null', NUM_FLOAT, NUM_INT, NUM_UINT, STRING, BYTES, IDENTIFIER} at line 1 column 15
        "#]],
    );
}

#[test]
fn concurrency_and_rate_limits_are_checked_whole() {
    let with = |limits: &str| {
        format!(
            r#"{{"name": "w", {limits}, "steps": [{{"id": "a", "type": "task", "capability": "noop"}}]}}"#
        )
    };
    check(
        &with(
            r#""concurrency": {"key": "$.input.account", "limit": 2}, "rateLimit": {"limit": 5, "periodMs": 1000}"#,
        ),
        expect![[r#"
            ok
        "#]],
    );
    check(
        &with(
            r#""concurrency": {"limit": 0, "keys": "x"}, "rateLimit": {"key": "${ input. }", "limit": 100001}"#,
        ),
        expect![[r#"
            concurrency.limit: must be a whole number of at least 1, not the number 0
            concurrency.keys: unknown field; did you mean `key`?
            rateLimit.limit: must be at most 100000
            rateLimit.periodMs: is required (the period the limit counts starts in, in milliseconds)
        "#]],
    );
    check(
        &with(r#""concurrency": 3, "rateLimit": {"limit": 1, "periodMs": 31622400001}"#),
        expect![[r#"
            concurrency: must be an object, not the number 3
            rateLimit.periodMs: must be at most 31622400000 (366 days)
        "#]],
    );
    check(
        &with(r#""rateLimit": {"key": "${ input. }", "limit": 1, "periodMs": 1000}"#),
        expect![[r#"
            rateLimit.key: `${ input. }` is not a valid expression: Syntax error: no viable alternative at input '.  ' at line 1 column 12
        "#]],
    );
    check(
        &with(r#""concurrency": {"key": "$.input.account"}"#),
        expect![[r#"
            concurrency.limit: is required (from 1 to 100000)
        "#]],
    );
}

#[test]
fn an_http_tasks_literal_input_is_checked_when_defined() {
    // Wholly literal: every problem of its shape.
    check(
        r#"{"name": "w", "steps": [{"id": "a", "type": "task", "capability": "http",
            "input": {"method": "FETCH", "url": "example.com/x", "timeout": 5,
                      "headers": {"Host": "h", "X-Key": "${ secret(KEY) }"}}}]}"#,
        expect![[r#"
            steps[0].input.headers.X-Key: `${ secret(` at byte 0 does not complete a secret reference; write `${ secret('NAME') }`
            steps[0].input.timeout: unknown field of the http capability; did you mean `timeoutMs`?
            steps[0].input.headers.Host: the engine writes the `Host` header itself; leave it out
            steps[0].input.method: `FETCH` is not a method the http capability makes; expected one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS
            steps[0].input.url: `example.com/x` is not an absolute URL: relative URL without a base
        "#]],
    );
    // Partly computed: what is literal is checked, what is computed waits
    // for the run; required fields must be there.
    check(
        r#"{"name": "w", "steps": [{"id": "a", "type": "task", "capability": "http",
            "input": {"url": "$.input.url", "timeoutMs": -1,
                      "headers": {"X-Id": "$.input.id", "X-Bad": 3},
                      "query": {"q": "${ input.q }", "r": {"x": 1}}}}]}"#,
        expect![[r#"
            steps[0].input.method: is required by the http capability
            steps[0].input.headers.X-Bad: must be a string, not the number 3
            steps[0].input.query.r: must be a string, a number, a boolean or an array of them, not an object
            steps[0].input.timeoutMs: must be a whole number of milliseconds from 1 to 86400000, not the number -1
        "#]],
    );
    // A compensation's input too; an input that is not an object.
    check(
        r#"{"name": "w", "steps": [{"id": "a", "type": "task", "capability": "http",
            "input": ["GET"],
            "compensate": {"capability": "http", "input": {"method": "DELETE"}}}]}"#,
        expect![[r#"
            steps[0].input: the http capability's input must be an object with `method` and `url` (and optionally `headers`, `query`, `body`, `timeoutMs`), not an array
            steps[0].compensate.input.url: is required by the http capability
        "#]],
    );
    // Sound: literal, computed, secret references; other capabilities'
    // inputs are theirs to judge.
    check(
        r#"{"name": "w", "steps": [
            {"id": "a", "type": "task", "capability": "http", "next": "b",
             "input": {"method": "post", "url": "https://api.example.com/${ secret('TENANT') }/orders",
                       "headers": {"Authorization": "Bearer ${ secret('API_TOKEN') }",
                                   "X-Api-Key": "${ secret(\"API_KEY\") }"},
                       "query": {"tag": ["a", 1, true]}, "body": {"id": "$.input.id"},
                       "timeoutMs": 2000}},
            {"id": "b", "type": "task", "capability": "http", "next": "c", "input": "$.input.request"},
            {"id": "c", "type": "task", "capability": "http.get", "input": {"method": "FETCH"}}]}"#,
        expect![[r#"
            ok
        "#]],
    );
}
