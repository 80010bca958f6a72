//! Putting the evaluation budget's charges into a compiled expression.
//!
//! Owns where in the CEL tree the charging calls of `budget` go, so that
//! every piece of work whose cost depends on the size of a value, or on how
//! many times a comprehension runs, is charged before it is done:
//!
//! - a comprehension's range `r` becomes `@range(r, steps)`, `steps` being
//!   the number of nodes of its body (condition and step);
//! - a comprehension's initial accumulator, the elements of a list literal,
//!   the keys and values of a map literal (each copied when the literal is
//!   built), the operands of `+`, `==`, `!=`, `<`, `<=`, `>`, `>=` and `in`,
//!   an index (`m[k]`), and the arguments and receiver of functions whose
//!   work grows with their arguments (`contains`, `startsWith`, conversions,
//!   `optional.of`, …), become `@data(x)`; the right side of `in` becomes
//!   `@lookup(x)`;
//! - `matches` becomes `@matches`, which charges and then matches; the
//!   patterns written as string literals are listed (see
//!   [`literal_patterns`]) to be compiled with the expression.
//!
//! A scalar literal (`1`, `true`, `null`) is never wrapped: it costs nothing.
//! Nor are the operands of `&&`, `||`, `!`, `? :`, the numeric operators
//! (numbers only), `size`, `type`, `dyn` and the optional accessors, whose
//! cost does not depend on their operands' size.
//!
//! It must never change what an expression means: the charging functions
//! return their argument unchanged, and the shapes the `cel` crate evaluates
//! specially are kept: the `@result + [e]` step of `map` and `filter` (its
//! fast path, which appends in place), names used as namespaces
//! (`optional.of`), and a comprehension's accumulator. It runs on the tree
//! once it is checked (depth, names), so the limits apply to what the user
//! wrote; the calls it adds deepen the tree by a bounded amount, and a tree
//! they make deeper than the limit is evaluated on a large stack (`stack`).

use cel::common::ast::{
    CallExpr, ComprehensionExpr, EntryExpr, Expr as Node, IdedExpr, LiteralValue, operators,
};

use super::budget::{DATA_FN, LOOKUP_FN, MATCHES_FN, RANGE_FN};
use super::tree::children;

/// Functions that take constant time whatever their arguments are, and copy
/// nothing: their arguments are not charged.
const CHEAP_FUNCTIONS: &[&str] = &["size", "type", "dyn", "hasValue", "value", "or", "orValue"];

/// Names that are namespaces of functions, never values, as a call's target.
const NAMESPACES: &[&str] = &["optional"];

/// The most string literal patterns of one expression compiled with it;
/// any others are compiled when it is evaluated, and charged.
const LITERAL_PATTERNS_MAX: usize = 8;

/// The distinct patterns of `@matches` calls in `tree` (as [`instrument`]
/// made it) that are string literals, the first [`LITERAL_PATTERNS_MAX`] in
/// the order they are written.
pub(crate) fn literal_patterns(tree: &IdedExpr) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    let mut pending = vec![tree];
    while let Some(e) = pending.pop() {
        if found.len() >= LITERAL_PATTERNS_MAX {
            break;
        }
        if let Node::Call(call) = &e.expr
            && call.func_name == MATCHES_FN
            && let [first, second, member] = call.args.as_slice()
        {
            let member = matches!(
                &member.expr,
                Node::Literal(LiteralValue::Boolean(b)) if *b.inner()
            );
            let pattern = if member { first } else { second };
            if let Node::Literal(LiteralValue::String(text)) = &pattern.expr
                && !found.iter().any(|f| f.as_str() == text.inner())
            {
                found.push(text.inner().to_owned());
            }
        }
        // Last child first, so the first written is found first.
        pending.extend(children(e).into_iter().rev());
    }
    found
}

/// `tree` with the budget's charging calls added.
pub(crate) fn instrument(tree: IdedExpr) -> IdedExpr {
    let mut next_id = max_id(&tree) + 1;
    Instrumenter {
        next_id: &mut next_id,
    }
    .walk(tree)
}

struct Instrumenter<'a> {
    next_id: &'a mut u64,
}

