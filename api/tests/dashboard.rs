//! The browser dashboard (`GET /`, `/ui/…`, `api/dashboard/`) in a real
//! browser: headless Chromium driven through chromedriver (WebDriver), in
//! front of a real `retrace serve` on a fresh data folder with an access
//! token. The page asks for the token, lists the executions and adds one
//! started meanwhile without a reload (the global stream), draws an
//! execution's graph with each step's state, travels back in its history
//! and live again, says its hash chain verifies, and pauses it through its
//! button and confirmation dialog, with a reason the history records. It
//! also opens the other pages once, and fails on any script error or
//! Content-Security-Policy violation the browser reports.
//!
//! Chromium and chromedriver come from the system (Debian and Ubuntu:
//! `apt-get install chromium chromium-driver`; `scripts/test` installs
//! them, and `RETRACE_CHROMIUM` / `RETRACE_CHROMEDRIVER` name other
//! binaries). Without them this test fails and says so: it never passes
//! without running.
//!
//! Every process it starts listens on loopback only and is stopped at the
//! end, or by a guard if the test fails: chromedriver runs in its own
//! process group with the Chromium it starts, and the group is killed on
//! drop. Every wait polls for a condition within [`PATIENCE`].

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli_support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cli_support::{PATIENCE, Server, run};
use fantoccini::elements::Element;
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// The variables that name the browser and its driver.
const CHROMIUM: &str = "RETRACE_CHROMIUM";
const CHROMEDRIVER: &str = "RETRACE_CHROMEDRIVER";

const INSTALL: &str = "Install them with `apt-get install chromium chromium-driver` \
    (Debian, Ubuntu), or run `scripts/test`, which installs them; RETRACE_CHROMIUM and \
    RETRACE_CHROMEDRIVER name other binaries (of the same major version).";

/// How often a wait looks again (an interval between polls, not a wait
/// standing in for one).
const POLL: Duration = Duration::from_millis(25);

/// The reason the test gives when it pauses an execution.
const REASON: &str = "checking the dashboard";

/// A binary the test needs, or a failure that says how to get it.
fn required(variable: &str, default: &str, what: &str) -> PathBuf {
    let path = std::env::var_os(variable).map_or_else(|| PathBuf::from(default), PathBuf::from);
    assert!(
        path.is_file(),
        "{what} is not installed at {} ({variable} names another path; the default is \
         {default}): this test drives a real browser and cannot run without it (it never \
         passes without running). {INSTALL}",
        path.display()
    );
    path
}

