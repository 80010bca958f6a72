//! The built-in `http` capability's input: what a `task` step with
//! `"capability": "http"` is given, read into an [`HttpRequest`].
//!
//! Owns the shape (`method`, `url`, `headers`, `query`, `body`,
//! `timeoutMs`), every rule on it and the messages that say what is wrong.
//! The same checks run twice: when a workflow is defined, on the parts of
//! the step's input that are written literally (`check_http_input`: a bad
//! literal is a definition problem), and when the runtime performs the
//! task, on the evaluated input ([`HttpRequest::parse`]: a bad one fails the
//! task with `http_invalid_request`).
//!
//! It must never make a request, resolve a name or learn a secret's value:
//! the url and the texts keep their secret references (`secret_ref`), which
//! only the runtime substitutes, when it builds the request.

use serde_json::Value;

use super::fields::{kind, must_be, suggest};
use super::mapping::is_literal_value;
use super::problem::{Problem, Problems, field, index};
use super::secret_ref::{SecretRef, secret_refs};

/// The capability the engine performs itself, as an HTTP request.
pub const HTTP_CAPABILITY: &str = "http";

/// The methods it makes.
pub const HTTP_METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// The longest `timeoutMs`: a day (the task's own start-to-close timeout
/// bounds it too).
pub const HTTP_TIMEOUT_MS_MAX: u64 = 86_400_000;

/// The longest url, in bytes.
pub const HTTP_URL_LEN_MAX: usize = 8 * 1024;

/// Headers the engine writes itself (the host, the body's framing, the
/// connection): an input may not give them.
pub const HTTP_MANAGED_HEADERS: [&str; 9] = [
    "connection",
    "content-length",
    "host",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The input's fields.
const FIELDS: [&str; 6] = ["method", "url", "headers", "query", "body", "timeoutMs"];

/// A request as the input describes it, secret references unsubstituted.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpRequest {
    /// Upper case, one of [`HTTP_METHODS`].
    pub method: String,
    /// An absolute `http` or `https` URL, as written.
    pub url: String,
    /// Name and value of each header, as written.
    pub headers: Vec<(String, String)>,
    /// Each query parameter, in order (an array's items repeat the name);
    /// numbers and booleans as their JSON text.
    pub query: Vec<(String, String)>,
    pub body: Option<HttpBody>,
    pub timeout_ms: Option<u64>,
}

/// A request's body.
#[derive(Debug, Clone, PartialEq)]
pub enum HttpBody {
    /// A JSON string: sent as text (`text/plain; charset=utf-8` unless a
    /// `Content-Type` header says otherwise); may hold secret references.
    Text(String),
    /// Any other JSON but `null`: sent as JSON (`application/json` unless a
    /// `Content-Type` header says otherwise).
    Json(Value),
}

impl HttpRequest {
    /// Reads an evaluated input; every problem, each at its path under
    /// `input` (`input.headers["X-Key"]`).
    pub fn parse(input: &Value) -> Result<HttpRequest, Vec<Problem>> {
        let mut problems = Vec::new();
        let request = parse_at(input, "input", &mut problems);
        match request {
            Some(request) if problems.is_empty() => Ok(request),
            _ => Err(problems),
        }
    }
}

/// Reads `input` (at problem path `path`), pushing each problem.
fn parse_at(input: &Value, path: &str, problems: &mut Vec<Problem>) -> Option<HttpRequest> {
    let Value::Object(fields) = input else {
        problems.push(Problem::new(path, not_an_object(input)));
        return None;
    };
    unknown_fields(fields.keys(), path, problems);
    required_fields(|key| fields.contains_key(key), path, problems);
    let at = |key: &str| (fields.get(key), field(path, key));
    let method = match at("method") {
        (Some(v), p) => checked(method(v), &p, problems),
        (None, _) => None,
    };
    let url = match at("url") {
        (Some(v), p) => checked(url(v), &p, problems),
        (None, _) => None,
    };
    let headers = match at("headers") {
        (Some(v), p) => headers(v, &p, problems),
        (None, _) => Vec::new(),
    };
    let query = match at("query") {
        (Some(v), p) => query(v, &p, problems),
        (None, _) => Vec::new(),
    };
    let body = match at("body") {
        (Some(v), p) => checked(body(v), &p, problems).flatten(),
        (None, _) => None,
    };
    let timeout_ms = match at("timeoutMs") {
        (Some(v), p) => checked(timeout_ms(v), &p, problems),
        (None, _) => None,
    };
    Some(HttpRequest {
        method: method?,
        url: url?,
        headers,
        query,
        body,
        timeout_ms,
    })
}

