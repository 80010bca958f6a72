//! The cost budget of one expression evaluation.
//!
//! CEL has no loops a user can write, but its comprehensions (`all`,
//! `exists`, `exists_one`, `map`, `filter`) nest, and the `cel` crate copies
//! values whenever it builds a list or map, binds a comprehension variable or
//! concatenates: a short expression over a large input can take minutes and
//! gigabytes. So every evaluation gets a budget, counted rather than timed,
//! so that one expression over one context always runs out at the same point
//! and fails with the same words:
//!
//! - [`EVAL_STEPS_MAX`] steps: each iteration of a comprehension costs one
//!   step per node of its body, charged for all its iterations when it starts,
//!   and each call to `matches` what compiling its pattern (once per
//!   evaluation at most) and matching its text cost (see `pattern`);
//! - [`EVAL_DATA_MAX`] bytes of data: every value an operation copies,
//!   compares or scans is charged its estimated size (see [`data_size`])
//!   before the operation runs;
//! - [`RESULT_BYTES_MAX`] bytes of result, checked when the result is turned
//!   into JSON (see `cel_json`).
//!
//! The charges are made by the functions this module adds to each
//! evaluation's CEL context ([`RANGE_FN`], [`DATA_FN`], [`LOOKUP_FN`],
//! [`MATCHES_FN`]); where the calls go in the compiled tree is `instrument`'s
//! business. Each evaluation has a [`Budget`] of its own, which also holds
//! the patterns `matches` compiled during it.
//!
//! This module owns the limits, the counting and the size estimates. It must
//! never read a clock or depend on anything but the expression and the values
//! it is charged for, and never let a budget that ran out be forgotten: once
//! exhausted, every later charge fails too, and the evaluation fails with the
//! budget's message whatever the expression made of the errors.

use std::collections::hash_map;
use std::fmt;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use cel::common::types::{
    CelBool, CelBytes, CelInt, CelList, CelMap, CelMapKey, CelOptional, CelString,
};
use cel::common::value::{CowVal, Val};
use cel::{Context, Env, ExecutionError, FunctionContext};

use super::pattern::{Literals, Patterns};

/// Steps one evaluation may take. An iteration of a comprehension costs one
/// step per node of the comprehension's body (at least one; `map(x, x * 2)`
/// costs 7), nested comprehensions counted in full: about 700,000 iterations
/// of a small body, a few tenths of a second. A call to `matches` costs a
/// step or more per byte of its text, and compiling a pattern that is not a
/// literal of the expression from 4,096 steps up (see `pattern`).
pub const EVAL_STEPS_MAX: u64 = 5_000_000;

/// Bytes of data one evaluation may copy, compare or scan, as estimated by
/// `data_size`: every value an operator or function works on, every value
/// put into a list or map, every range a comprehension iterates over. A
/// million values; enough to map a list of 500,000 numbers once.
pub const EVAL_DATA_MAX: u64 = 32 * 1024 * 1024;

/// The largest result an evaluation may return, in bytes of its compact JSON
/// text (escapes in strings not counted).
pub const RESULT_BYTES_MAX: usize = 4 * 1024 * 1024;

/// What [`data_size`] counts for every value, besides the bytes of a string:
/// about what a value takes in memory while CEL holds it.
pub(crate) const VALUE_BYTES: u64 = 32;

/// `@range(range, steps)`: charges a comprehension's iterations before they
/// run, `steps` steps for each element of `range`, and `range`'s size as data
/// (each element is copied into the loop variable); returns `range`.
pub(crate) const RANGE_FN: &str = "@range";

/// `@data(value)`: charges `value`'s size as data; returns `value`.
pub(crate) const DATA_FN: &str = "@data";

/// `@lookup(container)`: charges the right side of `in`: a map only one
/// value (a lookup), a list its size as data; returns `container`.
pub(crate) const LOOKUP_FN: &str = "@lookup";

/// `@matches(a, b, member)`: CEL's `matches`, charged first: the text and
/// the pattern as data, and compiling (once per evaluation) and matching as
/// steps (see `pattern`). `member` says it was written `text.matches(pattern)`, and
/// `a` is then the pattern (evaluated first, as CEL does), `b` the text;
/// else it was `matches(text, pattern)`, and `a` is the text.
pub(crate) const MATCHES_FN: &str = "@matches";

/// Which budget ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exhausted {
    /// [`EVAL_STEPS_MAX`].
    Steps,
    /// [`EVAL_DATA_MAX`].
    Data,
}

impl Exhausted {
    fn code(self) -> u8 {
        match self {
            Exhausted::Steps => 1,
            Exhausted::Data => 2,
        }
    }

