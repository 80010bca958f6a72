//! Expressions: CEL source compiled once when a workflow is defined, and
//! evaluated against a JSON context when the engine needs a value.
//!
//! Owns how expression text is written (`${ … }` in mappings; bare or wrapped
//! in decisions and correlations), the `$.` shorthand inside expressions,
//! which names an expression may read, compiling with the `cel` crate, and
//! turning a decision's value into a branch key. It must never parse CEL
//! itself beyond telling string literals and comments from code; it must
//! never do IO or read the clock (the CEL environment has no `now`).
//!
//! Inside an expression the context roots are plain CEL variables: `input`,
//! `variables`, `output`, `error`, `execution` (each `null` when the context
//! lacks it). Writing `$.` before a root is accepted and means the same, so
//! `${ $.input.path + "/src" }` and `${ input.path + "/src" }` are one
//! expression. A `$.` inside a string literal or a comment is left alone.
//!
//! Evaluation converts the context to CEL values on every call (see
//! `cel_json`), so its cost grows with the size of the context; the compiled
//! program itself is shared. Everything else an evaluation does is bounded
//! by its budget (see `budget`, and `instrument` for where the compiled tree
//! charges it): an expression that runs out fails with an ordinary
//! evaluation error, the same one every time. The patterns of `matches`
//! written as string literals are compiled once per expression, when an
//! evaluation first needs them (see `pattern`); one that is invalid or too
//! large fails the evaluations that reach it, and never the definition, so
//! defining a workflow costs no regex compilation and a workflow stored by
//! an earlier build always loads.

use std::fmt;
use std::sync::{Arc, LazyLock};

use cel::common::ast::{EntryExpr, Expr as Node, IdedExpr};
use cel::{Context, Env};
use serde_json::Value;

use super::budget::{Budget, RESULT_BYTES_MAX};
use super::cel_json::{to_cel, to_json};
use super::dialect;
use super::hash::canonical_string;
use super::instrument::{instrument, literal_patterns};
use super::language::Language;
use super::path::Root;
use super::pattern::{Literals, literals};
use super::stack::{evaluate_on_large_stack, on_large_stack};
use super::tree::depth;

/// The longest expression accepted, in bytes.
pub const EXPRESSION_LEN_MAX: usize = 16 * 1024;

/// The deepest expression tree accepted (a literal is 1, `a + b` is 2).
pub const EXPRESSION_DEPTH_MAX: usize = 32;

/// The CEL standard library; built once, shared by every evaluation.
static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| Arc::new(Env::stdlib()));

/// Names an expression may use besides the roots: CEL's type names, and the
/// `optional` namespace.
const BUILTIN_NAMES: &[&str] = &[
    "bool",
    "bytes",
    "double",
    "dyn",
    "int",
    "list",
    "map",
    "null_type",
    "optional",
    "string",
    "type",
    "uint",
];

/// A compiled expression, with the text it was compiled from.
#[derive(Clone)]
pub struct Expr {
    source: String,
    /// The CEL tree, with the budget's charges in it (see `instrument`).
    program: Arc<IdedExpr>,
    /// Whether the tree, with the charges, is deeper than
    /// [`EXPRESSION_DEPTH_MAX`], and so is evaluated on a large stack.
    deep: bool,
    /// The patterns of `matches` written as string literals, compiled when
    /// first needed.
    patterns: Arc<Literals>,
    /// The language it was written in: which roots it reads.
    language: Language,
    /// Whether its tree calls the dialect's functions (see `dialect`), so
    /// that an evaluation must add them; most expressions, of either
    /// language, call none and pay nothing for them.
    dialect: bool,
}

impl fmt::Debug for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Expr({:?})", self.source)
    }
}

impl PartialEq for Expr {
    fn eq(&self, other: &Expr) -> bool {
        self.source == other.source && self.language == other.language
    }
}