/// What `<binary> --version` says.
fn version_of(binary: &Path) -> String {
    let output = std::process::Command::new(binary)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} --version: {e}. {INSTALL}", binary.display()));
    assert!(
        output.status.success(),
        "{} --version failed: {}. {INSTALL}",
        binary.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// The major version in `Chromium 148.0.7778.167 …` or `ChromeDriver 148.0….`.
fn major(version: &str) -> Option<u32> {
    version
        .split_whitespace()
        .find(|word| word.contains('.') && word.starts_with(|c: char| c.is_ascii_digit()))?
        .split('.')
        .next()?
        .parse()
        .ok()
}

/// Chromium and chromedriver, checked to be of one major version.
fn browser_binaries() -> (PathBuf, PathBuf) {
    let chromium = required(CHROMIUM, "/usr/bin/chromium", "Chromium");
    let chromedriver = required(CHROMEDRIVER, "/usr/bin/chromedriver", "chromedriver");
    let (browser, driver) = (version_of(&chromium), version_of(&chromedriver));
    assert!(
        major(&browser).is_some() && major(&browser) == major(&driver),
        "chromedriver drives only the Chromium of its own major version: {browser:?} and \
         {driver:?}. {INSTALL}"
    );
    eprintln!("dashboard test: {browser}; {driver}");
    (chromium, chromedriver)
}

/// A running chromedriver, in a process group of its own with the Chromium
/// it starts: dropping it kills the whole group.
struct ChromeDriver {
    child: Child,
    url: String,
    log: Arc<Mutex<String>>,
}

impl ChromeDriver {
    /// Starts chromedriver on a free loopback port (it allows local
    /// connections only) and waits until it says which. It and the
    /// browser keep their temporary files in `tmp` (the test's temporary
    /// folder, removed even when a killed browser could not).
    async fn start(binary: &Path, tmp: &Path) -> ChromeDriver {
        std::fs::create_dir_all(tmp).unwrap();
        let mut command = Command::new(binary);
        command
            .arg("--port=0")
            .env("TMPDIR", tmp)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}. {INSTALL}", binary.display()));
        let log = Arc::new(Mutex::new(String::new()));
        let (port_tx, mut port_rx) = mpsc::unbounded_channel();
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
        let kept = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = stdout.next_line().await {
                if let Some(port) = line
                    .strip_prefix("ChromeDriver was started successfully on port ")
                    .and_then(|rest| rest.trim_end_matches('.').parse::<u16>().ok())
                {
                    let _ = port_tx.send(port);
                }
                kept.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        let kept = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = stderr.next_line().await {
                kept.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        let port = tokio::time::timeout(PATIENCE, port_rx.recv())
            .await
            .unwrap_or_else(|_| panic!("chromedriver never said its port: {}", log.lock().unwrap()))
            .unwrap_or_else(|| panic!("chromedriver exited: {}", log.lock().unwrap()));
        ChromeDriver {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    /// A session in a new headless Chromium, with a profile in `profile`.
    async fn open_browser(&self, chromium: &Path, profile: &Path) -> Client {
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    "--window-size=1400,1000",
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        // What the page's console says: script errors, CSP violations.
        capabilities.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "chromedriver could not start Chromium ({}): {e}\nchromedriver said:\n{}",
                    chromium.display(),
                    self.log.lock().unwrap()
                )
            })
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        // The group is chromedriver's own (process_group(0)): it and the
        // Chromium it started, nothing else.
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// chromedriver's `POST /session/{id}/se/log`: the browser console's
/// entries since the last call.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.to_owned()))
    }
}

/// The API as the test's own client: with the admin token.
struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    async fn send(&self, request: reqwest::RequestBuilder) -> Value {
        let response = request.bearer_auth(&self.token).send().await.unwrap();
        let status = response.status();
        let body = response.text().await.unwrap();
        assert!(status.is_success(), "{status}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    async fn get(&self, path: &str) -> Value {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.send(self.http.post(format!("{}{path}", self.base)).json(&body))
            .await
    }

    /// Starts `dash`; its id, once it waits for its event.
    async fn start(&self) -> String {
        let started = self
            .post(
                "/v1/executions",
                json!({"workflow": "dash", "input": {"n": 1}}),
            )
            .await;
        let id = started["id"].as_str().unwrap().to_owned();
        self.execution_until(&id, "waits for `approval`", |execution| {
            execution["currentSteps"]
                .as_array()
                .is_some_and(|steps| steps.iter().any(|s| s["stepId"] == "approval"))
        })
        .await;
        id
    }

    /// Polls `GET /v1/executions/{id}` until `ready` holds for it.
    async fn execution_until(&self, id: &str, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let execution = self.get(&format!("/v1/executions/{id}")).await;
            if ready(&execution) {
                return execution;
            }
            assert!(
                Instant::now() < deadline,
                "execution {id} never {what}: {execution}"
            );
            tokio::time::sleep(POLL).await;
        }
    }
}

/// A task the engine runs inline, then an event nobody sends (so each
/// execution stays running), then another task.
fn workflow() -> Value {
    json!({
        "name": "dash",
        "steps": [
            {"id": "prepare", "type": "task", "capability": "noop", "next": "approval"},
            {"id": "approval", "type": "event", "event": {"name": "dash.approved"}, "next": "finish"},
            {"id": "finish", "type": "task", "capability": "noop"}
        ]
    })
}

/// The browser, on the dashboard: what the test does and waits for there.
struct Browser {
    client: Client,
    base: String,
}

impl Browser {
    async fn open(&self, hash: &str) {
        let url = format!("{}/{hash}", self.base);
        self.client.goto(&url).await.unwrap();
    }

