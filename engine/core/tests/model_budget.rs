//! The cost budget of an expression evaluation: expressions that would run
//! for minutes or allocate gigabytes fail with an ordinary evaluation error
//! naming the budget, the same error every time, while ordinary expressions
//! over large inputs still evaluate.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use retrace_core::model::{EVAL_DATA_MAX, EVAL_STEPS_MAX, Expr, RESULT_BYTES_MAX};
use serde_json::{Value, json};

/// `[1, 2, …, n]` written out.
fn literal_list(n: usize) -> String {
    let items: Vec<String> = (1..=n).map(|i| i.to_string()).collect();
    format!("[{}]", items.join(","))
}

/// The error of evaluating `source` in `context`, which must fail.
fn failure(source: &str, context: &Value) -> String {
    match Expr::compile(source).unwrap().evaluate(context) {
        Ok(value) => panic!(
            "`{source}` evaluated to a {} byte value",
            value.to_string().len()
        ),
        Err(error) => error.message,
    }
}

fn steps_error() -> String {
    format!("ran out of its step budget ({EVAL_STEPS_MAX} steps")
}

fn data_error() -> String {
    format!("ran out of its data budget ({EVAL_DATA_MAX} bytes")
}

fn result_error() -> String {
    format!("larger than its result budget ({RESULT_BYTES_MAX} bytes of JSON)")
}

/// A list of `n` integers as the input's `items`.
fn items(n: usize) -> Value {
    json!({"input": {"items": (0..n).collect::<Vec<usize>>()}})
}

#[test]
fn nested_comprehensions_over_literals_run_out() {
    let list = literal_list(200);
    let source = format!("{list}.map(x, {list}.map(y, {list}.map(z, x + y + z)))");
    assert!(source.len() <= retrace_core::model::EXPRESSION_LEN_MAX);
    let error = failure(&source, &json!({}));
    // The lists are built and copied as often as they are iterated over:
    // data runs out just before steps do.
    assert!(error.contains(&data_error()), "{error}");
    assert!(
        error.starts_with(&format!("evaluating `{source}`: ")),
        "{error}"
    );
}

#[test]
fn a_quadratic_over_a_large_input_runs_out() {
    let context = items(100_000);
    let error = failure("input.items.map(x, input.items.map(y, 1))", &context);
    assert!(
        error.contains(&data_error()) || error.contains(&steps_error()),
        "{error}"
    );
    let error = failure("input.items.exists(x, x in input.items && x < 0)", &context);
    assert!(error.contains(&data_error()), "{error}");
}

#[test]
fn copies_of_a_large_value_run_out_of_data() {
    // Every iteration copies the whole input into the result.
    let error = failure("input.items.map(x, input)", &items(10_000));
    assert!(error.contains(&data_error()), "{error}");
    let error = failure("input.items.filter(x, input == input)", &items(10_000));
    assert!(error.contains(&data_error()), "{error}");
}

#[test]
fn a_result_too_large_for_json_is_refused() {
    // 400 copies of 400 strings: 11 MiB of data, but 6 MiB of JSON.
    let strings: Vec<String> = (0..400).map(|i| format!("{i:040}")).collect();
    let context = json!({"input": {"l": strings}});
    let error = failure("input.l.map(x, input.l)", &context);
    assert!(error.contains(&result_error()), "{error}");
}

#[test]
fn concatenation_in_a_comprehension_runs_out_of_data() {
    let context = json!({"input": {"s": "x".repeat(100_000), "items": vec![1; 1000]}});
    let error = failure("input.items.map(x, input.s + input.s)", &context);
    assert!(error.contains(&data_error()), "{error}");
    let error = failure("input.items.map(x, input.items + input.items)", &context);
    assert!(error.contains(&data_error()), "{error}");
}

#[test]
fn doubling_a_string_runs_out_of_data() {
    let context = json!({"input": {"s": "x".repeat(1_000_000)}});
    let doublings: String = ["a", "b", "c", "d", "e", "f", "g"]
        .iter()
        .map(|v| format!(".optMap({v}, {v} + {v})"))
        .collect();
    let error = failure(&format!("optional.of(input.s){doublings}"), &context);
    assert!(error.contains(&data_error()), "{error}");
}

#[test]
fn the_same_expression_fails_the_same_way_every_time() {
    let list = literal_list(100);
    let source = format!("{list}.map(x, {list}.exists(y, {list}.map(z, x + y + z) == []))");
    let expr = Expr::compile(&source).unwrap();
    let first = expr.evaluate(&json!({})).unwrap_err().message;
    assert!(first.contains("ran out of its"), "{first}");
    assert_eq!(expr.evaluate(&json!({})).unwrap_err().message, first);
}

#[test]
fn ordinary_expressions_over_a_large_input_still_evaluate() {
    let context = items(100_000);
    let expr = Expr::compile("input.items.map(x, x * 2).filter(x, x % 3 == 0).size()").unwrap();
    assert_eq!(expr.evaluate(&context), Ok(json!(33_334)));
    let expr = Expr::compile("input.items.all(x, x >= 0) && 99999 in input.items").unwrap();
    assert_eq!(expr.evaluate(&context), Ok(json!(true)));
}