/// Evaluating an expression failed: a missing field, a type mismatch, a
/// result JSON cannot hold. The engine adds which step it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct EvalError {
    /// What went wrong, naming the expression.
    pub message: String,
}

impl Expr {
    /// Compiles `source`, written bare (`size(input.items) > 0`) or wrapped
    /// (`${ size(input.items) > 0 }`), as language 1 reads it. The error is a
    /// problem message.
    pub fn compile(source: &str) -> Result<Expr, String> {
        Expr::compile_in(source, Language::V1)
    }

    /// Compiles `source` as `language` reads it.
    pub fn compile_in(source: &str, language: Language) -> Result<Expr, String> {
        if source.len() > EXPRESSION_LEN_MAX {
            return Err(format!(
                "the expression is longer than {EXPRESSION_LEN_MAX} bytes"
            ));
        }
        // Blank out the `${` `}` wrapper rather than remove it, so positions
        // in CEL's messages are positions in the text the user wrote.
        let text = match unwrap_braces(source) {
            Some(inner) => format!("  {inner} "),
            None => source.to_owned(),
        };
        if text.trim().is_empty() {
            return Err("the expression is empty".to_owned());
        }
        let text = blank_dollar_roots(&text, language).map_err(|at| {
            let (line, column) = line_column(&text, at);
            format!(
                "`{source}` has a `$` outside a string at line {line} column {column}; in an \
                 expression `$.` may only come before one of {}",
                Root::listed_in(language)
            )
        })?;
        let (program, deep, patterns, dialect) = compile_program(source, text, language)?;
        Ok(Expr {
            source: source.to_owned(),
            program: Arc::new(program),
            deep,
            patterns: Arc::new(patterns),
            language,
            dialect,
        })
    }

    /// The expression as written in the document.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates the expression; `context` is an object whose keys are the
    /// roots (`input`, `variables`, `output`, `error`, `execution`).
    ///
    /// The evaluation has a budget of its own (see `budget`); running out of
    /// it is an error naming the budget, whatever the expression would have
    /// made of it, and so is a result above [`RESULT_BYTES_MAX`].
    pub fn evaluate(&self, context: &Value) -> Result<Value, EvalError> {
        if self.deep {
            evaluate_on_large_stack(|| self.evaluate_here(context))
                .unwrap_or_else(|message| Err(self.failed(message)))
        } else {
            self.evaluate_here(context)
        }
    }

    /// An evaluation error of this expression.
    fn failed(&self, message: String) -> EvalError {
        EvalError {
            message: format!("evaluating `{}`: {message}", self.source),
        }
    }

    /// Evaluates the expression on this thread.
    fn evaluate_here(&self, context: &Value) -> Result<Value, EvalError> {
        let failed = |message: String| self.failed(message);
        let budget = Arc::new(Budget::new(Arc::clone(&self.patterns)));
        let mut cel_context = Context::with_env(Arc::clone(&ENV));
        budget.install(&mut cel_context, &ENV).map_err(failed)?;
        if self.dialect {
            dialect::install(&mut cel_context).map_err(failed)?;
        }
        for &root in Root::of(self.language) {
            let value = context.get(root.as_str()).map_or(cel::Value::Null, to_cel);
            cel_context.add_variable_from_value(root.as_str(), value);
        }
        let result = cel::Value::resolve(&self.program, &cel_context);
        if let Some(exhausted) = budget.exhausted() {
            return Err(failed(exhausted.to_string()));
        }
        let result = result.map_err(|error| failed(describe(&error)))?;
        to_json(&result, RESULT_BYTES_MAX).map_err(failed)
    }
}