    fn from_code(code: u8) -> Option<Exhausted> {
        match code {
            1 => Some(Exhausted::Steps),
            2 => Some(Exhausted::Data),
            _ => None,
        }
    }
}

impl fmt::Display for Exhausted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exhausted::Steps => write!(
                f,
                "the expression ran out of its step budget ({EVAL_STEPS_MAX} steps; each \
                 iteration of all, exists, exists_one, map or filter costs one step per node of \
                 its body, and matches costs by the size of its pattern)"
            ),
            Exhausted::Data => write!(
                f,
                "the expression ran out of its data budget ({EVAL_DATA_MAX} bytes of values \
                 copied, compared or scanned, counting {VALUE_BYTES} bytes per value plus the \
                 bytes of strings)"
            ),
        }
    }
}

/// The budget of one evaluation: what is left of each limit.
///
/// Shared between the evaluation and the functions it adds to the CEL
/// context, which must be `Send + Sync`; evaluation is single-threaded, so
/// relaxed atomics are only there to satisfy that bound.
#[derive(Debug)]
pub(crate) struct Budget {
    steps_left: AtomicU64,
    data_left: AtomicU64,
    exhausted: AtomicU8,
    /// The patterns of `matches` compiled so far.
    patterns: Mutex<Patterns>,
}

impl Default for Budget {
    fn default() -> Budget {
        Budget::new(Arc::default())
    }
}

impl Budget {
    /// The budget of an evaluation of an expression whose string literal
    /// patterns are `literals` (compiled when first needed, then kept).
    pub(crate) fn new(literals: Arc<Literals>) -> Budget {
        Budget {
            steps_left: AtomicU64::new(EVAL_STEPS_MAX),
            data_left: AtomicU64::new(EVAL_DATA_MAX),
            exhausted: AtomicU8::new(0),
            patterns: Mutex::new(Patterns::new(literals)),
        }
    }

    /// Adds the charging functions, bound to this budget, to `context`,
    /// whose environment is `env`.
    pub(crate) fn install(
        self: &Arc<Budget>,
        context: &mut Context<'_, '_>,
        env: &Arc<Env>,
    ) -> Result<(), String> {
        let budget = Arc::clone(self);
        let range: ChargeFn = Box::new(move |call| {
            let mut args = std::mem::take(&mut call.args).into_iter();
            let range = args.next().ok_or_else(|| missing(RANGE_FN))?;
            budget.check()?;
            let steps = args
                .next()
                .and_then(|steps| steps.downcast_ref::<CelInt>().map(|s| *s.inner()))
                .map_or(1, |steps| u64::try_from(steps).unwrap_or(1));
            let (len, data) = range_size(range.as_ref(), budget.left(Exhausted::Data));
            budget.charge(Exhausted::Steps, len.saturating_mul(steps))?;
            budget.charge(Exhausted::Data, data)?;
            Ok(range)
        });
        let budget = Arc::clone(self);
        let data: ChargeFn = Box::new(move |call| {
            let value = first(call, DATA_FN)?;
            budget.check()?;
            budget.charge(
                Exhausted::Data,
                data_size(value.as_ref(), budget.left(Exhausted::Data)),
            )?;
            Ok(value)
        });
        let budget = Arc::clone(self);
        let lookup: ChargeFn = Box::new(move |call| {
            let container = first(call, LOOKUP_FN)?;
            budget.check()?;
            let size = if container.downcast_ref::<CelMap>().is_some() {
                VALUE_BYTES
            } else {
                data_size(container.as_ref(), budget.left(Exhausted::Data))
            };
            budget.charge(Exhausted::Data, size)?;
            Ok(container)
        });
        let budget = Arc::clone(self);
        let env = Arc::clone(env);
        let matches: ChargeFn = Box::new(move |call| {
            let args = std::mem::take(&mut call.args);
            budget.check()?;
            let member = args
                .get(2)
                .and_then(|member| member.downcast_ref::<CelBool>().map(|b| *b.inner()))
                .unwrap_or(false);
            let mut args = args.into_iter().take(2);
            let (first, second) = match (args.next(), args.next()) {
                (Some(first), Some(second)) => (first, second),
                _ => return Err(missing(MATCHES_FN)),
            };
            let (text, pattern) = if member {
                (second, first)
            } else {
                (first, second)
            };
            if let Some(matched) = budget.matches(text.as_ref(), pattern.as_ref())? {
                return Ok(CowVal::owned(CelBool::from(matched)));
            }
            let args = vec![text, pattern];
            match env.find_overload("matches", &args) {
                Some(matches) => matches(args),
                None => {
                    let types = args
                        .iter()
                        .map(|arg| arg.get_type().name().to_owned())
                        .collect();
                    Err(if member {
                        ExecutionError::no_such_member_overload("matches", types)
                    } else {
                        ExecutionError::no_such_overload("matches", types)
                    })
                }
            }
        });
        for (name, function) in [
            (RANGE_FN, range),
            (DATA_FN, data),
            (LOOKUP_FN, lookup),
            (MATCHES_FN, matches),
        ] {
            context
                .add_function(name, function)
                .map_err(|error| format!("the evaluation budget could not be set up: {error}"))?;
        }
        Ok(())
    }

