//! `GET /metrics` (Prometheus text, or OpenMetrics when asked for) and `GET
//! /v1/metrics` (JSON) show what the engine did. The text answers are read
//! as a scraper would: the 0.0.4 format by a strict parser of it, the
//! OpenMetrics one by a check of the OpenMetrics rules it must follow.

use std::collections::BTreeMap;

use prom_text_format_parser::{Scrape, Type, ValueType};
use reqwest::StatusCode;
use serde_json::json;

use crate::support::Server;

const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

async fn run_one(server: &Server) -> String {
    server
        .define(json!({"name": "measured", "steps": [
            {"id": "work", "type": "task", "capability": "build"}]}))
        .await;
    let agent = server.register(&["build"]).await;
    let id = server.start_execution("measured", json!({})).await;
    let task = server.claim(&agent).await;
    let (status, _) = server
        .post(
            &format!("/v1/tasks/{}/complete", task["id"].as_str().unwrap()),
            json!({"output": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    server.stream_to_end(&id).await;
    id
}

/// `GET /metrics` with `accept` (none if `None`): the content type and
/// the text.
async fn scrape(server: &Server, accept: Option<&str>) -> (String, String) {
    let mut request = server.client.get(server.url("/metrics"));
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let r = request.send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let content_type = r.headers()["content-type"].to_str().unwrap().to_owned();
    (content_type, r.text().await.unwrap())
}

/// Every sample of a scrape by `name{labels}` (labels sorted by name),
/// and every family's type.
#[derive(Debug, Default)]
struct Samples {
    values: BTreeMap<String, f64>,
    types: BTreeMap<String, String>,
}

fn key(name: &str, labels: &[(&str, &str)]) -> String {
    let mut labels = labels.to_vec();
    labels.sort();
    let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{name}{{{}}}", labels.join(","))
}

impl Samples {
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let key = key(name, labels);
        *self
            .values
            .get(&key)
            .unwrap_or_else(|| panic!("no {key} in {:#?}", self.values.keys()))
    }

    /// A histogram's count, checked against its buckets: cumulative, and
    /// the `+Inf` one holds every observation.
    fn histogram_count(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        assert_eq!(self.types[name], "histogram", "{name}");
        let count = self.get(&format!("{name}_count"), labels);
        let prefix = format!("{name}_bucket{{");
        let mut buckets: Vec<(f64, f64)> = self
            .values
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .filter_map(|(k, v)| {
                let mut pairs = parse_labels(&k[prefix.len() - 1..]).0;
                let le = pairs.remove("le")?;
                let same = pairs.len() == labels.len()
                    && labels
                        .iter()
                        .all(|(k, v)| pairs.get(*k).map(String::as_str) == Some(*v));
                same.then(|| (parse_float(&le), *v))
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        assert!(!buckets.is_empty(), "{name} {labels:?} has buckets");
        assert!(
            buckets.windows(2).all(|w| w[0].1 <= w[1].1),
            "cumulative: {buckets:?}"
        );
        assert_eq!(buckets.last().unwrap(), &(f64::INFINITY, count));
        count
    }
}

fn parse_float(text: &str) -> f64 {
    match text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other
            .parse()
            .unwrap_or_else(|_| panic!("not a number: {other}")),
    }
}

/// `{k="v",…}` (label values escaped as both formats escape them), and
/// the rest of the text.
fn parse_labels(text: &str) -> (BTreeMap<String, String>, &str) {
    let mut labels = BTreeMap::new();
    let Some(mut rest) = text.strip_prefix('{') else {
        return (labels, text);
    };
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return (labels, after);
        }
        let (name, after) = rest.split_once("=\"").expect("a label");
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next().expect("a closed label value") {
                (i, '"') => break i,
                (_, '\\') => match chars.next().expect("an escape").1 {
                    'n' => value.push('\n'),
                    c @ ('\\' | '"') => value.push(c),
                    c => panic!("unknown escape \\{c}"),
                },
                (_, c) => value.push(c),
            }
        };
        labels.insert(name.to_owned(), value);
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

/// The Prometheus text format 0.0.4, through a strict parser of it (a
/// family whose samples do not carry its name, such as a counter typed
/// without its `_total`, is an error there).
fn prometheus_text(text: &str) -> Samples {
    assert!(!text.contains("# EOF"), "no EOF marker in 0.0.4");
    assert!(!text.contains("# UNIT"), "no UNIT lines in 0.0.4");
    let scrape = Scrape::parse(text).unwrap_or_else(|e| panic!("{e:?} in:\n{text}"));
    let mut samples = Samples::default();
    for metric in scrape.metrics {
        let kind = match metric.kind {
            Type::Counter => "counter",
            Type::Gauge => "gauge",
            Type::Histogram => "histogram",
            other => panic!("{} is {other}", metric.name),
        };
        samples.types.insert(metric.name.clone(), kind.to_owned());
        for sample in metric.samples {
            let suffix = match (metric.kind, sample.value.value_type) {
                (Type::Histogram, ValueType::Sample) => "_bucket",
                (_, ValueType::Sum) => "_sum",
                (_, ValueType::Count) => "_count",
                _ => "",
            };
            let labels: Vec<(&str, &str)> = sample
                .labels
                .iter()
                .map(|l| (l.key.as_str(), l.value.as_str()))
                .collect();
            let name = format!("{}{suffix}", metric.name);
            let value = sample.value.value.as_f64();
            samples.values.insert(key(&name, &labels), value);
        }
    }
    samples
}

/// OpenMetrics 1.0 text, checked line by line: a `# EOF` last; each
/// family's `# TYPE` before its samples; a counter family named without
/// `_total` and its samples with it; a `# UNIT` only for a family whose
/// name ends with the unit; a histogram's samples `_bucket`, `_sum` and
/// `_count`.
fn openmetrics(text: &str) -> Samples {
    let body = text
        .strip_suffix("# EOF\n")
        .unwrap_or_else(|| panic!("ends with # EOF:\n{text}"));
    let mut samples = Samples::default();
    let mut family: Option<(String, String)> = None;
    for line in body.lines() {
        if line.starts_with("# HELP ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            assert!(!(kind == "counter" && name.ends_with("_total")), "{line}");
            family = Some((name.to_owned(), kind.to_owned()));
            samples.types.insert(name.to_owned(), kind.to_owned());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# UNIT ") {
            let (name, unit) = rest.split_once(' ').unwrap();
            assert_eq!(Some(name), family.as_ref().map(|f| f.0.as_str()), "{line}");
            assert!(name.ends_with(&format!("_{unit}")), "{line}");
            continue;
        }
        assert!(!line.starts_with('#') && !line.is_empty(), "{line:?}");
        let name_end = line.find(['{', ' ']).unwrap();
        let name = &line[..name_end];
        let (labels, rest) = parse_labels(&line[name_end..]);
        let value = parse_float(rest.trim());
        let (family_name, kind) = family.as_ref().expect("a family's TYPE first");
        let suffix = name
            .strip_prefix(family_name.as_str())
            .unwrap_or_else(|| panic!("{line} is not of {family_name}"));
        let allowed: &[&str] = match kind.as_str() {
            "counter" => &["_total"],
            "gauge" => &[""],
            _ => &["_bucket", "_sum", "_count"],
        };
        assert!(allowed.contains(&suffix), "{line} in a {kind}");
        let labels: Vec<(&str, &str)> = labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        samples.values.insert(key(name, &labels), value);
    }
    samples
}

#[tokio::test]
async fn both_formats_count_a_scripted_run() {
    let s = Server::start().await;
    s.define(json!({"name": "measured", "steps": [
        {"id": "work", "type": "task", "capability": "build",
         "retry": {"maxAttempts": 1}}]}))
        .await;
    let agent = s.register(&["build"]).await;
    let done = s.start_execution("measured", json!({})).await;
    let task = s.claim(&agent).await;
    let complete = format!("/v1/tasks/{}/complete", task["id"].as_str().unwrap());
    assert_eq!(
        s.post(&complete, json!({"output": 1})).await.0,
        StatusCode::OK
    );
    let failed = s.start_execution("measured", json!({})).await;
    let task = s.claim(&agent).await;
    let fail = format!("/v1/tasks/{}/fail", task["id"].as_str().unwrap());
    let error = json!({"error": {"type": "io", "message": "reset"}});
    assert_eq!(s.post(&fail, error).await.0, StatusCode::OK);
    let cancelled = s.start_execution("measured", json!({})).await;
    let cancel = format!("/v1/executions/{cancelled}/cancel");
    assert_eq!(s.post_empty(&cancel).await.0, StatusCode::OK);
    for id in [&done, &failed, &cancelled] {
        s.stream_to_end(id).await;
    }
    let (status, _) = s.get(&format!("/v1/executions/{}", uuid_nil())).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (content_type, text) = scrape(&s, None).await;
    assert_eq!(content_type, PROMETHEUS_TEXT);
    let plain = prometheus_text(&text);
    let (content_type, text) = scrape(&s, Some("application/openmetrics-text")).await;
    assert_eq!(content_type, OPENMETRICS);
    let open = openmetrics(&text);

    for m in [&plain, &open] {
        let measured = [("workflow", "measured")];
        for status in ["completed", "failed", "cancelled"] {
            let labels = [("workflow", "measured"), ("status", status)];
            assert_eq!(m.get("retrace_executions", &[("status", status)]), 1.0);
            assert_eq!(
                m.get("retrace_workflow_executions_ended_total", &labels),
                1.0
            );
            let n = m.histogram_count("retrace_execution_duration_seconds", &labels);
            assert_eq!(n, 1.0, "one {status} execution");
        }
        assert_eq!(
            m.get("retrace_workflow_executions_started_total", &measured),
            3.0
        );

        let build = [("capability", "build")];
        assert_eq!(m.get("retrace_tasks_total", &build), 2.0);
        assert_eq!(m.get("retrace_task_errors_total", &build), 1.0);
        assert_eq!(
            m.histogram_count("retrace_task_latency_seconds", &build),
            2.0
        );

        let work = [("workflow", "measured"), ("step", "work")];
        assert_eq!(m.get("retrace_steps_total", &work), 1.0);
        assert_eq!(m.get("retrace_step_errors_total", &work), 1.0);
        assert_eq!(
            m.histogram_count("retrace_step_duration_seconds", &work),
            1.0
        );

        let http = "retrace_http_request_duration_seconds";
        for (method, route, status) in [
            ("POST", "/v1/tasks/{id}/complete", "200"),
            ("POST", "/v1/tasks/{id}/fail", "200"),
            ("POST", "/v1/executions/{id}/cancel", "200"),
            ("GET", "/v1/executions/{id}", "404"),
        ] {
            let labels = [("method", method), ("route", route), ("status", status)];
            assert_eq!(m.histogram_count(http, &labels), 1.0, "{labels:?}");
        }
        assert!(m.get("retrace_journal_flush_seconds_total", &[]) >= 0.0);
        assert!(m.get("retrace_journal_appends_total", &[]) > 0.0);
        assert_eq!(m.get("retrace_agents", &[("status", "online")]), 1.0);

        // This test binary's own process.
        assert!(m.get("process_cpu_seconds_total", &[]) >= 0.0);
        assert!(m.get("process_resident_memory_bytes", &[]) > 1e6);
        assert!(m.get("process_virtual_memory_bytes", &[]) > 1e6);
        let open_fds = m.get("process_open_fds", &[]);
        assert!(open_fds > 0.0 && open_fds <= m.get("process_max_fds", &[]));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let started = m.get("process_start_time_seconds", &[]);
        assert!(now - 3600.0 < started && started <= now + 1.0, "{started}");
    }
    // Counter families are typed by their sample name in 0.0.4 only.
    assert_eq!(
        plain.types.get("retrace_tasks_total").map(String::as_str),
        Some("counter")
    );
    assert_eq!(
        open.types.get("retrace_tasks").map(String::as_str),
        Some("counter")
    );
}

fn uuid_nil() -> &'static str {
    "00000000-0000-0000-0000-000000000000"
}

/// Needs `Engine::poll_tasks` to report claims to the metrics recorder
/// (`Recorder::claimed`), which is not wired yet.
#[tokio::test]
async fn queue_wait_and_run_time_count_claimed_tasks() {
    let s = Server::start().await;
    run_one(&s).await;
    let (_, text) = scrape(&s, None).await;
    let m = prometheus_text(&text);
    let build = [("capability", "build")];
    assert_eq!(
        m.histogram_count("retrace_task_queue_wait_seconds", &build),
        1.0
    );
    assert_eq!(m.histogram_count("retrace_task_run_seconds", &build), 1.0);
    // The same wait by the task's priority (0: the default).
    assert_eq!(
        m.histogram_count(
            "retrace_task_queue_wait_by_priority_seconds",
            &[("priority", "0")]
        ),
        1.0
    );
}

#[tokio::test]
async fn openmetrics_only_for_a_client_that_asks_for_it() {
    let s = Server::start().await;
    for (accept, expected) in [
        (None, PROMETHEUS_TEXT),
        (Some("text/plain"), PROMETHEUS_TEXT),
        (Some("*/*"), PROMETHEUS_TEXT),
        (Some("application/json"), PROMETHEUS_TEXT),
        (
            Some("text/plain;version=0.0.4, application/openmetrics-text;q=0.5"),
            PROMETHEUS_TEXT,
        ),
        (Some("application/openmetrics-text"), OPENMETRICS),
        (
            Some("Application/OpenMetrics-Text; version=1.0.0"),
            OPENMETRICS,
        ),
        // What Prometheus itself sends.
        (
            Some(
                "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                 version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
            ),
            OPENMETRICS,
        ),
    ] {
        let (content_type, text) = scrape(&s, accept).await;
        assert_eq!(content_type, expected, "Accept: {accept:?}");
        assert_eq!(text.ends_with("# EOF\n"), expected == OPENMETRICS);
    }
}

#[tokio::test]
async fn openmetrics_text_counts_executions_tasks_and_the_journal() {
    let server = Server::start().await;
    run_one(&server).await;
    let open = server.stream("/v1/events/stream", None).await;
    let (_, text) = scrape(&server, Some("application/openmetrics-text")).await;
    for line in [
        "retrace_executions{status=\"completed\"} 1",
        "retrace_executions{status=\"running\"} 0",
        "retrace_workflow_executions_started_total{workflow=\"measured\"} 1",
        "retrace_workflow_executions_ended_total{workflow=\"measured\",status=\"completed\"} 1",
        "retrace_steps_total{workflow=\"measured\",step=\"work\"} 1",
        "retrace_tasks_total{capability=\"build\"} 1",
        "retrace_task_errors_total{capability=\"build\"} 0",
        "retrace_agents{status=\"online\"} 1",
        "retrace_sse_clients 1",
        "# TYPE retrace_execution_duration_seconds histogram",
        "# UNIT retrace_execution_duration_seconds seconds",
        "retrace_execution_duration_seconds_count{workflow=\"measured\",status=\"completed\"} 1",
    ] {
        assert!(text.contains(line), "missing `{line}` in:\n{text}");
    }
    assert!(text.contains("retrace_journal_appends_total "));
    drop(open);
}

#[tokio::test]
async fn json_metrics_show_system_and_workflow_figures() {
    let server = Server::start().await;
    run_one(&server).await;
    let (status, body) = server.get("/v1/metrics").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["system"]["activeWorkflows"], json!(0));
    assert_eq!(body["system"]["totalTasksProcessed"], json!(1));
    assert_eq!(body["system"]["executionsByStatus"]["completed"], json!(1));
    assert_eq!(body["system"]["healthStatus"], json!("healthy"));
    let w = &body["workflows"]["measured"];
    assert_eq!(
        (w["totalExecutions"].clone(), w["successRate"].clone()),
        (json!(1), json!(1.0))
    );
    assert_eq!(w["stepMetrics"]["work"]["count"], json!(1));
    assert_eq!(body["capabilities"]["build"]["count"], json!(1));
    assert!(
        body["capabilities"]["build"].get("buckets").is_none(),
        "{body}"
    );
}