    /// Runs `script` in the page; what it returns.
    async fn eval(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("the page cannot run {script}: {e}"))
    }

    /// Where the page is and what it says, for a failure message.
    async fn state(&self) -> String {
        let script = "const bar = document.getElementById('error-bar');
            const main = document.getElementById('main');
            return `at ${location.href}\nerror bar: ${bar && !bar.hidden ? bar.innerText : '(none)'}\n` +
                   `page:\n${main ? main.innerText.slice(0, 3000) : '(no main)'}`;";
        match self.client.execute(script, vec![]).await {
            Ok(value) => value.as_str().unwrap_or_default().to_owned(),
            Err(e) => format!("(the page cannot be read: {e})"),
        }
    }

    /// Runs `script` until `ready` holds for what it returns (within
    /// [`PATIENCE`]); returns that.
    async fn until(
        &self,
        what: &str,
        script: &str,
        args: Vec<Value>,
        ready: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let value = self.eval(script, args.clone()).await;
            if ready(&value) {
                return value;
            }
            if Instant::now() >= deadline {
                let state = self.state().await;
                panic!("the page never showed {what}; it last returned {value}\n{state}");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until `script` returns `true`.
    async fn until_true(&self, what: &str, script: &str) {
        self.until(what, script, vec![], |v| v == &json!(true))
            .await;
    }

    /// Waits until the element `selector` has every class in `has` and
    /// none in `lacks`.
    async fn until_classes(&self, selector: &str, has: &[&str], lacks: &[&str]) {
        let what = format!("{selector} with classes {has:?} and none of {lacks:?}");
        let script = "const e = document.querySelector(arguments[0]); \
            return e ? e.getAttribute('class') : null;";
        self.until(&what, script, vec![json!(selector)], |value| {
            let classes: Vec<&str> = value
                .as_str()
                .unwrap_or_default()
                .split_whitespace()
                .collect();
            value.is_string()
                && has.iter().all(|c| classes.contains(c))
                && lacks.iter().all(|c| !classes.contains(c))
        })
        .await;
    }

    /// Waits until the text of the element `selector` is `ready`.
    async fn until_text(&self, selector: &str, what: &str, ready: impl Fn(&str) -> bool) {
        let script = "const e = document.querySelector(arguments[0]); \
            return e ? e.textContent.trim() : null;";
        self.until(what, script, vec![json!(selector)], |value| {
            value.as_str().is_some_and(&ready)
        })
        .await;
    }

    async fn element(&self, selector: &str) -> Element {
        self.client
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css(selector))
            .await
            .unwrap_or_else(|e| panic!("no {selector}: {e}"))
    }

    async fn click(&self, selector: &str) {
        let element = self.element(selector).await;
        element
            .click()
            .await
            .unwrap_or_else(|e| panic!("cannot click {selector}: {e}"));
    }

    async fn type_into(&self, selector: &str, text: &str) {
        let element = self.element(selector).await;
        element
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("cannot type into {selector}: {e}"));
    }

    /// `(id, status)` of each row of the executions table, top to bottom,
    /// once `ready` holds for them.
    async fn until_rows(
        &self,
        what: &str,
        ready: impl Fn(&[(String, String)]) -> bool,
    ) -> Vec<(String, String)> {
        let script = "return [...document.querySelectorAll('#executions tr[data-id]')]
            .map(r => [r.dataset.id, r.querySelector('.status').textContent.trim()]);";
        let rows = self
            .until(what, script, vec![], |value| {
                serde_json::from_value::<Vec<(String, String)>>(value.clone())
                    .is_ok_and(|rows| ready(&rows))
            })
            .await;
        serde_json::from_value(rows).unwrap()
    }

    /// The console's errors that are the page's fault: script errors and
    /// CSP violations, not the 401s the first requests get by design (nor
    /// the favicon the browser asks for).
    async fn errors(&self) -> Vec<String> {
        let entries = self.client.issue_cmd(BrowserLog).await.unwrap();
        entries
            .as_array()
            .into_iter()
            .flatten()
            .filter(|entry| entry["level"] == "SEVERE")
            .map(|entry| entry["message"].as_str().unwrap_or_default().to_owned())
            .filter(|message| !message.contains("Failed to load resource"))
            .collect()
    }
}

