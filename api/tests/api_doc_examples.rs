//! Runs every `curl` example of `docs/api.md`, in the page's order, against
//! a real `retrace serve` (ephemeral port, temporary data folder), through
//! `sh` and the real `curl`, and checks each answer against what the page
//! claims. The examples are one session: later ones use ids earlier answers
//! returned.
//!
//! What it reads in the page (the conventions `docs/api.md` follows):
//!
//! - A ` ```sh ` block holding a line that starts with `curl ` or a capture
//!   (below) is an example block; every other `sh` block must not mention
//!   `curl` (so no example is skipped silently). In an example block each
//!   line is part of a `curl` command (continued by `\` or an open quote), a
//!   comment, a capture, or blank — anything else fails the test.
//! - Each command is followed by its status: a comment `# 201 …` on the next
//!   line or at the end of its last line. What follows the status, when it
//!   starts with JSON (continued on further comment lines), is the answer as
//!   shown: `…` elides (a string containing `…` is not compared, nor are
//!   ids, times, hashes, durations and positions); every field shown must be
//!   in the answer with that value, and an empty array shown means empty.
//!   `# 200, as below` says the answer is the ` ```json ` block (or, for a
//!   stream, the ` ```text ` block of SSE events) that comes next.
//! - `NAME=value   # its "path"` sets the shell variable `NAME` for the
//!   following examples to the field at `path` (`id`, `tasks[0].id`) of the
//!   last answer; `value` is only what it looks like.
//! - A block whose info string has `file=<name>` (` ```yaml file=greet.yaml `)
//!   is written to the examples' working folder first (`--data-binary @…`).
//! - `RETRACE` is the server's URL. A stream (`curl -N`) is read up to the
//!   events shown, then its `curl` is stopped; a stream shown without events
//!   must end by itself.
//!
//! Requires `sh` and `curl`; without `curl` the test fails (it must never
//! pass without running the examples).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;

use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::process::Command;

mod cli_support;

use cli_support::{PATIENCE, Server, repo};

/// One `curl` of the page and what the page says it answers.
#[derive(Debug)]
struct Example {
    /// 1-based line of the page where the command starts.
    line: usize,
    command: String,
    status: Option<u16>,
    /// The answer shown after the status, or in the block below.
    answer: Option<Value>,
    /// Its answer is the next block.
    as_below: bool,
    /// SSE events shown for a stream: (event type, data).
    events: Vec<(String, Value)>,
}

impl Example {
    fn is_stream(&self) -> bool {
        self.command.split_whitespace().any(|word| word == "-N")
    }
}

#[derive(Debug)]
enum Step {
    Run(Example),
    /// `NAME=…   # its "path"`.
    Capture {
        line: usize,
        name: String,
        path: String,
    },
}

#[derive(Debug, Default)]
struct Page {
    steps: Vec<Step>,
    /// Files the examples read: (name, content).
    files: Vec<(String, String)>,
    /// Lines starting with `curl ` anywhere in `sh` blocks.
    curl_lines: usize,
}

/// A fenced block of the page.
struct Block {
    info: String,
    /// 1-based line of its first content line.
    first_line: usize,
    lines: Vec<String>,
}

fn blocks(text: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<Block> = None;
    for (i, line) in text.lines().enumerate() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(info)) => {
                open = Some(Block {
                    info: info.trim().to_owned(),
                    first_line: i + 2,
                    lines: Vec::new(),
                })
            }
            (Some(_), Some(rest)) if rest.trim().is_empty() => blocks.push(open.take().unwrap()),
            (Some(block), _) => block.lines.push(line.to_owned()),
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "docs/api.md has an unclosed code block");
    blocks
}

/// `NAME=value   # its "path"`, if the line is one.
fn capture(line: &str) -> Option<(String, String)> {
    let (assignment, comment) = line.split_once('#')?;
    let (name, _) = assignment.trim().split_once('=')?;
    let valid = name.starts_with(|c: char| c.is_ascii_uppercase())
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    let path = comment
        .trim()
        .strip_prefix("its \"")?
        .strip_suffix('"')?
        .to_owned();
    valid.then(|| (name.to_owned(), path))
}