/// An evaluation error in words that do not depend on hash order: CEL's own
/// messages print the values involved, and a map prints its entries in
/// whatever order its hash map holds them, so one failure could be recorded
/// with different texts. Values are named by their type instead.
#[allow(deprecated)]
fn describe(error: &cel::ExecutionError) -> String {
    use cel::ExecutionError as E;
    let t = |v: &cel::Value| v.type_of().to_string();
    match error {
        E::UnsupportedTargetType { target } => format!("invalid argument type: {}", t(target)),
        E::NotSupportedAsMethod { method, target } => {
            format!("method '{method}' not supported on type '{}'", t(target))
        }
        E::UnsupportedKeyType(v) => format!("unable to use a {} as a key", t(v)),
        E::ValuesNotComparable(a, b) => format!("{} can not be compared to {}", t(a), t(b)),
        E::UnsupportedUnaryOperator(op, v) => {
            format!("unsupported unary operator '{op}' on {}", t(v))
        }
        E::UnsupportedBinaryOperator(op, a, b) => {
            format!(
                "unsupported binary operator '{op}' on {} and {}",
                t(a),
                t(b)
            )
        }
        other => other.to_string(),
    }
}

/// Parses `text` (the blanked form of `source`) with CEL, checks the tree,
/// adds the budget's charges to it (see `instrument`), and compiles the
/// patterns of `matches` written as string literals.
///
/// Parsing runs on a large stack (see `stack`), and a tree deeper than
/// [`EXPRESSION_DEPTH_MAX`] is refused there, which bounds the recursion of
/// every later evaluation on the caller's stack. Also says whether the tree,
/// once it has the charges, is deeper than that, and whether it calls the
/// dialect's functions.
fn compile_program(
    source: &str,
    text: String,
    language: Language,
) -> Result<(IdedExpr, bool, Literals, bool), String> {
    let compiled = on_large_stack(|| {
        let program = ENV.parser().parse(&text).map_err(|errors| {
            let details: Vec<String> = errors
                .errors
                .iter()
                .map(|e| format!("{} at line {} column {}", e.msg, e.pos.0, e.pos.1))
                .collect();
            format!(
                "`{source}` is not a valid expression: {}",
                details.join("; ")
            )
        })?;
        if depth(&program) > EXPRESSION_DEPTH_MAX {
            // Dropping the deep tree recurses too; it happens here, on the large stack.
            return Err(format!(
                "`{source}` nests more than {EXPRESSION_DEPTH_MAX} levels deep; split it over \
                 several steps or variables"
            ));
        }
        check_names(source, &program, language)?;
        let program = instrument(program);
        // After the charges, so the dialect's calls are charged as the
        // operators they stand for (not at all: see `dialect`).
        let (program, dialect) = if language.has_dialect() {
            dialect::rewrite(program)
        } else {
            (program, false)
        };
        let deep = depth(&program) > EXPRESSION_DEPTH_MAX;
        // Compiled when an evaluation first needs them, never here: a
        // definition costs no regex compilation, and one that does not
        // compile fails the evaluations that reach it, not the definition (a
        // workflow an earlier build accepted must still load).
        let patterns = literals(literal_patterns(&program));
        Ok((program, deep, patterns, dialect))
    });
    compiled.map_err(|message| format!("`{source}`: {message}"))?
}

/// The inside of a `${ … }` string, if `text` is one as a whole.
pub fn unwrap_braces(text: &str) -> Option<&str> {
    text.strip_prefix("${")?.strip_suffix('}')
}

/// The key a decision's value selects among its branches: strings as they
/// are, anything else as compact JSON (`true`, `3`, `2.5`, `null`; objects
/// with sorted keys).
pub fn branch_key(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => canonical_string(other),
    }
}