/// Checks at definition time what is written literally of an `http`
/// task's input (the step's `input` as written, at problem path `path`);
/// what a path or an expression computes is checked when the task runs.
/// Read by the rules of a mapping (`is_literal_value`), so a part that does
/// not compile is the mapping's problem and everything else is still
/// checked here.
pub(crate) fn check_http_input(input: &Value, path: &str, problems: &mut Problems) {
    let mut found = Vec::new();
    if is_literal_value(input) {
        parse_at(input, path, &mut found);
    } else if let Value::Object(fields) = input {
        unknown_fields(fields.keys(), path, &mut found);
        required_fields(|key| fields.contains_key(key), path, &mut found);
        for (key, value) in fields {
            check_field(key, value, &field(path, key), &mut found);
        }
    } else if let Value::Array(_) = input {
        found.push(Problem::new(path, not_an_object(input)));
    }
    for problem in found {
        problems.push(problem.path, problem.message);
    }
}

/// Checks one field of an input that is partly computed, as far as it is
/// literal.
fn check_field(key: &str, value: &Value, path: &str, problems: &mut Vec<Problem>) {
    if is_literal_value(value) {
        let result = match key {
            "method" => method(value).map(drop),
            "url" => url(value).map(drop),
            "body" => body(value).map(drop),
            "timeoutMs" => timeout_ms(value).map(drop),
            "headers" => {
                headers(value, path, problems);
                Ok(())
            }
            "query" => {
                query(value, path, problems);
                Ok(())
            }
            _ => Ok(()),
        };
        checked(result, path, problems);
        return;
    }
    match (key, value) {
        ("headers", Value::Object(entries)) => {
            let mut seen = Vec::new();
            for (name, value) in entries {
                let known = is_literal_value(value).then_some(value);
                header(name, known, &field(path, name), &mut seen, problems);
            }
        }
        ("query", Value::Object(entries)) => {
            for (name, value) in entries.iter().filter(|(_, v)| is_literal_value(v)) {
                query_value(value, &field(path, name), &mut Vec::new(), problems);
            }
        }
        ("method" | "url" | "timeoutMs" | "headers" | "query", Value::Array(_)) => {
            let expected = match key {
                "method" | "url" => "a string",
                "timeoutMs" => "a whole number of milliseconds",
                _ => "an object",
            };
            problems.push(Problem::new(path, must_be(expected, value)));
        }
        // Known only when the step starts.
        _ => {}
    }
}

fn checked<T>(result: Result<T, String>, path: &str, problems: &mut Vec<Problem>) -> Option<T> {
    result
        .map_err(|message| problems.push(Problem::new(path, message)))
        .ok()
}

fn not_an_object(found: &Value) -> String {
    format!(
        "the http capability's input must be an object with `method` and `url` (and optionally \
         `headers`, `query`, `body`, `timeoutMs`), not {}",
        kind(found)
    )
}

fn unknown_fields<'k>(
    keys: impl Iterator<Item = &'k String>,
    path: &str,
    problems: &mut Vec<Problem>,
) {
    for key in keys.filter(|key| !FIELDS.contains(&key.as_str())) {
        let message = match suggest(key, &FIELDS) {
            Some(near) => format!("unknown field of the http capability; did you mean `{near}`?"),
            None => format!(
                "unknown field of the http capability; expected one of {}",
                FIELDS.map(|f| format!("`{f}`")).join(", ")
            ),
        };
        problems.push(Problem::new(field(path, key), message));
    }
}

fn required_fields(has: impl Fn(&str) -> bool, path: &str, problems: &mut Vec<Problem>) {
    for key in ["method", "url"].into_iter().filter(|key| !has(key)) {
        problems.push(Problem::new(
            field(path, key),
            "is required by the http capability",
        ));
    }
}

fn method(value: &Value) -> Result<String, String> {
    let Value::String(text) = value else {
        return Err(must_be("a string such as \"GET\"", value));
    };
    let upper = text.to_ascii_uppercase();
    if HTTP_METHODS.contains(&upper.as_str()) {
        Ok(upper)
    } else {
        Err(format!(
            "`{text}` is not a method the http capability makes; expected one of {}",
            HTTP_METHODS.join(", ")
        ))
    }
}