/// A queue's age is how long its longest-waiting task has waited: shown
/// while a task waits, absent once none does.
#[tokio::test]
async fn a_queues_age_is_its_oldest_tasks_wait() {
    let server = Server::start().await;
    server
        .define(json!({"name": "queued", "steps": [
            {"id": "work", "type": "task", "capability": "slow.work"}]}))
        .await;
    let started = std::time::Instant::now();
    server.start_execution("queued", json!({})).await;
    let (_, body) = server.get("/v1/metrics").await;
    let waited = started.elapsed().as_millis() as u64;
    let age = body["system"]["queueOldestAgeMs"]["slow.work"]
        .as_u64()
        .unwrap_or_else(|| panic!("no age for slow.work: {body}"));
    assert!(age <= waited, "{age} ms > {waited} ms");
    assert_eq!(body["system"]["queueSizes"]["slow.work"], json!(1));
    let (_, text) = scrape(&server, None).await;
    let m = prometheus_text(&text);
    let age_s = m.get(
        "retrace_task_queue_oldest_age_seconds",
        &[("capability", "slow.work")],
    );
    assert!(
        (0.0..=started.elapsed().as_secs_f64()).contains(&age_s),
        "{age_s}"
    );
    // Claimed: nothing waits, so no age.
    let agent = server.register(&["slow.work"]).await;
    server.claim(&agent).await;
    let (_, body) = server.get("/v1/metrics").await;
    assert_eq!(body["system"]["queueOldestAgeMs"], json!({}), "{body}");
}