/// Whether `text` (a shell command so far) leaves a quote open or ends
/// with a line continuation, and where a trailing `# comment` starts.
fn scan(text: &str) -> (bool, Option<usize>) {
    let mut single = false;
    let mut double = false;
    let mut escaped = false;
    let mut previous = ' ';
    for (i, c) in text.char_indices() {
        if escaped {
            escaped = false;
        } else if single {
            single = c != '\'';
        } else if c == '\\' {
            escaped = true;
        } else if double {
            double = c != '"';
        } else if c == '\'' {
            single = true;
        } else if c == '"' {
            double = true;
        } else if c == '#' && previous.is_whitespace() {
            return (false, Some(i));
        }
        previous = c;
    }
    (single || double || escaped, None)
}

/// The status and the answer written in a status comment's text (`201
/// {"id":…}`, `200, as below`).
fn status_comment(text: &str) -> Option<(u16, String)> {
    let text = text.trim();
    let digits: String = text.chars().take_while(char::is_ascii_digit).collect();
    let rest = &text[digits.len()..];
    let boundary = rest.is_empty() || rest.starts_with([' ', ',', ':', ';']);
    (digits.len() == 3 && boundary).then(|| (digits.parse().unwrap(), rest.to_owned()))
}

/// Drops the `…` that stand for left-out fields or elements (outside
/// strings) so the shown answer parses as JSON.
fn elide(text: &str) -> String {
    let mut out = String::new();
    let mut in_string = false;
    let mut escaped = false;
    let mut skip_comma = false;
    for c in text.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        if c == '…' {
            let kept = out.trim_end().len();
            out.truncate(kept);
            if out.ends_with(',') {
                out.pop();
            } else {
                skip_comma = true;
            }
            continue;
        }
        if skip_comma && !c.is_whitespace() {
            skip_comma = false;
            if c == ',' {
                continue;
            }
        }
        if c == '"' {
            in_string = true;
        }
        out.push(c);
    }
    out
}

/// The first JSON value of `text` (after eliding), if it starts with one.
fn shown_json(text: &str, line: usize) -> Option<Value> {
    let text = text.trim_start_matches([',', ':', ';', ' ']);
    if !text.starts_with(['{', '[']) {
        return None;
    }
    let elided = elide(text);
    let value = serde_json::Deserializer::from_str(&elided)
        .into_iter::<Value>()
        .next()
        .unwrap_or_else(|| panic!("docs/api.md:{line}: no answer in {text}"))
        .unwrap_or_else(|e| {
            panic!("docs/api.md:{line}: the answer shown is not JSON ({e}): {elided}")
        });
    Some(value)
}

/// SSE events as `(event, data)`; comments and ids are left out.
fn sse_events(text: &str, line: usize) -> Vec<(String, Value)> {
    let mut events = Vec::new();
    for frame in text.split("\n\n") {
        let mut event = None;
        let mut data = None;
        for field in frame.lines() {
            if let Some(value) = field.strip_prefix("event:") {
                event = Some(value.trim().to_owned());
            } else if let Some(value) = field.strip_prefix("data:") {
                data = Some(shown_json(value.trim(), line).unwrap_or(Value::Null));
            }
        }
        if let Some(data) = data {
            events.push((event.unwrap_or_else(|| "message".to_owned()), data));
        }
    }
    events
}

