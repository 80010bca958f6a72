//! A workflow as a graph for people to look at: its steps as nodes, and
//! every way control can go from one to another as edges (`next`, a
//! decision's branches and default, a parallel step's branches, `onError`,
//! a step's compensation, the workflow's error handlers). The dashboard
//! draws it; the step ids are the ones `Progress` colours.
//!
//! Owns that reading of a compiled [`Workflow`]. It must never be used to
//! decide where an execution goes: `decide` reads the steps themselves.

use serde::Serialize;

use super::step::{HandlerTarget, StepKind};
use super::workflow::Workflow;

/// The graph of one workflow version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Graph {
    /// Steps in declaration order (a parallel step before its branches'
    /// steps), then a compensation node per step that declares one, then
    /// the error handlers' node if the workflow has any.
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
}

/// What a node stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    Task,
    Decision,
    Parallel,
    Map,
    Wait,
    Event,
    Subworkflow,
    /// The action that undoes a step (id `<step>~compensate`).
    Compensation,
    /// The workflow's `errorHandlers` (id `~errorHandlers`).
    Handler,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    /// The step's id (compensation and handler nodes have ids no step can
    /// have: they contain `~`).
    pub id: String,
    /// What to write on it: the step's name, and its capability, event or
    /// workflow.
    pub label: String,
    pub kind: NodeKind,
    /// The parallel step whose branch it belongs to (or the map step whose
    /// item flow); `None` at the top.
    pub parent: Option<String>,
    /// That branch's name (`items` in a map step).
    pub branch: Option<String>,
}

/// How control goes along an edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EdgeKind {
    Next,
    /// A decision's branch (labelled with its key).
    Decision,
    /// A decision's default.
    Default,
    /// A parallel step to a branch's first step (labelled with the branch).
    Branch,
    OnError,
    /// A step to the action that undoes it.
    Compensate,
    /// An error handler to what it runs (labelled with the error type).
    Handler,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Edge {
    pub from: String,
    pub to: String,
    pub kind: EdgeKind,
    pub label: Option<String>,
}

impl NodeKind {
    pub const ALL: [NodeKind; 9] = [
        NodeKind::Task,
        NodeKind::Decision,
        NodeKind::Parallel,
        NodeKind::Map,
        NodeKind::Wait,
        NodeKind::Event,
        NodeKind::Subworkflow,
        NodeKind::Compensation,
        NodeKind::Handler,
    ];

    /// Its name, as it serializes.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeKind::Task => "task",
            NodeKind::Decision => "decision",
            NodeKind::Parallel => "parallel",
            NodeKind::Map => "map",
            NodeKind::Wait => "wait",
            NodeKind::Event => "event",
            NodeKind::Subworkflow => "subworkflow",
            NodeKind::Compensation => "compensation",
            NodeKind::Handler => "handler",
        }
    }
}

impl EdgeKind {
    pub const ALL: [EdgeKind; 7] = [
        EdgeKind::Next,
        EdgeKind::Decision,
        EdgeKind::Default,
        EdgeKind::Branch,
        EdgeKind::OnError,
        EdgeKind::Compensate,
        EdgeKind::Handler,
    ];

    /// Its name, as it serializes.
    pub fn as_str(self) -> &'static str {
        match self {
            EdgeKind::Next => "next",
            EdgeKind::Decision => "decision",
            EdgeKind::Default => "default",
            EdgeKind::Branch => "branch",
            EdgeKind::OnError => "on_error",
            EdgeKind::Compensate => "compensate",
            EdgeKind::Handler => "handler",
        }
    }
}

/// The id of the node that undoes step `step`.
pub fn compensation_node(step: &str) -> String {
    format!("{step}~compensate")
}

/// The id of the node of the workflow's error handlers.
pub const HANDLERS_NODE: &str = "~errorHandlers";