/// The graph's node of step `step`.
fn node(step: &str) -> String {
    format!("#graph g.node[data-step=\"{step}\"]")
}

/// The page asks for the token, takes it, and lists the executions,
/// newest first.
async fn sign_in(browser: &Browser, token: &str, newest_first: &[&str]) {
    browser.open("").await;
    browser
        .until_true(
            "the token form",
            "return !document.getElementById('token-panel').hidden \
             && !!document.getElementById('token-form');",
        )
        .await;
    browser.type_into("#token-input", token).await;
    browser.click("#token-submit").await;
    let listed = browser
        .until_rows("the executions", |rows| rows.len() >= newest_first.len())
        .await;
    let expected: Vec<(String, String)> = newest_first
        .iter()
        .map(|id| ((*id).to_owned(), "running".to_owned()))
        .collect();
    assert_eq!(listed, expected, "newest first, all running");
}

/// An execution started while the list shows appears in it, without a
/// reload (the global stream).
async fn list_follows(browser: &Browser, api: &Api, shown: usize) -> String {
    browser.eval("window.notReloaded = true;", vec![]).await;
    let started = api.start().await;
    let listed = browser
        .until_rows("the execution started meanwhile", |rows| {
            rows.first()
                .is_some_and(|(id, status)| id == &started && status == "running")
        })
        .await;
    assert_eq!(listed.len(), shown + 1, "{listed:?}");
    let kept = browser
        .eval("return window.notReloaded === true;", vec![])
        .await;
    assert_eq!(kept, json!(true), "the page was reloaded");
    started
}

/// One execution: its graph with each step's state, its chain, its
/// timeline; the number of its events.
async fn execution_page(browser: &Browser, api: &Api, id: &str) -> u64 {
    browser
        .click(&format!("#executions tr[data-id=\"{id}\"] td.id a"))
        .await;
    browser
        .until_classes(&node("prepare"), &["state-completed"], &["current"])
        .await;
    browser
        .until_classes(&node("approval"), &["state-waiting_event", "current"], &[])
        .await;
    browser
        .until_classes(&node("finish"), &["state-not_reached"], &["current"])
        .await;
    browser
        .until_text("#chain", "the chain verified", |t| t == "chain verified")
        .await;
    let last = api.get(&format!("/v1/executions/{id}")).await["lastSeq"]
        .as_u64()
        .unwrap();
    assert!(last >= 3, "{last}");
    let live = format!("event {last} of {last} (live)");
    browser
        .until_text("#travel-at", "the travel label, live", |t| t == live)
        .await;
    browser
        .until(
            "one timeline entry per event",
            "return document.querySelectorAll('#timeline li[data-seq]').length;",
            vec![],
            |v| v == &json!(last),
        )
        .await;
    last
}

/// Time travel back to the first event (nothing reached yet), one step
/// on, and live again.
async fn time_travel(browser: &Browser, last: u64) {
    for _ in 1..last {
        browser.click("#travel-prev").await;
    }
    let first = format!("event 1 of {last}");
    browser
        .until_text("#travel-at", "the travel label at event 1", |t| t == first)
        .await;
    browser
        .until_classes(
            &node("approval"),
            &["state-not_reached"],
            &["current", "state-waiting_event"],
        )
        .await;
    browser
        .until_classes(&node("prepare"), &[], &["state-completed"])
        .await;
    let later = browser
        .eval(
            "return document.querySelectorAll('#timeline li.future').length;",
            vec![],
        )
        .await;
    assert_eq!(
        later,
        json!(last - 1),
        "the events after the first are marked"
    );

    browser.click("#travel-next").await;
    let second = format!("event 2 of {last}");
    browser
        .until_text("#travel-at", "the travel label at event 2", |t| t == second)
        .await;

    browser.click("#travel-live").await;
    browser
        .until_classes(&node("approval"), &["state-waiting_event", "current"], &[])
        .await;
    let live = format!("event {last} of {last} (live)");
    browser
        .until_text("#travel-at", "the travel label, live again", |t| t == live)
        .await;
}