/// Replaces each `$.` written before a root with two spaces, outside string
/// literals and comments; any other `$` there is an error, at that byte.
fn blank_dollar_roots(text: &str, language: Language) -> Result<String, usize> {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    while at < bytes.len() {
        let here = bytes[at];
        if here == b'"' || here == b'\'' {
            let end = string_literal_end(text, at);
            out.push_str(&text[at..end]);
            at = end;
        } else if text[at..].starts_with("//") {
            let end = text[at..].find('\n').map_or(text.len(), |n| at + n);
            out.push_str(&text[at..end]);
            at = end;
        } else if here == b'$' {
            let after = &text[at + 1..];
            let rest = after.strip_prefix('.').unwrap_or("");
            let len = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            if !after.starts_with('.') || Root::parse_in(&rest[..len], language).is_none() {
                return Err(at);
            }
            out.push_str("  ");
            at += 2;
        } else {
            // Copy up to the next character that needs a look.
            let next = text[at..]
                .find(['"', '\'', '/', '$'])
                .map_or(text.len(), |n| at + n.max(1));
            out.push_str(&text[at..next]);
            at = next;
        }
    }
    Ok(out)
}

/// The 1-based line and column (in characters) of byte `at` of `text`.
fn line_column(text: &str, at: usize) -> (usize, usize) {
    let before = text.get(..at).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |n| n + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// The byte just past the string literal whose opening quote is at `start`
/// (the end of `text` if it is not closed; CEL then reports it).
pub(super) fn string_literal_end(text: &str, start: usize) -> usize {
    let bytes = text.as_bytes();
    let quote = bytes[start];
    // A prefix of `r`/`R` (possibly with `b`/`B`) makes the literal raw.
    let prefix = text[..start]
        .bytes()
        .rev()
        .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
        .collect::<Vec<u8>>();
    let raw = prefix.len() <= 2 && prefix.iter().any(|b| matches!(b, b'r' | b'R'));
    let triple = bytes.get(start + 1) == Some(&quote) && bytes.get(start + 2) == Some(&quote);
    let (mut at, closing) = if triple {
        (start + 3, 3)
    } else {
        (start + 1, 1)
    };
    while at < bytes.len() {
        if bytes[at] == b'\\' && !raw {
            at += 2;
            continue;
        }
        if bytes[at] == quote && (closing == 1 || bytes[at..].starts_with(&[quote; 3])) {
            return at + closing;
        }
        at += 1;
    }
    bytes.len()
}

/// Refuses identifiers that are neither a root, a comprehension variable nor
/// a CEL built-in, so `${ HOME }` or `inputs.x` fail when defined, not when run.
fn check_names(source: &str, root: &IdedExpr, language: Language) -> Result<(), String> {
    let mut bound = Vec::new();
    let mut used = Vec::new();
    collect_names(root, &mut bound, &mut used);
    let mut unknown: Vec<&str> = used
        .into_iter()
        .filter(|name| {
            Root::parse_in(name, language).is_none()
                && !BUILTIN_NAMES.contains(name)
                && !bound.contains(name)
        })
        .collect();
    unknown.sort_unstable();
    unknown.dedup();
    match unknown.as_slice() {
        [] => Ok(()),
        names => {
            let names: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
            Err(format!(
                "`{source}` reads {}, which is not defined; an expression reads {}",
                names.join(", "),
                Root::listed_in(language)
            ))
        }
    }
}

/// Collects the identifiers used and the comprehension variables bound in `node`.
fn collect_names<'a>(node: &'a IdedExpr, bound: &mut Vec<&'a str>, used: &mut Vec<&'a str>) {
    match &node.expr {
        Node::Unspecified | Node::Literal(_) => {}
        Node::Ident(name) => used.push(name),
        Node::Select(select) => collect_names(&select.operand, bound, used),
        Node::Call(call) => {
            if let Some(target) = &call.target {
                collect_names(target, bound, used);
            }
            for arg in &call.args {
                collect_names(arg, bound, used);
            }
        }
        Node::List(list) => {
            for element in &list.elements {
                collect_names(element, bound, used);
            }
        }
        Node::Map(map) => {
            for entry in &map.entries {
                collect_entry(&entry.expr, bound, used);
            }
        }
        Node::Struct(structure) => {
            for entry in &structure.entries {
                collect_entry(&entry.expr, bound, used);
            }
        }
        Node::Comprehension(comprehension) => {
            bound.push(&comprehension.iter_var);
            if let Some(second) = &comprehension.iter_var2 {
                bound.push(second);
            }
            bound.push(&comprehension.accu_var);
            for part in [
                &comprehension.iter_range,
                &comprehension.accu_init,
                &comprehension.loop_cond,
                &comprehension.loop_step,
                &comprehension.result,
            ] {
                collect_names(part, bound, used);
            }
        }
    }
}

