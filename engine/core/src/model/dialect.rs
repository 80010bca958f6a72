//! The orchestrator specification's dialect inside expressions: what
//! language 2 (see `language`) changes in how an expression is evaluated.
//!
//! Owns rewriting a checked, charged CEL tree (see `instrument`) so that:
//!
//! - `a || b` is `a` if `a` is truthy, else `b`, and `a && b` is `b` if `a`
//!   is truthy, else `a`, as in JavaScript. On booleans this is CEL's own
//!   meaning, but for one case: CEL takes `true` from `error || true` (and
//!   `false` from `error && false`), while here the left operand is always
//!   evaluated first and its failure is the expression's. Falsy values are
//!   `false`, `null`, `0`, `0.0`, NaN and `""`; every list and map is
//!   truthy, empty or not, as in JavaScript. The left operand is evaluated
//!   once: `a || b` becomes a comprehension over no items whose accumulator
//!   is `a` (charged as data, as `instrument` charges an accumulator) and
//!   whose result is `@truthy(acc) ? acc : b`;
//! - `x.length` is the size of a list or a string (in code points, as CEL's
//!   `size`), and the field `length` of a map;
//! - inside an operand of `||` and `&&`, `x.f` and `x[k]` are `null` where
//!   they lead nowhere (a missing field, an index past the end, a field of
//!   something that is not a map), as a path is, so that
//!   `$.variables.path || $.input.path` falls back when no step wrote the
//!   variable, as JavaScript's `undefined` does. Everywhere else a missing
//!   field is the evaluation error it is in CEL, which names the field.
//!
//! `has(x.f)` keeps its meaning, and so do the `||` and `&&` that CEL's own
//! macros (`all`, `exists`) build around their accumulator. The added
//! functions are named with `@`, which no expression can write, so they
//! never meet a user's name. It must never change a language 1 expression:
//! [`rewrite`] runs only on language 2 trees, and [`install`] only in their
//! evaluations.

use cel::common::ast::{
    CallExpr, ComprehensionExpr, EntryExpr, Expr as Node, IdedExpr, ListExpr, LiteralValue,
    operators,
};
use cel::common::types::{
    CelBool, CelDouble, CelInt, CelList, CelMap, CelNull, CelString, CelUInt,
};
use cel::common::value::{CowVal, Val};
use cel::{Context, ExecutionError};

use super::budget::{ChargeFn, DATA_FN};
use super::tree::children;

/// `@get(x, "f")`: the field `f` of map `x`, or `null`.
const GET_FN: &str = "@get";
/// `@index(x, k)`: `x[k]`, or `null`.
const INDEX_FN: &str = "@index";
/// `@length(x)`: the size of a list or string, or `x.length` of a map.
const LENGTH_FN: &str = "@length";
/// `@truthy(x)`: whether JavaScript would take `x` as true.
const TRUTHY_FN: &str = "@truthy";

/// `tree` with the dialect's meaning (see the module doc), and whether it
/// now calls the dialect's functions (then an evaluation must
/// [`install`] them).
pub(crate) fn rewrite(tree: IdedExpr) -> (IdedExpr, bool) {
    let next_id = max_id(&tree) + 1;
    let mut rewriter = Rewriter {
        next_id,
        binds: 0,
        lenient: false,
        calls: false,
    };
    let tree = rewriter.walk(tree);
    (tree, rewriter.calls)
}

/// Adds the dialect's functions to an evaluation's context.
pub(crate) fn install(context: &mut Context<'_, '_>) -> Result<(), String> {
    let get: ChargeFn = Box::new(|call| {
        let (container, key) = two(call, GET_FN)?;
        Ok(lookup(container, key.as_ref()))
    });
    let index: ChargeFn = Box::new(|call| {
        let (container, key) = two(call, INDEX_FN)?;
        Ok(lookup(container, key.as_ref()))
    });
    let length: ChargeFn = Box::new(|call| {
        let value = one(call, LENGTH_FN)?;
        if let Some(list) = value.downcast_ref::<CelList>() {
            return Ok(int(list.inner().len()));
        }
        if let Some(text) = value.downcast_ref::<CelString>() {
            return Ok(int(text.inner().chars().count()));
        }
        let key = CelString::from("length");
        Ok(lookup(value, &key))
    });
    let truthy: ChargeFn = Box::new(|call| {
        let value = one(call, TRUTHY_FN)?;
        Ok(CowVal::owned(CelBool::from(is_truthy(value.as_ref()))))
    });
    for (name, function) in [
        (GET_FN, get),
        (INDEX_FN, index),
        (LENGTH_FN, length),
        (TRUTHY_FN, truthy),
    ] {
        context
            .add_function(name, function)
            .map_err(|error| format!("the expression's functions could not be set up: {error}"))?;
    }
    Ok(())
}

