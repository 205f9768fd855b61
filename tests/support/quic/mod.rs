//! Real QUIC through udplb: the aioquic server and clients of this
//! directory (server.py, client.py; aioquic from PyPI, installed by
//! scripts/install-deps.sh), run inside the test's namespaces and stopped
//! by their own PIDs. server.py issues its QUIC-LB connection IDs with the
//! README's own lines (section "QUIC"), so these tests test them.
//!
//! - [`Server`]: a QUIC server on a backend port that issues QUIC-LB
//!   connection IDs carrying its server ID and answers every request with
//!   its identity;
//! - [`clients`]: N connections through a frontend, each making requests
//!   and moving mid-connection (new source port, or a second address), with
//!   the JSON summary of how many completed.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::netns::Netns;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/quic");

/// Fails the test, with the fix, if python3 cannot import aioquic.
pub fn require_aioquic() {
    let ok = Command::new("python3")
        .args(["-c", "import aioquic"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "these tests need aioquic for python3: run scripts/install-deps.sh (pip install aioquic)"
    );
}

/// A QUIC server on `port` in a namespace, killed (by PID) on drop.
pub struct Server {
    child: Child,
    pub port: u16,
}

impl Server {
    /// Starts server.py and waits until it listens.
    pub fn start(ns: &Netns, port: u16, server_id: &str, identity: &str) -> Server {
        require_aioquic();
        // nsenter execs python3, so the child's PID is the server's.
        let mut child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", ns.name))
            .args(["python3", &format!("{DIR}/server.py")])
            .args(["--port", &port.to_string(), "--server-id", server_id])
            .args(["--identity", identity])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the QUIC server (python3)");
        let mut line = String::new();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let ready = rx
            .recv_timeout(super::slow(Duration::from_secs(15)))
            .unwrap_or_default();
        let mut server = Server { child, port };
        assert_eq!(ready.trim(), "ready", "QUIC server on {port} did not start");
        server.child.stdout = None;
        server
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What client.py printed.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Summary {
    pub connections: u32,
    pub completed: u32,
    pub broken: u32,
    pub moved: u32,
    pub servers: std::collections::BTreeMap<String, u32>,
    pub broken_by_server_id: std::collections::BTreeMap<String, u32>,
    pub failures: Vec<String>,
}

/// A run of client.py in `ns`, started now; [`Clients::wait`] collects it.
pub struct Clients {
    child: Child,
    started: Instant,
}

/// Starts client.py in `ns` with `args` (see its --help).
pub fn clients(ns: &Netns, args: &[&str]) -> Clients {
    require_aioquic();
    let child = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", ns.name))
        .args(["python3", &format!("{DIR}/client.py")])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the QUIC clients (python3)");
    Clients {
        child,
        started: Instant::now(),
    }
}

impl Clients {
    /// Waits for the run (bounded by its own --deadline; killed by PID
    /// after `limit`) and parses its summary.
    pub fn wait(mut self, limit: Duration) -> Summary {
        while self.child.try_wait().unwrap().is_none() {
            if self.started.elapsed() > limit {
                let _ = self.child.kill();
                panic!("QUIC clients still running after {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = self.child.wait_with_output().expect("client output");
        let text = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(text.trim()).unwrap_or_else(|e| {
            panic!(
                "client.py printed no summary ({e}): {text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }
}
