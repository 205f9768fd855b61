//! Shared support for the tests that need a kernel: network namespaces that
//! the test creates and removes, udplb processes the test starts and stops
//! by PID, and real UDP sockets opened inside a namespace.
//!
//! Network rule: all traffic stays inside namespaces made here, on their own
//! lo or on veths with 198.18.0.0/15 and 2001:2::/48 addresses and no route
//! out. Every loop that sends is bounded in count, every receive in time.
#![allow(dead_code)]

pub mod topology;

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Fails the test, with the reason, unless we are root.
pub fn require_root() {
    if !nix::unistd::geteuid().is_root() {
        panic!("this test needs root (network namespaces, XDP): run `sudo make test`");
    }
}

/// Runs a command and fails the test if it fails.
pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A network namespace owned by the test; deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        require_root();
        let name = format!(
            "udplbt-{tag}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        sh(&["ip", "netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n <ns> ...`
    pub fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["ip", "-n", &self.name];
        full.extend_from_slice(args);
        sh(&full)
    }

    /// Runs a command inside the namespace.
    pub fn exec(&self, args: &[&str]) -> String {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(args);
        sh(&full)
    }

    /// Runs `f` on a thread that has joined this namespace. Sockets made there
    /// stay in the namespace and can be used from any thread afterwards.
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|s| {
            s.spawn(|| {
                let file = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
                nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                    .expect("setns into the test namespace");
                f()
            })
            .join()
            .expect("thread in namespace panicked")
        })
    }

    /// A UDP socket bound inside the namespace.
    pub fn udp_bind(&self, addr: &str) -> UdpSocket {
        let addr: SocketAddr = addr.parse().expect("socket address");
        self.enter(|| {
            let s = UdpSocket::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            s
        })
    }

    /// A field of /proc/net/snmp (e.g. ("Udp", "InCsumErrors")) in this namespace.
    pub fn snmp(&self, proto: &str, field: &str) -> u64 {
        let text = self.exec(&["cat", "/proc/net/snmp"]);
        let prefix = format!("{proto}:");
        let mut rows = text.lines().filter(|l| l.starts_with(&prefix));
        let (names, values) = (
            rows.next().expect("snmp header"),
            rows.next().expect("snmp values"),
        );
        let i = names
            .split_whitespace()
            .position(|n| n == field)
            .expect("snmp field");
        values.split_whitespace().nth(i).unwrap().parse().unwrap()
    }

    /// The XDP part of `ip -d link show <dev>`, empty when nothing is attached.
    pub fn xdp_on(&self, dev: &str) -> String {
        let out = self.ip(&["-d", "link", "show", "dev", dev]);
        out.lines()
            .filter(|l| l.contains("xdp") || l.contains("prog/xdp"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Two namespaces joined by a veth pair: `a` (198.18.0.1, 2001:2::1) and
/// `b` (198.18.0.2, 2001:2::2). Interfaces are named `veth-a` / `veth-b`
/// inside their namespaces. No default route: nothing can leave.
pub fn veth_pair(a: &Netns, b: &Netns) {
    sh(&[
        "ip", "link", "add", "veth-a", "netns", &a.name, "type", "veth", "peer", "name", "veth-b",
        "netns", &b.name,
    ]);
    for (ns, dev, v4, v6) in [
        (a, "veth-a", "198.18.0.1/24", "2001:2::1/64"),
        (b, "veth-b", "198.18.0.2/24", "2001:2::2/64"),
    ] {
        ns.ip(&["addr", "add", v4, "dev", dev]);
        ns.ip(&["-6", "addr", "add", v6, "dev", dev, "nodad"]);
        ns.ip(&["link", "set", dev, "up"]);
    }
}

/// Turns tx checksum offload on or off on a device in a namespace.
pub fn set_tx_csum(ns: &Netns, dev: &str, on: bool) {
    ns.exec(&["ethtool", "-K", dev, "tx", if on { "on" } else { "off" }]);
}

/// Pins the calling thread to one CPU: XDP runs on the sender's CPU for lo
/// and veth traffic, and round robin is per CPU.
pub fn pin_to_cpu0() {
    let mut set = nix::sched::CpuSet::new();
    set.set(0).unwrap();
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).expect("pin to CPU 0");
}

/// A running udplb, started inside a namespace and stopped by its own PID.
pub struct Udplb {
    child: Option<Child>,
    lines: mpsc::Receiver<String>,
    pub output: Vec<String>,
}

pub const BIN: &str = env!("CARGO_BIN_EXE_udplb");

/// A file for the test to write (a config file), removed on drop.
pub struct TempFile(pub std::path::PathBuf);

impl TempFile {
    pub fn new(name: &str, text: &str) -> TempFile {
        let path = std::env::temp_dir().join(format!(
            "udplbt-{}-{}-{name}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::write(&path, text).expect("write temp file");
        TempFile(path)
    }

    pub fn write(&self, text: &str) {
        // Write then rename, so udplb never reads half a file.
        let tmp = self.0.with_extension("new");
        std::fs::write(&tmp, text).expect("write temp file");
        std::fs::rename(&tmp, &self.0).expect("rename temp file");
    }

    pub fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl Udplb {
    /// Starts `udplb <args>` in `ns` and waits until it says it is attached.
    pub fn start(ns: &Netns, args: &[&str]) -> Udplb {
        Udplb::start_with_env(ns, args, &[])
    }

    /// As [`start`](Self::start), with extra environment variables.
    pub fn start_with_env(ns: &Netns, args: &[&str], env: &[(&str, &str)]) -> Udplb {
        // nsenter execs the program, so the child's PID is udplb's; unlike
        // `ip netns exec` it keeps the mount namespace, so /sys/fs/bpf (for
        // --pin) is the host's BPF filesystem.
        let mut child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", ns.name))
            .arg(BIN)
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn udplb");
        let (tx, rx) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        let mut u = Udplb {
            child: Some(child),
            lines: rx,
            output: Vec::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !u.output.iter().any(|l| l.contains("attached to")) {
            let left = deadline.saturating_duration_since(Instant::now());
            match u.lines.recv_timeout(left) {
                Ok(l) => u.output.push(l),
                Err(_) => {
                    let status = u.child.as_mut().unwrap().try_wait().ok().flatten();
                    panic!(
                        "udplb did not attach (exit {status:?}); output:\n{}",
                        u.output.join("\n")
                    );
                }
            }
        }
        u
    }

    /// Sends `sig` (e.g. SIGHUP) without waiting for anything.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(self.pid(), sig).expect("signal udplb");
    }

    /// Waits up to `timeout` for a line containing `needle`, keeping what
    /// was printed meanwhile in `output`; returns that line.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let seen = self.output.len();
        if let Some(l) = self.output[..seen].iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.output.push(l.clone());
                    if l.contains(needle) {
                        return l;
                    }
                }
                Err(_) => panic!(
                    "udplb did not print `{needle}`; output:\n{}",
                    self.output.join("\n")
                ),
            }
        }
    }

    /// The first line printed so far that contains `needle`.
    pub fn line_with(&self, needle: &str) -> &str {
        self.output
            .iter()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no `{needle}` in:\n{}", self.output.join("\n")))
    }

    /// The next line udplb prints, waiting at most `timeout`.
    pub fn next_line(&mut self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }

    pub fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.as_ref().unwrap().id() as i32)
    }

    /// Sends `sig` to udplb (by PID), waits for it to exit, and returns its
    /// exit status and everything it printed.
    pub fn stop(mut self, sig: nix::sys::signal::Signal) -> (std::process::ExitStatus, String) {
        let mut child = self.child.take().unwrap();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig)
            .expect("signal udplb");
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("udplb did not exit within 10 s of {sig:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // The reader threads end when the pipes close.
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(2)) {
            self.output.push(l);
        }
        (status, self.output.join("\n"))
    }
}

impl Drop for Udplb {
    fn drop(&mut self) {
        // A test that panicked still must not leave its udplb running.
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A datagram payload that carries its sequence number and is unique.
pub fn payload(seq: u32, len: usize) -> Vec<u8> {
    let mut p = format!("udplb-test {seq:08} ").into_bytes();
    let mut x = seq.wrapping_mul(2654435761) | 1;
    while p.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p.push(x as u8);
    }
    p.truncate(len.max(20));
    p
}

/// The sequence number a [`payload`] carries.
pub fn seq_of(p: &[u8]) -> u32 {
    std::str::from_utf8(&p[11..19])
        .expect("payload header")
        .parse()
        .expect("payload seq")
}

/// Receives exactly `n` datagrams on `sock` (2 s timeout each), then checks
/// that nothing more arrives within 200 ms.
pub fn recv_exactly(sock: &UdpSocket, n: usize) -> Vec<(Vec<u8>, SocketAddr)> {
    let mut got = Vec::with_capacity(n);
    let mut buf = vec![0u8; 65536];
    for i in 0..n {
        let (len, from) = sock.recv_from(&mut buf).unwrap_or_else(|e| {
            panic!("{:?}: datagram {i} of {n} missing: {e}", sock.local_addr())
        });
        got.push((buf[..len].to_vec(), from));
    }
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    if let Ok((len, _)) = sock.recv_from(&mut buf) {
        panic!(
            "{:?}: more than {n} datagrams (extra of {len} bytes)",
            sock.local_addr()
        );
    }
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    got
}

/// A socket buffer big enough for every datagram a test sends before it
/// reads (SO_RCVBUFFORCE: rmem_max is read-only inside a namespace).
pub fn big_rcvbuf(sock: &UdpSocket) {
    nix::sys::socket::setsockopt(sock, nix::sys::socket::sockopt::RcvBufForce, &(8 << 20))
        .expect("SO_RCVBUFFORCE");
}

/// Makes sure `from` has a neighbour entry for `to` before a burst, so the
/// first datagrams are not dropped while ARP/NDP resolves.
pub fn resolve_neighbour(from: &Netns, to: &str) {
    let target: SocketAddr = format!(
        "{}:9",
        if to.contains(':') {
            format!("[{to}]")
        } else {
            to.to_string()
        }
    )
    .parse()
    .unwrap();
    let bind = if to.contains(':') {
        "[::]:0"
    } else {
        "0.0.0.0:0"
    };
    let s = from.udp_bind(bind);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let _ = s.send_to(b"neighbour probe", target);
        std::thread::sleep(Duration::from_millis(50));
        let out = from.ip(&["neigh", "show", "to", to]);
        if out.contains("lladdr") && !out.contains("INCOMPLETE") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no neighbour entry for {to}: {out}"
        );
    }
}