/// Whether JavaScript takes `value` as true.
fn is_truthy(value: &dyn Val) -> bool {
    if value.downcast_ref::<CelNull>().is_some() {
        false
    } else if let Some(b) = value.downcast_ref::<CelBool>() {
        *b.inner()
    } else if let Some(i) = value.downcast_ref::<CelInt>() {
        *i.inner() != 0
    } else if let Some(u) = value.downcast_ref::<CelUInt>() {
        *u.inner() != 0
    } else if let Some(d) = value.downcast_ref::<CelDouble>() {
        let d = *d.inner();
        d != 0.0 && !d.is_nan()
    } else if let Some(s) = value.downcast_ref::<CelString>() {
        !s.inner().is_empty()
    } else {
        true
    }
}

/// `container[key]` for a map or a list, `null` where that leads nowhere.
fn lookup<'a, 'b>(container: CowVal<'a, 'b>, key: &dyn Val) -> CowVal<'a, 'b> {
    let indexable = container.downcast_ref::<CelMap>().is_some()
        || container.downcast_ref::<CelList>().is_some();
    if !indexable {
        return null();
    }
    match container {
        CowVal::Borrowed(value) => value
            .as_indexer()
            .and_then(|indexer| indexer.get(key).ok())
            .unwrap_or_else(null),
        CowVal::Owned(value) => value
            .as_indexer()
            .and_then(|indexer| indexer.get(key).ok())
            .map_or_else(null, |found| CowVal::Owned(found.into_owned())),
    }
}

fn null<'a, 'b>() -> CowVal<'a, 'b> {
    CowVal::owned(CelNull)
}

fn int<'a, 'b>(n: usize) -> CowVal<'a, 'b> {
    CowVal::owned(CelInt::from(i64::try_from(n).unwrap_or(i64::MAX)))
}

fn one<'a, 'b>(
    call: &mut cel::FunctionContext<'a, 'b>,
    name: &str,
) -> Result<CowVal<'a, 'b>, ExecutionError> {
    std::mem::take(&mut call.args)
        .into_iter()
        .next()
        .ok_or_else(|| ExecutionError::function_error(name, "called without an argument"))
}

fn two<'a, 'b>(
    call: &mut cel::FunctionContext<'a, 'b>,
    name: &str,
) -> Result<(CowVal<'a, 'b>, CowVal<'a, 'b>), ExecutionError> {
    let mut args = std::mem::take(&mut call.args).into_iter();
    match (args.next(), args.next()) {
        (Some(first), Some(second)) => Ok((first, second)),
        _ => Err(ExecutionError::function_error(
            name,
            "called without two arguments",
        )),
    }
}

struct Rewriter {
    next_id: u64,
    /// How many `||`/`&&` were rewritten: names their accumulators apart.
    binds: u64,
    /// Whether the walk is inside an operand of `||` or `&&`, where what
    /// leads nowhere is `null`.
    lenient: bool,
    /// Whether a dialect function was put in the tree.
    calls: bool,
}

impl Rewriter {
    fn node(&mut self, expr: Node) -> IdedExpr {
        let id = self.next_id;
        self.next_id += 1;
        IdedExpr { id, expr }
    }

    fn call(&mut self, name: &str, args: Vec<IdedExpr>) -> IdedExpr {
        self.calls |= [GET_FN, INDEX_FN, LENGTH_FN, TRUTHY_FN].contains(&name);
        self.node(Node::Call(CallExpr {
            func_name: name.to_owned(),
            target: None,
            args,
        }))
    }

