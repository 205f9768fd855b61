//! Real servers for the tests, each a process started in a namespace
//! (`ip netns exec` execs it, so its PID is the server's) and stopped by
//! that PID: dnsmasq, python3's http.server.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::netns::Netns;

pub struct Server(Child);

impl Server {
    pub fn start(ns: &Netns, args: &[&str]) -> Server {
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.name])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start server");
        Server(child)
    }

    pub fn kill(&mut self) {
        let _ = kill(Pid::from_raw(self.0.id() as i32), Signal::SIGKILL);
        let _ = self.0.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// dnsmasq on `port` (every address of `ns`), answering `name` A with
/// `answer`.
pub fn dnsmasq(ns: &Netns, port: u16, name: &str, answer: &str) -> Server {
    let address = format!("--address=/{name}/{answer}");
    let port = format!("--port={port}");
    Server::start(
        ns,
        &[
            "dnsmasq",
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--pid-file=",
            "--user=root",
            &address,
            &port,
        ],
    )
}

/// python3's http.server on `addr`:`port` in `ns`, serving `dir`; returns
/// once it listens (bounded wait).
pub fn http_server(ns: &Netns, addr: &str, port: u16, dir: &str) -> Server {
    let p = port.to_string();
    let s = Server::start(
        ns,
        &[
            "python3",
            "-m",
            "http.server",
            &p,
            "--bind",
            addr,
            "--directory",
            dir,
        ],
    );
    let deadline = Instant::now() + super::slow(Duration::from_secs(10));
    while !ns.exec(&["ss", "-Htln"]).contains(&format!(":{port} ")) {
        assert!(Instant::now() < deadline, "http.server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    s
}

/// Waits (bounded) until `ns` has a UDP socket on `port`.
pub fn wait_bound(ns: &Netns, port: u16) {
    let deadline = Instant::now() + super::slow(Duration::from_secs(5));
    let needle = format!(":{port} ");
    while !ns.exec(&["ss", "-Hulnp"]).contains(&needle) {
        assert!(Instant::now() < deadline, "nothing bound to port {port}");
        std::thread::sleep(Duration::from_millis(10));
    }
}