/// Pauses the execution through its button and the confirmation dialog,
/// with a reason; the history records it, and the page follows.
async fn pause(browser: &Browser, api: &Api, id: &str) {
    browser
        .click("#actions button[data-command=\"pause\"]")
        .await;
    browser
        .until_true(
            "the confirmation dialog",
            "return document.getElementById('confirm').open;",
        )
        .await;
    browser.type_into("#confirm-reason", REASON).await;
    browser.click("#confirm-ok").await;

    api.execution_until(id, "paused", |e| e["status"] == "paused")
        .await;
    let events = api.get(&format!("/v1/executions/{id}/events")).await;
    let paused = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "execution_paused")
        .unwrap_or_else(|| panic!("no execution_paused event: {events}"))
        .clone();
    assert_eq!(paused["data"]["reason"], REASON, "{paused}");
    assert_eq!(paused["data"]["by"], "root", "{paused}");

    browser
        .until_text("#status", "the paused status", |t| t == "paused")
        .await;
    browser
        .until_true(
            "the pause in the timeline",
            "return !!document.querySelector('#timeline li[data-type=\"execution_paused\"]');",
        )
        .await;
    browser
        .until_true(
            "the actions of a paused execution",
            "return !!document.querySelector('#actions button[data-command=\"resume\"]') \
             && !document.querySelector('#actions button[data-command=\"pause\"]') \
             && !document.getElementById('confirm').open;",
        )
        .await;
}

/// The other pages, once each: a version's graph, a definition checked,
/// agents and queues, metrics charted.
async fn other_pages(browser: &Browser, version: &str) {
    browser.open(&format!("#/workflows/dash/{version}")).await;
    browser
        .until(
            "the version's graph",
            "return document.querySelectorAll('#graph g.node').length;",
            vec![],
            |v| v == &json!(3),
        )
        .await;
    browser.open("#/define").await;
    browser.click("#validate").await;
    browser
        .until_text("#define-result", "the example definition valid", |t| {
            t.starts_with("Valid")
        })
        .await;
    browser.open("#/agents").await;
    browser
        .until_text("#agents-updated", "the agents page refreshed", |t| {
            t.starts_with("Updated")
        })
        .await;
    browser.open("#/metrics").await;
    browser
        .until_true(
            "a rate plotted (two of them: three samples)",
            "return [...document.querySelectorAll('#chart-executions polyline')] \
             .some(p => p.getAttribute('points').includes(' '));",
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_follows_replays_and_pauses_executions_in_a_real_browser() {
    let (chromium, chromedriver) = browser_binaries();

    // A server whose data folder holds an admin token, and two executions
    // waiting for their event.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap();
    let token = run(&[
        "token", "create", "--data", data_arg, "--name", "root", "--role", "admin",
    ])
    .await
    .expect_code(0)
    .stdout
    .trim()
    .to_owned();
    let server = Server::start(&data).await;
    let api = Api {
        http: reqwest::Client::new(),
        base: server.base.clone(),
        token: token.clone(),
    };
    let defined = api.post("/v1/workflows", workflow()).await;
    let version = defined["version"].as_str().unwrap().to_owned();
    let first = api.start().await;
    let second = api.start().await;

    let driver = ChromeDriver::start(&chromedriver, &dir.path().join("tmp")).await;
    let browser = Browser {
        client: driver
            .open_browser(&chromium, &dir.path().join("profile"))
            .await,
        base: server.base.clone(),
    };

    sign_in(&browser, &token, &[&second, &first]).await;
    let third = list_follows(&browser, &api, 2).await;
    let last = execution_page(&browser, &api, &third).await;
    time_travel(&browser, last).await;
    pause(&browser, &api, &third).await;
    other_pages(&browser, &version).await;

    let errors = browser.errors().await;
    browser.client.close().await.unwrap();
    drop(driver);
    server.stop().await;
    assert!(
        errors.is_empty(),
        "the browser reported errors (script errors or CSP violations):\n{}",
        errors.join("\n")
    );
}