    /// A call to `matches`, charged: the text and the pattern as data; as
    /// steps, compiling the pattern unless this evaluation or the expression
    /// compiled it before, and matching the text (see `pattern`). `None` if
    /// they are not both strings: CEL's overloads then say what is wrong.
    fn matches(&self, text: &dyn Val, pattern: &dyn Val) -> Result<Option<bool>, ExecutionError> {
        let left = self.left(Exhausted::Data);
        let data = data_size(text, left).saturating_add(data_size(pattern, left));
        self.charge(Exhausted::Data, data)?;
        let (Some(text), Some(pattern)) = (
            text.downcast_ref::<CelString>(),
            pattern.downcast_ref::<CelString>(),
        ) else {
            return Ok(None);
        };
        let compiled = self
            .patterns
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(pattern.inner(), |steps| {
                self.charge(Exhausted::Steps, steps)
            })?;
        let compiled =
            compiled.map_err(|error| ExecutionError::function_error("matches", error))?;
        let text = text.inner();
        self.charge(Exhausted::Steps, compiled.match_steps(text.len()))?;
        Ok(Some(compiled.is_match(text)))
    }

    /// Which budget ran out, if one did.
    pub(crate) fn exhausted(&self) -> Option<Exhausted> {
        Exhausted::from_code(self.exhausted.load(Ordering::Relaxed))
    }

    fn counter(&self, which: Exhausted) -> &AtomicU64 {
        match which {
            Exhausted::Steps => &self.steps_left,
            Exhausted::Data => &self.data_left,
        }
    }

    fn left(&self, which: Exhausted) -> u64 {
        self.counter(which).load(Ordering::Relaxed)
    }

    /// Fails if a budget ran out: checked before measuring what to charge,
    /// so that nothing more is walked once the evaluation has failed.
    fn check(&self) -> Result<(), ExecutionError> {
        match self.exhausted() {
            Some(_) => Err(exhausted_error()),
            None => Ok(()),
        }
    }

    /// Takes `amount` from the budget `which`; fails, and stays failed, when
    /// it has less left, or when any budget ran out before.
    fn charge(&self, which: Exhausted, amount: u64) -> Result<(), ExecutionError> {
        self.check()?;
        let counter = self.counter(which);
        let left = counter.load(Ordering::Relaxed);
        if amount > left {
            counter.store(0, Ordering::Relaxed);
            self.exhausted.store(which.code(), Ordering::Relaxed);
            return Err(exhausted_error());
        }
        counter.store(left - amount, Ordering::Relaxed);
        Ok(())
    }
}

/// The shape of a function added to a CEL context (the `cel` crate's own
/// `Function`, which it does not export by name).
pub(super) type ChargeFn = Box<
    dyn for<'a, 'b> Fn(&mut FunctionContext<'a, 'b>) -> Result<CowVal<'a, 'b>, ExecutionError>
        + Send
        + Sync,
>;

/// The first argument of a charging call, moved out.
fn first<'a, 'b>(
    call: &mut FunctionContext<'a, 'b>,
    name: &str,
) -> Result<CowVal<'a, 'b>, ExecutionError> {
    std::mem::take(&mut call.args)
        .into_iter()
        .next()
        .ok_or_else(|| missing(name))
}

fn missing(name: &str) -> ExecutionError {
    ExecutionError::function_error(name, "called without an argument")
}

/// The error a charge fails with. Its words never reach the user: the
/// evaluation reports [`Budget::exhausted`] instead.
fn exhausted_error() -> ExecutionError {
    ExecutionError::function_error("budget", "the evaluation budget ran out")
}