fn parse(text: &str) -> Page {
    let mut page = Page::default();
    // Set when the last example's answer is "as below" and still missing.
    let mut awaiting_block = false;
    for block in blocks(text) {
        if let Some(name) = block
            .info
            .split_whitespace()
            .find_map(|word| word.strip_prefix("file="))
        {
            page.files
                .push((name.to_owned(), block.lines.join("\n") + "\n"));
        }
        let is_sh = block.info.split_whitespace().next() == Some("sh");
        if is_sh {
            page.curl_lines += block
                .lines
                .iter()
                .filter(|l| l.starts_with("curl "))
                .count();
        }
        if awaiting_block && !is_sh {
            let Some(Step::Run(example)) = page.steps.last_mut() else {
                unreachable!()
            };
            let body = block.lines.join("\n");
            match block.info.as_str() {
                "json" => example.answer = shown_json(&body, block.first_line),
                "text" if example.is_stream() => {
                    example.events = sse_events(&body, block.first_line);
                }
                other => panic!(
                    "docs/api.md:{}: `as below` is followed by a `{other}` block",
                    block.first_line
                ),
            }
            awaiting_block = false;
            continue;
        }
        if let Some(Step::Run(example)) = page.steps.last()
            && awaiting_block
        {
            panic!(
                "docs/api.md:{}: `as below`, but no answer block follows",
                example.line
            );
        }
        let is_example = is_sh
            && block
                .lines
                .iter()
                .any(|l| l.starts_with("curl ") || capture(l).is_some());
        if !is_example {
            assert!(
                !block.lines.iter().any(|l| l.contains("curl ")),
                "docs/api.md:{}: a block with `curl` that is not a `sh` example block",
                block.first_line
            );
            continue;
        }
        let steps_before = page.steps.len();
        let mut command: Option<(usize, String)> = None;
        // The example whose status comment is being continued.
        let mut answer_text: Option<String> = None;
        let finish = |page: &mut Page, answer_text: &mut Option<String>| {
            if let (Some(text), Some(Step::Run(example))) =
                (answer_text.take(), page.steps.last_mut())
            {
                example.as_below = text.contains("as below");
                example.answer = shown_json(&text, example.line);
            }
        };
        for (i, line) in block.lines.iter().enumerate() {
            let number = block.first_line + i;
            if let Some((start, mut text)) = command.take() {
                text.push('\n');
                text.push_str(line);
                let (open, comment) = scan(&text);
                if open {
                    command = Some((start, text));
                } else {
                    push_command(&mut page, start, &text, comment, &mut answer_text);
                }
                continue;
            }
            let trimmed = line.trim();
            if trimmed.is_empty() {
                continue;
            }
            if let Some(comment) = trimmed.strip_prefix('#') {
                let Some(text) = &mut answer_text else {
                    // A comment about what follows, or a status for a
                    // command that has none yet.
                    if let (Some((status, rest)), Some(Step::Run(example))) =
                        (status_comment(comment), page.steps.last_mut())
                        && example.status.is_none()
                    {
                        example.status = Some(status);
                        answer_text = Some(rest);
                    }
                    continue;
                };
                text.push(' ');
                text.push_str(comment.trim());
                continue;
            }
            finish(&mut page, &mut answer_text);
            if let Some((name, path)) = capture(line) {
                page.steps.push(Step::Capture {
                    line: number,
                    name,
                    path,
                });
            } else if line.starts_with("curl ") {
                let (open, comment) = scan(line);
                if open {
                    command = Some((number, line.clone()));
                } else {
                    push_command(&mut page, number, line, comment, &mut answer_text);
                }
            } else {
                panic!("docs/api.md:{number}: not a curl command, a comment or a capture: {line}");
            }
        }
        assert!(
            command.is_none(),
            "docs/api.md:{}: a command is not closed",
            block.first_line
        );
        finish(&mut page, &mut answer_text);
        let added = &page.steps[steps_before..];
        for (i, step) in added.iter().enumerate() {
            if let Step::Run(example) = step {
                assert!(
                    !example.as_below || i + 1 == added.len(),
                    "docs/api.md:{}: `as below` on a command that is not its block's last",
                    example.line
                );
            }
        }
        if let Some(Step::Run(example)) = page.steps.last() {
            awaiting_block = example.as_below;
        }
    }
    assert!(
        !awaiting_block,
        "docs/api.md: the last example says `as below`, but no block follows"
    );
    page
}