fn url(value: &Value) -> Result<String, String> {
    let Value::String(text) = value else {
        return Err(must_be("an absolute http:// or https:// URL", value));
    };
    if text.len() > HTTP_URL_LEN_MAX {
        return Err(format!("is longer than {HTTP_URL_LEN_MAX} bytes"));
    }
    // Each reference stands for a value only the runtime knows: checked
    // with a plain word in its place.
    let refs = secret_refs(text).map_err(|e| e.to_string())?;
    let probe = replace_refs(text, &refs, "secret");
    let parsed =
        url::Url::parse(&probe).map_err(|e| format!("`{text}` is not an absolute URL: {e}"))?;
    let scheme = parsed.scheme();
    if scheme != "http" && scheme != "https" {
        return Err(format!(
            "`{text}` must be an http:// or https:// URL, not a `{scheme}:` one"
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{text}` names no host"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(format!(
            "`{text}` holds credentials; send them in a header instead (an `Authorization` \
             header with a secret reference: `Bearer ${{ secret('NAME') }}`)"
        ));
    }
    Ok(text.clone())
}

fn replace_refs(text: &str, refs: &[SecretRef<'_>], with: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut from = 0;
    for r in refs {
        out.push_str(text.get(from..r.range.start).unwrap_or_default());
        out.push_str(with);
        from = r.range.end;
    }
    out.push_str(text.get(from..).unwrap_or_default());
    out
}

fn headers(value: &Value, path: &str, problems: &mut Vec<Problem>) -> Vec<(String, String)> {
    let Value::Object(entries) = value else {
        problems.push(Problem::new(
            path,
            must_be("an object of header names to strings", value),
        ));
        return Vec::new();
    };
    let mut seen = Vec::new();
    entries
        .iter()
        .filter_map(|(name, value)| {
            let value = header(name, Some(value), &field(path, name), &mut seen, problems)?;
            Some((name.clone(), value))
        })
        .collect()
}

/// One header: its name always, its value when it is known.
fn header(
    name: &str,
    value: Option<&Value>,
    path: &str,
    seen: &mut Vec<String>,
    problems: &mut Vec<Problem>,
) -> Option<String> {
    let lower = name.to_ascii_lowercase();
    let is_token = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !is_token {
        problems.push(Problem::new(
            path,
            format!(
                "`{name}` is not a header name (ASCII letters, digits and \
                 !#$%&'*+-.^_`|~ only)"
            ),
        ));
    } else if HTTP_MANAGED_HEADERS.contains(&lower.as_str()) {
        problems.push(Problem::new(
            path,
            format!("the engine writes the `{name}` header itself; leave it out"),
        ));
    } else if let Some(first) = seen.iter().find(|s| s.to_ascii_lowercase() == lower) {
        problems.push(Problem::new(
            path,
            format!("header `{name}` is given twice (as `{first}` too; names ignore case)"),
        ));
    }
    seen.push(name.to_owned());
    let text = match value? {
        Value::String(text) => text,
        other => {
            problems.push(Problem::new(path, must_be("a string", other)));
            return None;
        }
    };
    if let Some(c) = text.chars().find(|c| c.is_control() && *c != '\t') {
        problems.push(Problem::new(
            path,
            format!(
                "a header value may not hold a control character (here U+{:04X})",
                u32::from(c)
            ),
        ));
        return None;
    }
    checked(secret_refs(text).map_err(|e| e.to_string()), path, problems)?;
    Some(text.clone())
}

fn query(value: &Value, path: &str, problems: &mut Vec<Problem>) -> Vec<(String, String)> {
    let Value::Object(entries) = value else {
        problems.push(Problem::new(
            path,
            must_be("an object of parameter names to values", value),
        ));
        return Vec::new();
    };
    let mut out = Vec::new();
    for (name, value) in entries {
        let mut values = Vec::new();
        query_value(value, &field(path, name), &mut values, problems);
        out.extend(values.into_iter().map(|v| (name.clone(), v)));
    }
    out
}

/// One parameter's value (an array's items repeat it), each rendered.
fn query_value(value: &Value, path: &str, out: &mut Vec<String>, problems: &mut Vec<Problem>) {
    match value {
        Value::Array(items) => {
            for (at, item) in items.iter().enumerate() {
                match scalar(item) {
                    Ok(text) => out.push(text),
                    Err(message) => problems.push(Problem::new(index(path, at), message)),
                }
            }
        }
        other => match scalar(other) {
            Ok(text) => out.push(text),
            Err(_) => problems.push(Problem::new(
                path,
                must_be("a string, a number, a boolean or an array of them", other),
            )),
        },
    }
}

fn scalar(value: &Value) -> Result<String, String> {
    match value {
        Value::String(text) => {
            secret_refs(text).map_err(|e| e.to_string())?;
            Ok(text.clone())
        }
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(must_be("a string, a number or a boolean", other)),
    }
}

fn body(value: &Value) -> Result<Option<HttpBody>, String> {
    match value {
        Value::Null => Ok(None),
        Value::String(text) => {
            secret_refs(text).map_err(|e| e.to_string())?;
            Ok(Some(HttpBody::Text(text.clone())))
        }
        other => Ok(Some(HttpBody::Json(other.clone()))),
    }
}