impl Instrumenter<'_> {
    fn node(&mut self, expr: Node) -> IdedExpr {
        let id = *self.next_id;
        *self.next_id += 1;
        IdedExpr { id, expr }
    }

    /// `name(args)`, a call added by this module.
    fn call(&mut self, name: &str, args: Vec<IdedExpr>) -> IdedExpr {
        self.node(Node::Call(CallExpr {
            func_name: name.to_owned(),
            target: None,
            args,
        }))
    }

    /// `@data(e)` for `e` walked, unless `e` is a scalar literal.
    fn data(&mut self, e: IdedExpr) -> IdedExpr {
        let e = self.walk(e);
        if is_scalar_literal(&e) {
            e
        } else {
            self.call(DATA_FN, vec![e])
        }
    }

    fn walk(&mut self, tree: IdedExpr) -> IdedExpr {
        let IdedExpr { id, expr } = tree;
        let expr = match expr {
            Node::Unspecified | Node::Literal(_) | Node::Ident(_) => expr,
            Node::Select(mut select) => {
                let operand = std::mem::take(&mut *select.operand);
                *select.operand = self.walk(operand);
                Node::Select(select)
            }
            Node::Call(call) => Node::Call(self.walk_call(call)),
            Node::List(mut list) => {
                list.elements = std::mem::take(&mut list.elements)
                    .into_iter()
                    .map(|element| self.data(element))
                    .collect();
                Node::List(list)
            }
            Node::Map(mut map) => {
                for entry in &mut map.entries {
                    if let EntryExpr::MapEntry(entry) = &mut entry.expr {
                        entry.key = self.data(std::mem::take(&mut entry.key));
                        entry.value = self.data(std::mem::take(&mut entry.value));
                    }
                }
                Node::Map(map)
            }
            Node::Struct(mut structure) => {
                for entry in &mut structure.entries {
                    if let EntryExpr::StructField(field) = &mut entry.expr {
                        field.value = self.data(std::mem::take(&mut field.value));
                    }
                }
                Node::Struct(structure)
            }
            Node::Comprehension(comprehension) => {
                Node::Comprehension(Box::new(self.walk_comprehension(*comprehension)))
            }
        };
        IdedExpr { id, expr }
    }

    fn walk_comprehension(&mut self, c: ComprehensionExpr) -> ComprehensionExpr {
        let steps = (size(&c.loop_cond) + size(&c.loop_step)).max(1);
        let iter_range = if is_empty_list(&c.iter_range) {
            c.iter_range
        } else {
            let range = self.walk(c.iter_range);
            let steps = self.node(Node::Literal(LiteralValue::Int(
                i64::try_from(steps).unwrap_or(i64::MAX).into(),
            )));
            self.call(RANGE_FN, vec![range, steps])
        };
        let accu_init = if is_empty_list(&c.accu_init) {
            c.accu_init
        } else {
            self.data(c.accu_init)
        };
        ComprehensionExpr {
            iter_range,
            accu_init,
            loop_cond: self.walk(c.loop_cond),
            loop_step: self.walk(c.loop_step),
            result: self.walk(c.result),
            ..c
        }
    }

    fn walk_call(&mut self, mut call: CallExpr) -> CallExpr {
        if let Some(matches) = self.matches(&mut call) {
            return matches;
        }
        let args = std::mem::take(&mut call.args);
        call.args = match call.func_name.as_str() {
            operators::LOGICAL_AND
            | operators::LOGICAL_OR
            | operators::LOGICAL_NOT
            | operators::CONDITIONAL
            | operators::NOT_STRICTLY_FALSE
            | operators::NEGATE
            | operators::SUBSTRACT
            | operators::MULTIPLY
            | operators::DIVIDE
            | operators::MODULO => self.walk_all(args),
            // The field of `a.?f` is a string literal read as such.
            operators::OPT_SELECT => self.walk_first(args),
            // Indexing reads the container in place; a map hashes the key.
            operators::INDEX | operators::OPT_INDEX => {
                let mut args = args.into_iter();
                let mut walked: Vec<IdedExpr> =
                    args.next().map(|t| self.walk(t)).into_iter().collect();
                walked.extend(args.map(|key| self.data(key)));
                walked
            }
            operators::IN => {
                let mut args = args.into_iter();
                let mut walked: Vec<IdedExpr> =
                    args.next().map(|e| self.data(e)).into_iter().collect();
                for container in args {
                    let container = self.walk(container);
                    walked.push(self.call(LOOKUP_FN, vec![container]));
                }
                walked
            }
            // `@result + [e]`, the step of `map` and `filter`, and
            // `@result + 1`, that of `exists_one`: the accumulator is never
            // charged, and the list literal's elements are.
            operators::ADD if args.first().is_some_and(is_accumulator) => self.walk_all(args),
            name if CHEAP_FUNCTIONS.contains(&name) => self.walk_all(args),
            _ => args.into_iter().map(|arg| self.data(arg)).collect(),
        };
        if let Some(target) = call.target.take() {
            let cheap = CHEAP_FUNCTIONS.contains(&call.func_name.as_str());
            let namespace =
                matches!(&target.expr, Node::Ident(name) if NAMESPACES.contains(&name.as_str()));
            call.target = Some(Box::new(if cheap || namespace {
                self.walk(*target)
            } else {
                self.data(*target)
            }));
        }
        call
    }

    /// `text.matches(pattern)` as `@matches(pattern, text, true)`, and
    /// `matches(text, pattern)` as `@matches(text, pattern, false)`: the
    /// operands in the order CEL evaluates them. `None`, leaving `call` as it
    /// was, for any other call.
    fn matches(&mut self, call: &mut CallExpr) -> Option<CallExpr> {
        if call.func_name != "matches" {
            return None;
        }
        let (first, second, member) = match (call.target.take(), call.args.len()) {
            (Some(text), 1) => (call.args.pop()?, *text, true),
            (None, 2) => {
                let pattern = call.args.pop()?;
                (call.args.pop()?, pattern, false)
            }
            (target, _) => {
                call.target = target;
                return None;
            }
        };
        let member = self.node(Node::Literal(LiteralValue::Boolean(member.into())));
        let args = vec![self.walk(first), self.walk(second), member];
        Some(CallExpr {
            func_name: MATCHES_FN.to_owned(),
            target: None,
            args,
        })
    }

    fn walk_all(&mut self, args: Vec<IdedExpr>) -> Vec<IdedExpr> {
        args.into_iter().map(|arg| self.walk(arg)).collect()
    }

    /// The first argument walked, the others as they are.
    fn walk_first(&mut self, args: Vec<IdedExpr>) -> Vec<IdedExpr> {
        let mut args = args.into_iter();
        let mut walked: Vec<IdedExpr> = args.next().map(|a| self.walk(a)).into_iter().collect();
        walked.extend(args);
        walked
    }
}