/// Adds a command; a `# status` at its end starts its answer text.
fn push_command(
    page: &mut Page,
    line: usize,
    text: &str,
    comment: Option<usize>,
    answer_text: &mut Option<String>,
) {
    let (command, status) = match comment {
        Some(at) => (&text[..at], status_comment(&text[at + 1..])),
        None => (text, None),
    };
    *answer_text = status.as_ref().map(|(_, rest)| rest.clone());
    page.steps.push(Step::Run(Example {
        line,
        command: command.trim_end().to_owned(),
        status: status.map(|(code, _)| code),
        answer: None,
        as_below: false,
        events: Vec::new(),
    }));
}

/// What a `curl --include` printed: the status, and the body.
struct Answer {
    status: u16,
    body: String,
}

fn split_answer(output: &str, example: &Example, stderr: &str) -> Answer {
    let mut rest = output;
    loop {
        let Some(status_line) = rest.lines().next().filter(|l| l.starts_with("HTTP/")) else {
            panic!(
                "docs/api.md:{}: no HTTP answer from\n{}\nstdout: {output}\nstderr: {stderr}",
                example.line, example.command
            );
        };
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap();
        let end = rest.find("\r\n\r\n").map(|i| i + 4).unwrap_or(rest.len());
        rest = &rest[end..];
        if status >= 200 {
            return Answer {
                status,
                body: rest.to_owned(),
            };
        }
    }
}

/// Runs one example through `sh`; `curl` is wrapped to print the status
/// line and headers first and to ignore any proxy.
async fn run(example: &Example, folder: &Path, variables: &BTreeMap<String, String>) -> Answer {
    let script = format!(
        "curl() {{ command curl --include --show-error --noproxy '*' \"$@\"; }}\n{}\n",
        example.command
    );
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(script)
        .current_dir(folder)
        .envs(variables)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = command.spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let stream = example.is_stream();
    // A stream shown without events is read to its end.
    let wanted = if example.events.is_empty() {
        usize::MAX
    } else {
        example.events.len()
    };
    let mut output = Vec::new();
    tokio::time::timeout(PATIENCE, async {
        let mut buffer = [0u8; 8192];
        loop {
            let n = stdout.read(&mut buffer).await.unwrap();
            if n == 0 {
                break;
            }
            output.extend_from_slice(&buffer[..n]);
            if stream && sse_frames(&output) >= wanted {
                break;
            }
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "docs/api.md:{}: not done within {PATIENCE:?} (a stream shown without \
             events must end by itself):\n{}\nso far: {}",
            example.line,
            example.command,
            String::from_utf8_lossy(&output)
        )
    });
    if stream
        && wanted != usize::MAX
        && let Some(pid) = child.id()
    {
        // The shell and its curl are a process group of their own.
        let _ = std::process::Command::new("kill")
            .args(["-TERM", "--", &format!("-{pid}")])
            .status();
    }
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("the example's shell ends")
        .unwrap();
    let mut errors = String::new();
    let _ = stderr.read_to_string(&mut errors).await;
    let output = String::from_utf8_lossy(&output).into_owned();
    if !stream || wanted == usize::MAX {
        assert!(
            status.success(),
            "docs/api.md:{}: the command failed ({status}):\n{}\n{errors}",
            example.line,
            example.command
        );
    }
    split_answer(&output, example, &errors)
}

/// How many complete SSE frames with data the output holds.
fn sse_frames(output: &[u8]) -> usize {
    let text = String::from_utf8_lossy(output);
    let Some((_, body)) = text.split_once("\r\n\r\n") else {
        return 0;
    };
    body.split("\n\n")
        .collect::<Vec<_>>()
        .split_last()
        .map_or(0, |(_, complete)| {
            complete.iter().filter(|f| f.contains("data:")).count()
        })
}

/// Keys whose values change from run to run.
fn volatile(key: &str) -> bool {
    matches!(
        key,
        "hash" | "duration" | "position" | "averageDuration" | "avgTaskLatency" | "meanMs"
    ) || key.ends_with("AtMs")
        || (key.starts_with('p') && key.ends_with("Ms"))
}