fn timeout_ms(value: &Value) -> Result<u64, String> {
    let whole = match value {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= 1e15)
                .map(|f| f as u64)
        }),
        _ => None,
    };
    match whole {
        Some(ms) if (1..=HTTP_TIMEOUT_MS_MAX).contains(&ms) => Ok(ms),
        _ => Err(format!(
            "must be a whole number of milliseconds from 1 to {HTTP_TIMEOUT_MS_MAX}, not {}",
            kind(value)
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    fn problems(input: Value) -> Vec<String> {
        HttpRequest::parse(&input)
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn a_full_input_reads_into_a_request() {
        let request = HttpRequest::parse(&json!({
            "method": "post",
            "url": "https://api.example.com/v1/${ secret('PATH') }",
            "headers": {"Authorization": "Bearer ${ secret('TOKEN') }", "X-N": "1"},
            "query": {"q": "a b", "n": 2, "all": [true, "x"]},
            "body": {"k": [1]},
            "timeoutMs": 5000.0
        }))
        .unwrap();
        assert_eq!(request.method, "POST");
        assert_eq!(
            request.url,
            "https://api.example.com/v1/${ secret('PATH') }"
        );
        assert_eq!(
            request.headers,
            [
                (
                    "Authorization".to_owned(),
                    "Bearer ${ secret('TOKEN') }".to_owned()
                ),
                ("X-N".to_owned(), "1".to_owned())
            ]
        );
        assert_eq!(
            request.query,
            [
                ("all".to_owned(), "true".to_owned()),
                ("all".to_owned(), "x".to_owned()),
                ("n".to_owned(), "2".to_owned()),
                ("q".to_owned(), "a b".to_owned())
            ]
        );
        assert_eq!(request.body, Some(HttpBody::Json(json!({"k": [1]}))));
        assert_eq!(request.timeout_ms, Some(5000));
        let text = HttpRequest::parse(&json!({"method": "PUT", "url": "http://h/", "body": "hi"}));
        assert_eq!(text.unwrap().body, Some(HttpBody::Text("hi".into())));
    }

    #[test]
    fn every_problem_is_named_at_its_path() {
        assert_eq!(
            problems(json!("GET http://x")),
            [
                "input: the http capability's input must be an object with `method` and `url` \
              (and optionally `headers`, `query`, `body`, `timeoutMs`), not the string \
              \"GET http://x\""
            ]
        );
        assert_eq!(
            problems(json!({"methd": "GET"})),
            [
                "input.methd: unknown field of the http capability; did you mean `method`?",
                "input.method: is required by the http capability",
                "input.url: is required by the http capability",
            ]
        );
        let found = problems(json!({
            "method": "FETCH",
            "url": "ftp://files.example.com/x",
            "headers": {"Content-Length": "3", "bad name": "v", "X-A": 1, "X-B": "a\nb",
                        "X-C": "${ secret(C) }"},
            "query": {"o": {"a": 1}, "l": [null]},
            "timeoutMs": 0
        }));
        assert_eq!(
            found,
            [
                "input.method: `FETCH` is not a method the http capability makes; expected one \
                 of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS",
                "input.url: `ftp://files.example.com/x` must be an http:// or https:// URL, not \
                 a `ftp:` one",
                "input.headers.Content-Length: the engine writes the `Content-Length` header \
                 itself; leave it out",
                "input.headers.X-A: must be a string, not the number 1",
                "input.headers.X-B: a header value may not hold a control character (here \
                 U+000A)",
                "input.headers.X-C: `${ secret(` at byte 0 does not complete a secret \
                 reference; write `${ secret('NAME') }`",
                "input.headers[\"bad name\"]: `bad name` is not a header name (ASCII letters, \
                 digits and !#$%&'*+-.^_`|~ only)",
                "input.query.l[0]: must be a string, a number or a boolean, not null",
                "input.query.o: must be a string, a number, a boolean or an array of them, not \
                 an object",
                "input.timeoutMs: must be a whole number of milliseconds from 1 to 86400000, \
                 not the number 0",
            ]
        );
        for (url, says) in [
            (
                "example.com/x",
                "is not an absolute URL: relative URL without a base",
            ),
            ("https://user:pw@example.com/", "holds credentials"),
            ("http://exa mple.com/", "is not an absolute URL"),
        ] {
            let found = problems(json!({"method": "GET", "url": url}));
            assert!(found[0].contains(says), "{url}: {found:?}");
        }
        let found = problems(json!({"method": "GET", "url": "https://h/",
                                    "headers": {"x-a": "1", "X-A": "2"}}));
        assert!(found[0].contains("is given twice"), "{found:?}");
    }
}