fn collect_entry<'a>(entry: &'a EntryExpr, bound: &mut Vec<&'a str>, used: &mut Vec<&'a str>) {
    match entry {
        EntryExpr::StructField(field) => collect_names(&field.value, bound, used),
        EntryExpr::MapEntry(entry) => {
            collect_names(&entry.key, bound, used);
            collect_names(&entry.value, bound, used);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollar_roots_are_blanked_outside_strings_only() {
        assert_eq!(
            blank_dollar_roots(r#"$.input.a + "$.input" + '$.x' + r"\$.y""#, Language::V1),
            Ok(r#"  input.a + "$.input" + '$.x' + r"\$.y""#.to_owned())
        );
        assert_eq!(
            blank_dollar_roots(r#""a \" $.b" + $.variables.c"#, Language::V1),
            Ok(r#""a \" $.b" +   variables.c"#.to_owned())
        );
        assert_eq!(
            blank_dollar_roots("'''it's $.x''' + $.output // $.nothing", Language::V1),
            Ok("'''it's $.x''' +   output // $.nothing".to_owned())
        );
        assert_eq!(blank_dollar_roots("$.workflowName", Language::V1), Err(0));
        assert_eq!(blank_dollar_roots("'é' + $ b", Language::V1), Err(7));
        assert_eq!(line_column("ab\ncd$", 5), (2, 3));
    }

    #[test]
    fn names_bound_by_macros_are_allowed() {
        assert!(Expr::compile("input.items.all(x, x > 0)").is_ok());
        assert!(Expr::compile("input.items.map(i, i * 2)").is_ok());
        assert!(Expr::compile("type(input) == map").is_ok());
    }

    /// Trees whose charges keep them within [`EXPRESSION_DEPTH_MAX`] are
    /// evaluated on the caller's thread: that must be safe on the smallest
    /// stack the engine runs on, whatever their shape.
    #[test]
    fn shallow_instrumented_trees_evaluate_on_a_small_stack() {
        let nest =
            |open: &str, close: &str, n: usize| format!("{}x{}", open.repeat(n), close.repeat(n));
        let mut here = Vec::new();
        let mut deep = 0;
        for n in 1..=31 {
            for source in [
                nest("[", "]", n),
                nest("{'a': ", "}", n),
                nest("string(", ")", n),
                nest("'a' + (", ")", n),
                nest("[x].map(x, ", ")", n),
                nest("[x].exists(x, x == ", ")", n),
                nest("optional.of(", ")", n),
                nest("x.matches(", ")", n),
            ] {
                let source = source.replace('x', "input");
                let Ok(expr) = Expr::compile(&source) else {
                    continue;
                };
                if expr.deep {
                    deep += 1;
                } else {
                    here.push(expr);
                }
            }
        }
        assert!(
            deep > 0 && here.len() > 50,
            "{deep} deep, {} here",
            here.len()
        );
        // The stack of a tokio worker thread.
        let small = std::thread::Builder::new().stack_size(2 * 1024 * 1024);
        let evaluated = small
            .spawn(move || {
                for expr in &here {
                    let _ = expr.evaluate(&serde_json::json!({"input": "a"}));
                }
                here.len()
            })
            .map(|worker| worker.join());
        assert!(matches!(evaluated, Ok(Ok(n)) if n > 50));
    }

    #[test]
    fn the_shared_program_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Expr>();
    }
}