/// A literal whose evaluation and copy cost nothing: not a string or bytes.
fn is_scalar_literal(e: &IdedExpr) -> bool {
    matches!(
        &e.expr,
        Node::Literal(
            LiteralValue::Boolean(_)
                | LiteralValue::Int(_)
                | LiteralValue::UInt(_)
                | LiteralValue::Double(_)
                | LiteralValue::Null
        )
    )
}

fn is_empty_list(e: &IdedExpr) -> bool {
    matches!(&e.expr, Node::List(list) if list.elements.is_empty())
}

/// A comprehension's accumulator: the macros name it with a `@`, which an
/// expression cannot write.
fn is_accumulator(e: &IdedExpr) -> bool {
    matches!(&e.expr, Node::Ident(name) if name.starts_with('@'))
}

/// The number of nodes in `e`.
fn size(e: &IdedExpr) -> u64 {
    1 + children(e).into_iter().map(size).sum::<u64>()
}

/// The largest id in `e`.
fn max_id(e: &IdedExpr) -> u64 {
    children(e).into_iter().map(max_id).fold(e.id, u64::max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cel::Env;

    fn instrumented(source: &str) -> IdedExpr {
        match Env::stdlib().parser().parse(source) {
            Ok(tree) => instrument(tree),
            Err(errors) => panic!("{source}: {errors}"),
        }
    }

    fn call<'a>(e: &'a IdedExpr, name: &str) -> &'a CallExpr {
        match &e.expr {
            Node::Call(call) if call.func_name == name => call,
            other => panic!("expected a call to {name}, got {other:?}"),
        }
    }

    fn comprehension(e: &IdedExpr) -> &ComprehensionExpr {
        match &e.expr {
            Node::Comprehension(c) => c,
            other => panic!("expected a comprehension, got {other:?}"),
        }
    }

    #[test]
    fn map_and_filter_keep_their_append_step() {
        for source in [
            "l.map(x, x * 2)",
            "l.map(x, x > 0, x)",
            "l.filter(x, x > 0)",
        ] {
            let tree = instrumented(source);
            let c = comprehension(&tree);
            assert_eq!(call(&c.iter_range, RANGE_FN).args.len(), 2, "{source}");
            assert!(is_empty_list(&c.accu_init), "{source}");
            let step = match &c.loop_step.expr {
                Node::Call(call) if call.func_name == operators::CONDITIONAL => &call.args[1],
                _ => &c.loop_step,
            };
            let append = call(step, operators::ADD);
            assert!(is_accumulator(&append.args[0]), "{source}");
            let Node::List(items) = &append.args[1].expr else {
                panic!("{source}: the appended value is not a list literal");
            };
            call(&items.elements[0], DATA_FN);
        }
    }

    #[test]
    fn a_comprehension_is_charged_per_node_of_its_body() {
        let tree = instrumented("l.all(x, x > 0)");
        let c = comprehension(&tree);
        let range = call(&c.iter_range, RANGE_FN);
        // `@not_strictly_false(@result)` and `@result && x > 0`.
        assert!(matches!(
            &range.args[1].expr,
            Node::Literal(LiteralValue::Int(steps)) if *steps.inner() == 2 + 5
        ));
    }

    #[test]
    fn namespaces_and_cheap_functions_are_left_alone() {
        let tree = instrumented("optional.of(x)");
        let of = call(&tree, "of");
        assert!(
            matches!(&of.target.as_deref().map(|t| &t.expr), Some(Node::Ident(n)) if n == "optional")
        );
        call(&of.args[0], DATA_FN);
        let tree = instrumented("size(x) + 1");
        let add = call(&tree, operators::ADD);
        let data = call(&add.args[0], DATA_FN);
        let size = call(&data.args[0], "size");
        assert!(matches!(size.args[0].expr, Node::Ident(_)), "size is cheap");
        assert!(
            matches!(add.args[1].expr, Node::Literal(_)),
            "a number literal is free"
        );
    }

    #[test]
    fn matches_becomes_a_charged_call_in_evaluation_order() {
        let tree = instrumented("s.matches(p)");
        let m = call(&tree, MATCHES_FN);
        assert!(matches!(&m.args[0].expr, Node::Ident(n) if n == "p"));
        assert!(matches!(&m.args[1].expr, Node::Ident(n) if n == "s"));
        let tree = instrumented("matches(s, p)");
        let m = call(&tree, MATCHES_FN);
        assert!(matches!(&m.args[0].expr, Node::Ident(n) if n == "s"));
        assert!(matches!(&m.args[1].expr, Node::Ident(n) if n == "p"));
        // Not CEL's `matches`: left to fail as it would.
        call(&instrumented("matches(s)"), "matches");
    }

    #[test]
    fn literal_patterns_are_listed_once_in_order() {
        let tree =
            instrumented(r"s.matches('a') || matches(s, 'b') || s.matches(p) || s.matches('a')");
        assert_eq!(literal_patterns(&tree), ["a", "b"]);
        let many: Vec<String> = (0..20).map(|n| format!("s.matches('{n}')")).collect();
        let tree = instrumented(&many.join(" || "));
        assert_eq!(literal_patterns(&tree).len(), LITERAL_PATTERNS_MAX);
    }

    #[test]
    fn new_nodes_get_ids_of_their_own() {
        let tree = instrumented("[a, b].map(x, x + 'c' == d)");
        let mut ids = Vec::new();
        fn collect(e: &IdedExpr, ids: &mut Vec<u64>) {
            ids.push(e.id);
            for child in children(e) {
                collect(child, ids);
            }
        }
        collect(&tree, &mut ids);
        let count = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), count);
    }
}
