//! The README's quick start, run for real: the ```sh block under
//! `## Quick start` is taken from README.md as written and run with `sh -e`
//! from the repository's root, with this build's `retrace` first on `PATH`,
//! a free port in place of 7700 and a temporary folder in place of
//! `$(mktemp -d)`. If the README changes, this runs the new commands. Its
//! wait for the server is run alone too, with a server that cannot start:
//! it must give up, in bounded time, with a message.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli_support;

use std::path::Path;
use std::process::Stdio;

use cli_support::{PATIENCE, repo};
use tokio::process::Command;

/// The first ```sh block after the `## Quick start` heading.
fn quick_start(readme: &str) -> String {
    let section = readme
        .split_once("\n## Quick start\n")
        .expect("README.md has a `## Quick start` section")
        .1;
    let block = section
        .split_once("```sh\n")
        .expect("the section has a ```sh block")
        .1;
    block
        .split_once("\n```")
        .expect("the block ends")
        .0
        .to_owned()
}

/// `commands` with a free port in place of 7700 and `data` in place of
/// `$(mktemp -d)`, killing on exit whatever it started in the background.
fn script(commands: &str, data: &Path) -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let script = commands
        .replace("127.0.0.1:7700", &format!("127.0.0.1:{port}"))
        .replace("$(mktemp -d)", &format!("'{}'", data.display()));
    // Whatever happens, nothing the script started outlives it.
    format!("trap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n{script}\n")
}

/// The lines up to the wait for the server and the check after it.
fn up_to_the_wait(commands: &str) -> String {
    let lines: Vec<&str> = commands.lines().collect();
    let check = lines
        .iter()
        .rposition(|l| l.starts_with("retrace agents"))
        .expect("the quick start checks that the server answers");
    lines[..=check].join("\n")
}

#[tokio::test]
async fn the_readme_quick_start_runs_as_written() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let commands = quick_start(&readme);
    assert!(commands.contains("127.0.0.1:7700"), "{commands}");
    assert!(commands.contains("$(mktemp -d)"), "{commands}");
    // The wait is bounded: no `until` loop that spins for ever.
    assert!(
        !commands.lines().any(|l| l.starts_with("until ")),
        "{commands}"
    );
    assert!(commands.contains("$(seq "), "{commands}");

    let data = tempfile::tempdir().unwrap();
    let script = script(&commands, &data.path().join("data"));

    let out = run_sh(&script).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the quick start fails:\n{script}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    for expected in [
        "workflow hello version ",
        "execution_completed  {\"output\":{\"message\":\"Hello, Ann\",\"to\":\"Ann\"}}",
        "status running → completed",
        "after seq 10: completed",
    ] {
        assert!(
            stdout.contains(expected),
            "`{expected}` in:\n{stdout}\nstderr:\n{stderr}"
        );
    }
}

#[tokio::test]
async fn the_quick_start_gives_up_when_the_server_does_not_start() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let commands = up_to_the_wait(&quick_start(&readme));
    // A data folder that is a file: the server stops at once.
    let dir = tempfile::tempdir().unwrap();
    let not_a_folder = dir.path().join("file");
    std::fs::write(&not_a_folder, "not a data folder").unwrap();
    let script = script(&commands, &not_a_folder);
    let out = run_sh(&script).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{script}\nstderr:\n{stderr}");
    assert!(
        stderr.contains("cannot connect"),
        "{script}\nstderr:\n{stderr}"
    );
}

/// Runs `script` with `sh -e` from the repository's root, this build's
/// `retrace` first on `PATH`; bounded by twice [`PATIENCE`].
async fn run_sh(script: &str) -> std::process::Output {
    let bin = Path::new(env!("CARGO_BIN_EXE_retrace")).parent().unwrap();
    let path = std::env::join_paths(std::iter::once(bin.to_owned()).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .unwrap();
    let mut command = Command::new("sh");
    command
        .args(["-e", "-c", script])
        .current_dir(repo())
        .env("PATH", path)
        .env_remove("RETRACE_SERVER")
        .env_remove("RETRACE_DATA")
        .env_remove("RETRACE_LISTEN")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout can end everything it started.
        .process_group(0)
        .kill_on_drop(true);
    let child = command.spawn().unwrap();
    let group = child.id().unwrap();
    let Ok(out) = tokio::time::timeout(PATIENCE * 2, child.wait_with_output()).await else {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &format!("-{group}")])
            .status();
        panic!("the script did not finish in time:\n{script}");
    };
    out.unwrap()
}