/// How many iterations a comprehension over `range` runs, and the data its
/// loop variable copies: a list's elements, or a map's keys. Anything else
/// is not iterable; CEL reports that, so it costs nothing here.
fn range_size(range: &dyn Val, cap: u64) -> (u64, u64) {
    if let Some(list) = range.downcast_ref::<CelList>() {
        (len(list.inner().len()), data_size(range, cap))
    } else if let Some(map) = range.downcast_ref::<CelMap>() {
        let mut data = 0u64;
        for key in map.inner().keys() {
            data = data.saturating_add(key_size(key));
            if data > cap {
                break;
            }
        }
        (len(map.inner().len()), data)
    } else {
        (0, 0)
    }
}

fn len(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

fn key_size(key: &CelMapKey<'_>) -> u64 {
    VALUE_BYTES.saturating_add(match key {
        CelMapKey::String(text) => len(text.inner().len()),
        _ => 0,
    })
}

/// The estimated size of `value`: [`VALUE_BYTES`] for every value inside it
/// (itself, each element of a list, each key and value of a map, the value
/// of an optional), plus the bytes of every string and bytes value.
///
/// Stops counting once the size is above `cap`, so a value is never walked
/// further than the budget it is charged to; the result is then some number
/// above `cap`. Walks with a stack of its own, never recursing.
pub(crate) fn data_size(value: &dyn Val, cap: u64) -> u64 {
    enum Pending<'b, 'v> {
        List(std::slice::Iter<'b, Box<dyn Val + 'v>>),
        Map(hash_map::Iter<'b, CelMapKey<'v>, Box<dyn Val + 'v>>),
    }
    let mut total = 0u64;
    let mut pending: Vec<Pending<'_, '_>> = Vec::new();
    let mut next: Option<&dyn Val> = Some(value);
    loop {
        if let Some(value) = next.take() {
            total = total.saturating_add(VALUE_BYTES);
            if let Some(text) = value.downcast_ref::<CelString>() {
                total = total.saturating_add(len(text.inner().len()));
            } else if let Some(bytes) = value.downcast_ref::<CelBytes>() {
                total = total.saturating_add(len(bytes.inner().len()));
            } else if let Some(list) = value.downcast_ref::<CelList>() {
                pending.push(Pending::List(list.inner().iter()));
            } else if let Some(map) = value.downcast_ref::<CelMap>() {
                pending.push(Pending::Map(map.inner().iter()));
            } else if let Some(optional) = value.downcast_ref::<CelOptional>() {
                next = optional.option();
            }
            if total > cap {
                return total;
            }
            continue;
        }
        match pending.last_mut() {
            None => return total,
            Some(Pending::List(items)) => match items.next() {
                Some(item) => next = Some(item.as_ref()),
                None => drop(pending.pop()),
            },
            Some(Pending::Map(entries)) => match entries.next() {
                Some((key, value)) => {
                    total = total.saturating_add(key_size(key));
                    next = Some(value.as_ref());
                }
                None => drop(pending.pop()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::cel_json::to_cel;
    use serde_json::json;

    fn size_of(json: serde_json::Value) -> u64 {
        let boxed: Box<dyn Val> = match to_cel(&json).try_into() {
            Ok(boxed) => boxed,
            Err(error) => panic!("{error:?}"),
        };
        data_size(boxed.as_ref(), u64::MAX)
    }

    #[test]
    fn sizes_count_values_and_text() {
        assert_eq!(size_of(json!(1)), VALUE_BYTES);
        assert_eq!(size_of(json!("abcd")), VALUE_BYTES + 4);
        assert_eq!(size_of(json!([1, "ab"])), 3 * VALUE_BYTES + 2);
        // The key and the value.
        assert_eq!(size_of(json!({"k": [true]})), 4 * VALUE_BYTES + 1);
    }

    #[test]
    fn counting_stops_past_the_cap() {
        let big = json!(vec![1; 10_000]);
        let boxed: Box<dyn Val> = match to_cel(&big).try_into() {
            Ok(boxed) => boxed,
            Err(error) => panic!("{error:?}"),
        };
        let capped = data_size(boxed.as_ref(), 10 * VALUE_BYTES);
        assert!(
            capped > 10 * VALUE_BYTES && capped <= 12 * VALUE_BYTES,
            "{capped}"
        );
    }

    #[test]
    fn a_budget_once_exhausted_stays_exhausted() {
        let budget = Budget::default();
        assert!(budget.charge(Exhausted::Steps, EVAL_STEPS_MAX).is_ok());
        assert_eq!(budget.exhausted(), None);
        assert!(budget.charge(Exhausted::Steps, 1).is_err());
        assert_eq!(budget.exhausted(), Some(Exhausted::Steps));
        assert!(budget.charge(Exhausted::Data, 1).is_err(), "sticky");
        assert_eq!(budget.exhausted(), Some(Exhausted::Steps), "the first one");
    }
}