fn pattern_error() -> String {
    "Error executing function 'matches': the pattern of matches compiles to more than 1048576 \
     bytes"
        .to_owned()
}

#[test]
fn matches_over_a_large_input_fits_the_budget() {
    let words: Vec<String> = (0..100_000)
        .map(|i| {
            let letters: String = format!("{i:06}")
                .bytes()
                .map(|b| char::from(b'a' + (b - b'0')))
                .collect();
            if i % 10 == 0 {
                format!("{letters}1")
            } else {
                letters
            }
        })
        .collect();
    let context = json!({"input": {"words": words, "p": "^[a-z]+$"}});
    // The pattern compiled with the expression, or once in the evaluation.
    for source in [
        "input.words.filter(w, w.matches('^[a-z]+$')).size()",
        "input.words.filter(w, matches(w, input.p)).size()",
    ] {
        let expr = Expr::compile(source).unwrap();
        let started = std::time::Instant::now();
        assert_eq!(expr.evaluate(&context), Ok(json!(90_000)), "{source}");
        eprintln!("{source}: {:?}", started.elapsed());
    }
}

#[test]
fn patterns_too_large_to_compile_fail_on_the_size_limit() {
    for pattern in [r"\w{1000}", "((a{100}){100}){100}", r"(\w{10}){10}"] {
        let context = json!({"input": {"p": pattern, "items": [1, 2, 3]}});
        for source in [
            "'x'.matches(input.p)",
            "input.items.all(i, matches('x', input.p))",
        ] {
            let error = failure(source, &context);
            assert!(error.ends_with(&pattern_error()), "{error}");
            assert_eq!(failure(source, &context), error, "the same way twice");
        }
        // Written in the expression, it compiles (a stored workflow must
        // always load) and fails the same way when evaluated.
        let literal = format!("'x'.matches('{}')", pattern.replace('\\', "\\\\"));
        let error = failure(&literal, &context);
        assert!(error.ends_with(&pattern_error()), "{error}");
        assert_eq!(failure(&literal, &context), error, "the same way twice");
    }
    let error = failure("'x'.matches('(foo')", &json!({}));
    assert!(error.contains("'(foo' not a valid regex:"), "{error}");
    let error = failure("'x'.matches(input.p)", &json!({"input": {"p": "(foo"}}));
    assert!(
        error.ends_with(
            "'(foo' not a valid regex:\nregex parse error:\n    (foo\n    ^\nerror: unclosed group"
        ),
        "{error}"
    );
}

#[test]
fn compiling_many_patterns_or_matching_long_texts_runs_out_of_steps() {
    let context =
        json!({"input": {"items": (0..2000).collect::<Vec<u32>>(), "s": "x".repeat(1_000_000)}});
    // A pattern that differs on every call is compiled on every call.
    let error = failure("input.items.all(i, !'x'.matches(string(i)))", &context);
    assert!(error.contains(&steps_error()), "{error}");
    let error = failure(
        r"input.items.all(i, !'x'.matches('\\w{5}' + string(i)))",
        &context,
    );
    assert!(error.contains(&steps_error()), "{error}");
    // Matching a long text with a larger pattern, again and again.
    let error = failure(
        r"input.items.all(i, !input.s.matches('\\w*y\\w{5}z'))",
        &context,
    );
    assert!(error.contains(&steps_error()), "{error}");
    // Ordinary patterns still match, written either way.
    let expr =
        Expr::compile(r"input.items.all(i, 'abc'.matches('^[a-z]+$') && matches('x1', '\\d'))");
    assert_eq!(expr.unwrap().evaluate(&context), Ok(json!(true)));
}

/// The fuzz seeds `fuzz/corpus/expression/known-e3-*` (kept by hand: the seed writer replaces only `gen-*`) are expressions
/// that once ran for seconds or allocated without bound: each fails with a
/// budget error (or, for a pattern of `matches`, the size limit), the same
/// one twice.
#[test]
fn the_known_blow_ups_of_the_fuzz_corpus_fail_on_a_budget() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/expression");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("known-e3-") {
            continue;
        }
        let data = std::fs::read(&path).unwrap();
        let (source, context) = match data.iter().position(|&b| b == 0) {
            Some(at) => (
                &data[..at],
                serde_json::from_slice(&data[at + 1..]).unwrap(),
            ),
            None => (&data[..], json!({})),
        };
        let source = std::str::from_utf8(source).unwrap();
        let error = failure(source, &context);
        assert!(
            error.contains("budget (") || error.contains("compiles to more than"),
            "{name}: {}",
            &error[error.len().saturating_sub(300)..]
        );
        assert_eq!(failure(source, &context), error, "{name}");
        seen += 1;
    }
    assert!(seen >= 5, "{seen} seeds");
}