/// Ids and times: a UUID (or a task id that starts with one), or RFC 3339.
fn volatile_text(text: &str) -> bool {
    let bytes = text.as_bytes();
    let uuid = bytes.len() >= 36
        && bytes[..36].iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        });
    let time = bytes.len() >= 20 && bytes[4] == b'-' && bytes[10] == b'T';
    uuid || time || text.contains('…')
}

/// Where `actual` does not answer what `shown` claims.
fn compare(shown: &Value, actual: &Value, at: &str, problems: &mut Vec<String>) {
    match (shown, actual) {
        (Value::Object(shown), Value::Object(actual)) => {
            for (key, value) in shown {
                let here = format!("{at}.{key}");
                match actual.get(key) {
                    None => problems.push(format!("{here}: shown, but not in the answer")),
                    Some(_) if volatile(key) => {}
                    Some(answered) => compare(value, answered, &here, problems),
                }
            }
        }
        (Value::Array(shown), Value::Array(actual)) => {
            if shown.is_empty() && !actual.is_empty() || shown.len() > actual.len() {
                problems.push(format!(
                    "{at}: {} element(s) shown, {} answered",
                    shown.len(),
                    actual.len()
                ));
            }
            for (i, (shown, actual)) in shown.iter().zip(actual).enumerate() {
                compare(shown, actual, &format!("{at}[{i}]"), problems);
            }
        }
        (Value::String(text), Value::String(_)) if volatile_text(text) => {}
        (Value::Number(a), Value::Number(b)) if a.as_f64() == b.as_f64() => {}
        (shown, actual) if shown == actual => {}
        (shown, actual) => problems.push(format!("{at}: shown {shown}, answered {actual}")),
    }
}

/// The field at `path` (`tasks[0].id`) of `value`, as a string.
fn field(value: &Value, path: &str) -> Option<String> {
    let mut here = value;
    for part in path.split('.') {
        let (name, index) = match part.split_once('[') {
            Some((name, index)) => (name, index.strip_suffix(']')?.parse::<usize>().ok()),
            None => (part, None),
        };
        here = here.get(name)?;
        if let Some(index) = index {
            here = here.get(index)?;
        }
    }
    here.as_str().map(str::to_owned)
}

/// Fails with a clear message unless `sh` and `curl` can be run.
fn require_tools() {
    for (tool, args) in [("sh", &["-c", "exit 0"][..]), ("curl", &["--version"][..])] {
        let ran = std::process::Command::new(tool)
            .args(args)
            .stdout(Stdio::null())
            .status();
        assert!(
            matches!(ran, Ok(status) if status.success()),
            "the examples of docs/api.md are run with `{tool}`, which cannot be run here \
             ({ran:?}); install it — this test must not pass without running them"
        );
    }
}