    fn walk(&mut self, tree: IdedExpr) -> IdedExpr {
        let IdedExpr { id, expr } = tree;
        let expr = match expr {
            Node::Unspecified | Node::Literal(_) | Node::Ident(_) => expr,
            Node::Select(mut select) => {
                let operand = self.walk(std::mem::take(&mut *select.operand));
                if select.test {
                    *select.operand = operand;
                    Node::Select(select)
                } else if select.field == "length" {
                    return self.call(LENGTH_FN, vec![operand]);
                } else if !self.lenient {
                    *select.operand = operand;
                    Node::Select(select)
                } else {
                    let field = self.node(Node::Literal(LiteralValue::String(
                        select.field.clone().into(),
                    )));
                    return self.call(GET_FN, vec![operand, field]);
                }
            }
            Node::Call(call) => return self.walk_call(id, call),
            Node::List(mut list) => {
                list.elements = std::mem::take(&mut list.elements)
                    .into_iter()
                    .map(|element| self.walk(element))
                    .collect();
                Node::List(list)
            }
            Node::Map(mut map) => {
                for entry in &mut map.entries {
                    if let EntryExpr::MapEntry(entry) = &mut entry.expr {
                        entry.key = self.walk(std::mem::take(&mut entry.key));
                        entry.value = self.walk(std::mem::take(&mut entry.value));
                    }
                }
                Node::Map(map)
            }
            Node::Struct(mut structure) => {
                for entry in &mut structure.entries {
                    if let EntryExpr::StructField(field) = &mut entry.expr {
                        field.value = self.walk(std::mem::take(&mut field.value));
                    }
                }
                Node::Struct(structure)
            }
            Node::Comprehension(c) => {
                let c = *c;
                Node::Comprehension(Box::new(ComprehensionExpr {
                    iter_range: self.walk(c.iter_range),
                    accu_init: self.walk(c.accu_init),
                    loop_cond: self.walk(c.loop_cond),
                    loop_step: self.walk(c.loop_step),
                    result: self.walk(c.result),
                    ..c
                }))
            }
        };
        IdedExpr { id, expr }
    }

    fn walk_call(&mut self, id: u64, mut call: CallExpr) -> IdedExpr {
        let logical = matches!(
            call.func_name.as_str(),
            operators::LOGICAL_OR | operators::LOGICAL_AND
        );
        // The `||` / `&&` CEL's macros build around their accumulator keep
        // CEL's meaning (their operands are booleans, and the macros absorb
        // errors their own way).
        let around_accumulator = call
            .args
            .iter()
            .any(|arg| matches!(&arg.expr, Node::Ident(name) if name.starts_with('@')));
        let picks = logical && !around_accumulator && call.args.len() == 2;
        let outer = self.lenient;
        self.lenient = outer || picks;
        call.target = call.target.map(|target| Box::new(self.walk(*target)));
        call.args = std::mem::take(&mut call.args)
            .into_iter()
            .map(|arg| self.walk(arg))
            .collect();
        self.lenient = outer;
        if picks {
            let or = call.func_name == operators::LOGICAL_OR;
            let right = call.args.pop();
            let left = call.args.pop();
            if let (Some(left), Some(right)) = (left, right) {
                return self.pick(or, left, right);
            }
        }
        if self.lenient
            && call.func_name == operators::INDEX
            && call.target.is_none()
            && call.args.len() == 2
        {
            return self.call(INDEX_FN, call.args);
        }
        IdedExpr {
            id,
            expr: Node::Call(call),
        }
    }

    /// `left || right` (`or`) or `left && right`, picking an operand:
    /// `[].fold(acc = left, @truthy(acc) ? acc : right)` for `||`, and
    /// `… ? right : acc` for `&&`.
    fn pick(&mut self, or: bool, left: IdedExpr, right: IdedExpr) -> IdedExpr {
        let accumulator = format!("@pick{}", self.binds);
        self.binds += 1;
        let acc = |me: &mut Rewriter| me.node(Node::Ident(accumulator.clone()));
        let test = {
            let acc = acc(self);
            self.call(TRUTHY_FN, vec![acc])
        };
        let kept = acc(self);
        let (then, otherwise) = if or { (kept, right) } else { (right, kept) };
        let result = self.call(operators::CONDITIONAL, vec![test, then, otherwise]);
        let no_items = self.node(Node::List(ListExpr::default()));
        let accu_init = self.call(DATA_FN, vec![left]);
        let loop_cond = self.node(Node::Literal(LiteralValue::Boolean(false.into())));
        let loop_step = acc(self);
        self.node(Node::Comprehension(Box::new(ComprehensionExpr {
            iter_range: no_items,
            iter_var: "@none".to_owned(),
            iter_var2: None,
            accu_var: accumulator.clone(),
            accu_init,
            loop_cond,
            loop_step,
            result,
        })))
    }
}

fn max_id(e: &IdedExpr) -> u64 {
    children(e).into_iter().map(max_id).fold(e.id, u64::max)
}