impl Workflow {
    /// This version as a graph.
    pub fn graph(&self) -> Graph {
        let mut nodes = Vec::new();
        let mut edges = Vec::new();
        let mut undo = Vec::new();
        let edge = |from: &str, to: &str, kind: EdgeKind, label: Option<&str>| Edge {
            from: from.to_owned(),
            to: to.to_owned(),
            kind,
            label: label.map(str::to_owned),
        };
        for step in self.steps() {
            let (kind, what) = match &step.kind {
                StepKind::Task { capability } => (NodeKind::Task, capability.clone()),
                StepKind::Decision { .. } => (NodeKind::Decision, "decision".to_owned()),
                StepKind::Parallel { branches } => {
                    (NodeKind::Parallel, format!("{} branches", branches.len()))
                }
                StepKind::Map(map) => (
                    NodeKind::Map,
                    match map.max_concurrency {
                        Some(n) => format!("each item, {n} at a time"),
                        None => "each item".to_owned(),
                    },
                ),
                StepKind::Wait(_) => (NodeKind::Wait, "wait".to_owned()),
                StepKind::Event { name, .. } => (NodeKind::Event, format!("event {name}")),
                StepKind::Subworkflow { workflow, .. } => {
                    (NodeKind::Subworkflow, format!("workflow {workflow}"))
                }
            };
            let (parent, branch) = match &step.scope {
                super::step::Scope::Top => (None, None),
                super::step::Scope::Branch { parallel, branch } => {
                    let name = self.step(parallel).and_then(|p| match &p.kind {
                        StepKind::Parallel { branches } => {
                            branches.get(*branch).map(|b| b.name.clone())
                        }
                        _ => None,
                    });
                    (Some(parallel.clone()), name)
                }
                super::step::Scope::Items { map } => (Some(map.clone()), Some("items".to_owned())),
            };
            nodes.push(Node {
                id: step.id.clone(),
                label: format!("{}\n{what}", step.name),
                kind,
                parent: parent.clone(),
                branch: branch.clone(),
            });
            match &step.kind {
                StepKind::Decision {
                    branches, default, ..
                } => {
                    for (key, to) in branches {
                        edges.push(edge(&step.id, to, EdgeKind::Decision, Some(key)));
                    }
                    if let Some(to) = default {
                        edges.push(edge(&step.id, to, EdgeKind::Default, None));
                    }
                }
                StepKind::Map(map) => {
                    edges.push(edge(
                        &step.id,
                        &map.each.start,
                        EdgeKind::Branch,
                        Some("each item"),
                    ));
                }
                StepKind::Parallel { branches } => {
                    for b in branches {
                        edges.push(edge(&step.id, &b.start, EdgeKind::Branch, Some(&b.name)));
                    }
                }
                _ => {}
            }
            if let Some(to) = &step.next {
                edges.push(edge(&step.id, to, EdgeKind::Next, None));
            }
            if let Some(to) = &step.on_error {
                edges.push(edge(&step.id, to, EdgeKind::OnError, None));
            }
            if let Some(c) = &step.compensate {
                let id = compensation_node(&step.id);
                undo.push(Node {
                    id: id.clone(),
                    label: format!("undo {}\n{}", step.name, c.capability),
                    kind: NodeKind::Compensation,
                    parent,
                    branch,
                });
                edges.push(edge(&step.id, &id, EdgeKind::Compensate, None));
            }
        }
        nodes.extend(undo);
        if !self.error_handlers().is_empty() {
            // Handlers that run a step are edges; those that run another
            // workflow are written on the node.
            let mut label = "error handlers".to_owned();
            for h in self.error_handlers() {
                match &h.handler {
                    HandlerTarget::Step(to) => {
                        edges.push(edge(HANDLERS_NODE, to, EdgeKind::Handler, Some(&h.error)));
                    }
                    HandlerTarget::Workflow(w) => {
                        label.push_str(&format!("\n{}: workflow {w}", h.error));
                    }
                }
            }
            nodes.push(Node {
                id: HANDLERS_NODE.to_owned(),
                label,
                kind: NodeKind::Handler,
                parent: None,
                branch: None,
            });
        }
        Graph { nodes, edges }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    fn workflow(value: serde_json::Value) -> Workflow {
        Workflow::from_value(&value).unwrap()
    }

    /// The names the API documents (from `as_str`) are the names answers
    /// carry (from serde).
    #[test]
    fn every_kind_serializes_as_its_name() {
        for kind in NodeKind::ALL {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
        for kind in EdgeKind::ALL {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
    }

    /// Every edge joins two nodes of the graph, and every step is a node:
    /// nothing drawn points nowhere.
    #[test]
    fn every_edge_joins_nodes_and_every_step_is_one() {
        let w = workflow(json!({
            "name": "shapes",
            "steps": [
                {"id": "a", "type": "task", "capability": "x", "next": "d", "onError": "fix",
                 "compensate": {"capability": "undo.x"}},
                {"id": "d", "type": "decision", "decision": {"expression": "input.k",
                  "branches": {"p": "p", "w": "w"}, "default": "e"}},
                {"id": "p", "type": "parallel", "next": "e", "parallel": {"branches": [
                    {"name": "left", "steps": [{"id": "l1", "type": "task", "capability": "noop", "next": "l2"},
                                               {"id": "l2", "type": "task", "capability": "noop"}]},
                    {"name": "right", "steps": [{"id": "r1", "type": "task", "capability": "noop"}]}
                ]}},
                {"id": "w", "type": "wait", "wait": {"seconds": 1}, "next": "e"},
                {"id": "e", "type": "event", "event": {"name": "go"}},
                {"id": "fix", "type": "task", "capability": "noop"}
            ],
            "errorHandlers": [{"error": "*", "handler": "fix"}]
        }));
        let graph = w.graph();
        let ids: Vec<&str> = graph.nodes.iter().map(|n| n.id.as_str()).collect();
        for step in w.steps() {
            assert!(ids.contains(&step.id.as_str()), "{} is not drawn", step.id);
        }
        for e in &graph.edges {
            assert!(ids.contains(&e.from.as_str()), "{e:?}");
            assert!(ids.contains(&e.to.as_str()), "{e:?}");
        }
        let kinds = |from: &str| -> Vec<(EdgeKind, String, Option<String>)> {
            graph
                .edges
                .iter()
                .filter(|e| e.from == from)
                .map(|e| (e.kind, e.to.clone(), e.label.clone()))
                .collect()
        };
        assert_eq!(
            kinds("a"),
            vec![
                (EdgeKind::Next, "d".into(), None),
                (EdgeKind::OnError, "fix".into(), None),
                (EdgeKind::Compensate, "a~compensate".into(), None),
            ]
        );
        assert_eq!(
            kinds("d"),
            vec![
                (EdgeKind::Decision, "p".into(), Some("p".into())),
                (EdgeKind::Decision, "w".into(), Some("w".into())),
                (EdgeKind::Default, "e".into(), None),
            ]
        );
        assert_eq!(
            kinds("p"),
            vec![
                (EdgeKind::Branch, "l1".into(), Some("left".into())),
                (EdgeKind::Branch, "r1".into(), Some("right".into())),
                (EdgeKind::Next, "e".into(), None),
            ]
        );
        assert_eq!(
            kinds(HANDLERS_NODE),
            vec![(EdgeKind::Handler, "fix".into(), Some("*".into()))]
        );
        let l2 = graph.nodes.iter().find(|n| n.id == "l2").unwrap();
        assert_eq!(
            (l2.parent.as_deref(), l2.branch.as_deref()),
            (Some("p"), Some("left"))
        );
    }
}