#[tokio::test]
async fn every_curl_example_of_the_api_reference_answers_as_shown() {
    require_tools();
    let text = std::fs::read_to_string(repo().join("docs/api.md")).unwrap();
    let page = parse(&text);
    let examples = page
        .steps
        .iter()
        .filter(|s| matches!(s, Step::Run(_)))
        .count();
    assert_eq!(
        examples, page.curl_lines,
        "every `curl` line of docs/api.md is an example"
    );
    assert!(examples >= 40, "only {examples} examples found");

    let data = tempfile::tempdir().unwrap();
    let folder = tempfile::tempdir().unwrap();
    for (name, content) in &page.files {
        std::fs::write(folder.path().join(name), content).unwrap();
    }
    let server = Server::start(data.path()).await;
    let mut variables = BTreeMap::from([("RETRACE".to_owned(), server.base.clone())]);
    let mut last: Option<(usize, Value)> = None;
    let mut failures = Vec::new();
    for step in &page.steps {
        let example = match step {
            Step::Capture { line, name, path } => {
                let (from, answer) = last.as_ref().unwrap_or_else(|| {
                    panic!("docs/api.md:{line}: no answer yet to take {name} from")
                });
                let value = field(answer, path).unwrap_or_else(|| {
                    panic!("docs/api.md:{line}: no string at `{path}` in the answer of line {from}: {answer}")
                });
                variables.insert(name.clone(), value);
                continue;
            }
            Step::Run(example) => example,
        };
        let status = example.status.unwrap_or_else(|| {
            panic!(
                "docs/api.md:{}: no `# <status>` comment after\n{}",
                example.line, example.command
            )
        });
        let answer = run(example, folder.path(), &variables).await;
        let mut problems = Vec::new();
        if answer.status != status {
            problems.push(format!(
                "status: shown {status}, answered {}",
                answer.status
            ));
        }
        if example.is_stream() {
            let events = sse_events(&answer.body, example.line);
            for (i, (event, data)) in example.events.iter().enumerate() {
                match events.get(i) {
                    None => problems.push(format!("event {i}: shown, but not sent")),
                    Some((sent, sent_data)) => {
                        if sent != event {
                            problems.push(format!("event {i}: shown `{event}`, sent `{sent}`"));
                        }
                        compare(data, sent_data, &format!("event {i}"), &mut problems);
                    }
                }
            }
        } else if let Some(shown) = &example.answer {
            match serde_json::from_str::<Value>(&answer.body) {
                Ok(body) => compare(shown, &body, "", &mut problems),
                Err(e) => problems.push(format!("the answer is not JSON ({e})")),
            }
        }
        if !problems.is_empty() {
            let body = answer.body.trim();
            let shown: String = body.chars().take(600).collect();
            let more = if shown.len() < body.len() { " …" } else { "" };
            failures.push(format!(
                "docs/api.md:{}: {}\n  answered: {shown}{more}\n  - {}",
                example.line,
                example.command,
                problems.join("\n  - ")
            ));
        }
        if let Ok(body) = serde_json::from_str::<Value>(&answer.body) {
            last = Some((example.line, body));
        }
    }
    server.stop().await;
    assert!(
        failures.is_empty(),
        "{} example(s) of docs/api.md do not answer as shown:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn the_conventions_parse_as_described() {
    assert_eq!(
        elide(r#"{"a":"x…","b":{…},"c":[1,…],"d":2,…}"#),
        r#"{"a":"x…","b":{},"c":[1],"d":2}"#
    );
    assert_eq!(elide(r#"{…, "e": 1}"#), r#"{ "e": 1}"#);
    assert_eq!(
        capture(r#"TASK=01a1….1.1   # its "tasks[0].id""#),
        Some(("TASK".to_owned(), "tasks[0].id".to_owned()))
    );
    assert_eq!(capture("export RETRACE=http://127.0.0.1:7700"), None);
    assert_eq!(
        status_comment(" 200, as below"),
        Some((200, ", as below".to_owned()))
    );
    assert_eq!(status_comment(" 2026 is a year"), None);
    assert_eq!(scan("curl -d '{\"a\": 1,"), (true, None));
    assert_eq!(scan("curl -s $RETRACE/healthz   # 200"), (false, Some(27)));
    assert_eq!(scan("curl -H 'a: #1' x \\"), (true, None));
    let page = parse(
        "```sh\ncurl -s -X POST $RETRACE/x -d '{\n  \"a\": 1}'\n# 201 {\"id\":\"…\",\n#  \"ok\":true}\nID=x   # its \"id\"\ncurl -s $RETRACE/y   # 200, as below\n```\n\n```json\n{\"n\": 1}\n```\n",
    );
    assert_eq!(page.curl_lines, 2);
    let [
        Step::Run(first),
        Step::Capture { name, .. },
        Step::Run(second),
    ] = &page.steps[..]
    else {
        panic!("{page:?}");
    };
    assert_eq!(first.line, 2);
    assert_eq!(first.status, Some(201));
    assert_eq!(
        first.answer,
        Some(serde_json::json!({"id": "…", "ok": true}))
    );
    assert_eq!(name, "ID");
    assert_eq!(second.status, Some(200));
    assert_eq!(second.answer, Some(serde_json::json!({"n": 1})));
    assert_eq!(
        field(&serde_json::json!({"t": [{"id": "a"}]}), "t[0].id").as_deref(),
        Some("a")
    );
}
