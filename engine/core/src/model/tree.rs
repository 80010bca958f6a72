//! The shape of a CEL expression tree: the subtrees right below a node, and
//! the depth of a tree.
//!
//! Shared by `expr` (the depth limit) and `instrument` (walking the tree to
//! charge it), and depends on neither. It must never change a tree or know
//! what a node means beyond where its subtrees are.

use cel::common::ast::{EntryExpr, Expr as Node, IdedExpr};

/// The depth of an expression tree: 1 for a leaf.
pub(super) fn depth(node: &IdedExpr) -> usize {
    1 + children(node).into_iter().map(depth).max().unwrap_or(0)
}

/// The subtrees right below `node`.
pub(super) fn children(node: &IdedExpr) -> Vec<&IdedExpr> {
    match &node.expr {
        Node::Unspecified | Node::Literal(_) | Node::Ident(_) => Vec::new(),
        Node::Select(select) => vec![&select.operand],
        Node::Call(call) => call.target.iter().map(|t| &**t).chain(&call.args).collect(),
        Node::List(list) => list.elements.iter().collect(),
        Node::Map(map) => map
            .entries
            .iter()
            .flat_map(|e| entry_children(&e.expr))
            .collect(),
        Node::Struct(structure) => structure
            .entries
            .iter()
            .flat_map(|e| entry_children(&e.expr))
            .collect(),
        Node::Comprehension(c) => vec![
            &c.iter_range,
            &c.accu_init,
            &c.loop_cond,
            &c.loop_step,
            &c.result,
        ],
    }
}

fn entry_children(entry: &EntryExpr) -> Vec<&IdedExpr> {
    match entry {
        EntryExpr::StructField(field) => vec![&field.value],
        EntryExpr::MapEntry(entry) => vec![&entry.key, &entry.value],
    }
}