#[tokio::test]
async fn missed_deadlines_are_counted_by_workflow_and_step() {
    let s = Server::start().await;
    s.define(json!({"name": "late", "deadlineMs": 1, "steps": [
        {"id": "work", "type": "task", "capability": "nobody", "deadlineMs": 1}]}))
        .await;
    let id = s.start_execution("late", json!({})).await;
    // The deadlines pass at once; nobody takes the task.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let figures = loop {
        let (_, m) = s.get("/v1/metrics").await;
        let late = m["workflows"]["late"].clone();
        if late["deadlinesMissed"] == 1 && late["stepDeadlinesMissed"]["work"] == 1 {
            break late;
        }
        assert!(tokio::time::Instant::now() < deadline, "never counted: {m}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    assert_eq!(figures["activeExecutions"], 1, "the execution goes on");
    let (_, execution) = s.get(&format!("/v1/executions/{id}")).await;
    assert_eq!(execution["status"], "running");
    let (_, text) = scrape(&s, None).await;
    let m = prometheus_text(&text);
    for step in ["", "work"] {
        let labels = [("workflow", "late"), ("step", step)];
        assert_eq!(
            m.get("retrace_deadlines_missed_total", &labels),
            1.0,
            "{text}"
        );
    }
}

/// Each breaker is a gauge of its state and a counter of its openings, in
/// both formats, and in the JSON.
#[tokio::test]
async fn breakers_show_their_state_and_openings() {
    let server = Server::start().await;
    let (status, body) = server
        .put(
            "/v1/capabilities/billing:charge/breaker",
            json!({"failures": 2, "windowMs": 60000, "coolDownMs": 60000}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let label = [("capability", "billing:charge")];
    let (_, text) = scrape(&server, None).await;
    let m = prometheus_text(&text);
    assert_eq!(m.types["retrace_breaker_state"], "gauge");
    assert_eq!(m.types["retrace_breaker_opened_total"], "counter");
    assert_eq!(m.get("retrace_breaker_state", &label), 0.0);
    assert_eq!(m.get("retrace_breaker_opened_total", &label), 0.0);
    let (_, text) = scrape(&server, Some("application/openmetrics-text")).await;
    let m = openmetrics(&text);
    assert_eq!(m.get("retrace_breaker_state", &label), 0.0);
    assert_eq!(m.get("retrace_breaker_opened_total", &label), 0.0);
    let (_, body) = server.get("/v1/metrics").await;
    assert_eq!(
        body["breakers"],
        json!({"billing:charge": {"state": "closed", "opened": 0, "recentFailures": 0}})
    );
}
