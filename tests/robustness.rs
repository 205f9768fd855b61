//! Hardening, with real sockets in network namespaces the tests make and
//! remove: what `--force` and `--pin` leave behind, jumbo MTUs, output to a
//! closed pipe.

use udplb_testkit as support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::netns::*;
use support::operate::{udplb_cmd, udplb_command};
use support::process::*;
use support::sockets::*;

/// Pins live under /sys/fs/bpf/udplb/<iface> for the whole host: interface
/// names of the test's own (at most 15 bytes).
fn unique_dev(tag: &str) -> String {
    format!("{tag}{}", std::process::id() % 1_000_000)
}

/// Removes the test's pins even when the test fails half-way.
struct Unpin(Vec<String>);

impl Drop for Unpin {
    fn drop(&mut self) {
        for dev in &self.0 {
            let _ = Command::new(BIN).args(["--unpin", dev]).output();
        }
    }
}

fn pin_dir(dev: &str) -> String {
    format!("/sys/fs/bpf/udplb/{dev}")
}

/// A `--pin` start that fails on its second interface removes the pin
/// directories it made for both.
#[test]
fn failed_pin_start_leaves_no_directories() {
    let ns = Netns::new("pinfail");
    let (a, b) = (unique_dev("upfa"), unique_dev("upfb"));
    ns.ip(&["link", "add", &a, "type", "veth", "peer", "name", &b]);
    ns.ip(&["link", "set", &a, "up"]);
    ns.ip(&["link", "set", &b, "up"]);
    let _unpin = Unpin(vec![a.clone(), b.clone()]);
    // Something already on the second interface makes the start fail there.
    let first = Udplb::start(&ns, &[&b, "9875=9876"]);

    let (code, _, stderr) = udplb_cmd(&ns, &["--pin", &format!("{a},{b}"), "9875=9876"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("already has XDP program"), "{stderr}");
    for dev in [&a, &b] {
        assert!(
            !Path::new(&pin_dir(dev)).exists(),
            "{} left behind",
            pin_dir(dev)
        );
    }
    assert_eq!(ns.xdp_on(&a), "", "XDP left on {a}");
    let (status, out) = first.stop(Signal::SIGTERM);
    assert!(status.success(), "{out}");
}

/// A udplb started by the test through a command of its own (setpriv, a
/// pipe the test closes); killed by PID if the test fails half-way.
struct Spawned {
    child: Child,
    stderr: mpsc::Receiver<String>,
}

impl Spawned {
    /// Spawns `cmd` with stdout and stderr piped; stderr lines are collected
    /// on a thread, stdout is left to the caller.
    fn new(mut cmd: Command) -> Spawned {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn udplb");
        let (tx, stderr) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Spawned { child, stderr }
    }

    /// Reads stdout until a line contains `needle` (20 s at most); returns
    /// the lines read and the reader, which the caller may close.
    fn read_until(&mut self, needle: &str) -> (Vec<String>, BufReader<std::process::ChildStdout>) {
        let out = self.child.stdout.take().expect("stdout already taken");
        let (tx, rx) = mpsc::channel();
        let wanted = needle.to_string();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(out);
            let mut lines = Vec::new();
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 {
                lines.push(line.trim_end().to_string());
                line.clear();
                if lines.last().unwrap().contains(&wanted) {
                    break;
                }
            }
            let _ = tx.send((lines, reader));
        });
        let limit = support::slow(Duration::from_secs(20));
        match rx.recv_timeout(limit) {
            Ok((lines, reader)) if lines.last().is_some_and(|l| l.contains(needle)) => {
                (lines, reader)
            }
            Ok((lines, _)) => panic!(
                "udplb did not print {needle:?}: {lines:?}; stderr: {:?}",
                self.stderr_now()
            ),
            Err(_) => panic!("udplb did not print {needle:?} within {limit:?}"),
        }
    }

    fn stderr_now(&self) -> Vec<String> {
        self.stderr.try_iter().collect()
    }

    /// Waits (10 s at most) for a stderr line containing `needle`.
    fn wait_stderr(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = Vec::new();
        while let Ok(l) =
            (self.stderr).recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            if l.contains(needle) {
                return l;
            }
            seen.push(l);
        }
        panic!("no {needle:?} on stderr within 10 s: {seen:?}")
    }

    /// The write calls udplb's output thread (`udplb-log`, the one writer
    /// of stdout once the daemon runs) made so far, failed ones included:
    /// the kernel counts a write into a closed pipe as well (syscw).
    fn output_writes(&self) -> u64 {
        let tasks = format!("/proc/{}/task", self.child.id());
        for task in std::fs::read_dir(&tasks)
            .unwrap()
            .map(|t| t.unwrap().path())
        {
            let comm = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
            if comm.trim_end() == "udplb-log" {
                let io = std::fs::read_to_string(task.join("io")).unwrap();
                let syscw = io.lines().find_map(|l| l.strip_prefix("syscw: "));
                return syscw.expect("syscw in task io").parse().unwrap();
            }
        }
        panic!("no udplb-log thread under {tasks}")
    }

    fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.id() as i32)
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Sends `sig` and waits (10 s at most) for the exit status.
    fn stop(mut self, sig: Signal) -> std::process::ExitStatus {
        nix::sys::signal::kill(self.pid(), sig).expect("signal udplb");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "udplb did not exit after {sig:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `n` datagrams from `ns` to `to` and checks `backend` gets them all.
fn balanced(ns: &Netns, to: &str, backend: &std::net::UdpSocket, n: u32, len: usize) {
    let client = ns.udp_bind(if to.starts_with('[') {
        "[::]:0"
    } else {
        "0.0.0.0:0"
    });
    for seq in 0..n {
        client.send_to(&payload(seq, len), to).expect("send");
    }
    let got = recv_exactly(backend, n as usize);
    assert!(got.iter().all(|(p, _)| p.len() == len.max(20)));
}

/// CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON are all udplb needs to start and
/// balance on a namespace's lo (what the README and a systemd unit grant).
#[test]
fn three_capabilities_suffice() {
    let ns = Netns::new("caps3");
    let backend = ns.udp_bind("127.0.0.1:9876");
    let setpriv = [
        "setpriv",
        "--inh-caps=-all",
        "--ambient-caps=-all",
        "--bounding-set=-all,+bpf,+net_admin,+perfmon",
    ];
    let mut lb = Spawned::new(udplb_command(&ns, &setpriv, &["lo", "9875=9876"]));
    let (_lines, _out) = lb.read_until("attached to lo");
    let status = std::fs::read_to_string(format!("/proc/{}/status", lb.pid())).unwrap();
    let caps = status.lines().find(|l| l.starts_with("CapEff:")).unwrap();
    // CAP_NET_ADMIN (12), CAP_PERFMON (38), CAP_BPF (39), nothing else.
    assert_eq!(caps.split_whitespace().nth(1), Some("000000c000001000"));
    balanced(&ns, "127.0.0.1:9875", &backend, 10, 100);
    assert!(lb.alive());
    let status = lb.stop(Signal::SIGTERM);
    assert!(status.success(), "{status:?}");
    assert_eq!(ns.xdp_on("lo"), "");
}

/// A veth with MTU 9000 refuses native XDP for a program without
/// multi-buffer support (ERANGE). `auto` falls back to generic mode and says
/// why; `native` fails with one line naming the MTU.
#[test]
fn jumbo_mtu_falls_back_to_generic() {
    let client = Netns::new("jumboc");
    let lbns = Netns::new("jumbob");
    veth_pair(&client, &lbns);
    client.ip(&["link", "set", "veth-a", "mtu", "9000"]);
    lbns.ip(&["link", "set", "veth-b", "mtu", "9000"]);
    resolve_neighbour(&client, "198.18.0.2");

    let (code, _, stderr) = udplb_cmd(&lbns, &["--xdp-mode", "native", "veth-b", "9875=9876"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("MTU 9000"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert_eq!(lbns.xdp_on("veth-b"), "");

    let backend = lbns.udp_bind("0.0.0.0:9876");
    big_rcvbuf(&backend);
    let lb = Udplb::start(&lbns, &["--xdp-mode", "auto", "veth-b", "9875=9876"]);
    let attached = lb
        .output
        .iter()
        .find(|l| l.contains("attached to"))
        .unwrap();
    assert!(attached.contains("generic XDP"), "{:?}", lb.output);
    assert!(
        lb.output
            .iter()
            .any(|l| l.contains("MTU 9000") && l.contains("generic")),
        "no line saying why: {:?}",
        lb.output
    );
    balanced(&client, "198.18.0.2:9875", &backend, 20, 8000);
    let (status, out) = lb.stop(Signal::SIGTERM);
    assert!(status.success(), "{out}");
}

/// Sends one datagram from `client` to `to`; the backend socket answers it;
/// returns the port the reply came from, as the client sees it.
fn reply_port(client: &std::net::UdpSocket, to: &str, backend: &std::net::UdpSocket) -> u16 {
    client.send_to(b"ping", to).expect("send");
    let mut buf = [0u8; 64];
    let (_, from) = backend
        .recv_from(&mut buf)
        .expect("datagram at the backend");
    backend.send_to(b"pong", from).expect("reply");
    let (_, from) = client.recv_from(&mut buf).expect("reply at the client");
    from.port()
}

/// A client namespace and a balancer namespace joined by a veth whose
/// balancer end has a name of its own (pins are by interface name), a
/// backend socket on 9876, a client socket, and the pins removed at the end.
struct Pinnable {
    client_ns: Netns,
    lbns: Netns,
    dev: String,
    _unpin: Unpin,
    backend: std::net::UdpSocket,
    client: std::net::UdpSocket,
}

impl Pinnable {
    fn new(client_tag: &str, lb_tag: &str, dev_prefix: &str) -> Pinnable {
        let client_ns = Netns::new(client_tag);
        let lbns = Netns::new(lb_tag);
        veth_pair(&client_ns, &lbns);
        let dev = unique_dev(dev_prefix);
        lbns.ip(&["link", "set", "veth-b", "down"]);
        lbns.ip(&["link", "set", "veth-b", "name", &dev]);
        lbns.ip(&["link", "set", &dev, "up"]);
        resolve_neighbour(&client_ns, "198.18.0.2");
        let _unpin = Unpin(vec![dev.clone()]);
        let backend = lbns.udp_bind("0.0.0.0:9876");
        let client = client_ns.udp_bind("0.0.0.0:0");
        Pinnable {
            client_ns,
            lbns,
            dev,
            _unpin,
            backend,
            client,
        }
    }
}

/// `--force` replaces both programs of the udplb it replaces: the old
/// instance's egress program (tcx) must not go on rewriting replies to its
/// frontend, whether that instance still runs or left its links pinned.
#[test]
fn force_replaces_the_egress_program_too() {
    let Pinnable {
        client_ns: _client_ns,
        lbns,
        dev,
        _unpin,
        backend,
        client,
    } = Pinnable::new("forcec", "forceb", "ufrc");

    // A running first instance.
    let first = Udplb::start(&lbns, &[&dev, "9875=9876"]);
    assert_eq!(reply_port(&client, "198.18.0.2:9875", &backend), 9875);
    let second = Udplb::start(&lbns, &["--force", &dev, "9999=9876"]);
    assert_eq!(
        reply_port(&client, "198.18.0.2:9999", &backend),
        9999,
        "the replaced instance's egress program still rewrites replies"
    );
    let (status, out) = second.stop(Signal::SIGTERM);
    assert!(status.success(), "{out}");
    let (status, out) = first.stop(Signal::SIGTERM);
    assert!(status.success(), "{out}");

    // A pinned first instance that has exited.
    let first = Udplb::start(&lbns, &["--pin", &dev, "9875=9876"]);
    let (status, out) = first.stop(Signal::SIGTERM);
    assert!(status.success() && out.contains("left attached"), "{out}");
    assert_eq!(reply_port(&client, "198.18.0.2:9875", &backend), 9875);
    let second = Udplb::start(&lbns, &["--force", &dev, "9999=9876"]);
    assert_eq!(reply_port(&client, "198.18.0.2:9999", &backend), 9999);
    let (status, out) = second.stop(Signal::SIGTERM);
    assert!(status.success(), "{out}");
    // Nothing of either instance is left: a reply straight from the backend
    // keeps its own port.
    assert_eq!(lbns.xdp_on(&dev), "");
    assert_eq!(reply_port(&client, "198.18.0.2:9876", &backend), 9876);
}

/// `--unpin` detaches both pinned programs, even while the udplb that
/// pinned them still runs.
#[test]
fn unpin_detaches_both_programs() {
    let Pinnable {
        client_ns: _client_ns,
        lbns,
        dev,
        _unpin,
        backend,
        client,
    } = Pinnable::new("unpinc", "unpinb", "uunp");

    let mut lb = Udplb::start(&lbns, &["--pin", &dev, "9875=9876"]);
    // The frontend lines come once everything is pinned.
    lb.wait_for("9875 -> 9876", Duration::from_secs(5));
    assert_eq!(reply_port(&client, "198.18.0.2:9875", &backend), 9875);
    let out = Command::new(BIN).args(["--unpin", &dev]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(lbns.xdp_on(&dev), "", "XDP left after --unpin");
    assert_eq!(
        reply_port(&client, "198.18.0.2:9876", &backend),
        9876,
        "the egress program is still attached after --unpin"
    );
    let (status, out) = lb.stop(Signal::SIGTERM);
    assert!(status.success(), "{out}");
}

/// `udplb --stats 1 ... | head -3`: stdout is a pipe whose reader goes away
/// after three lines. Nothing udplb prints may stop it: it keeps balancing,
/// a SIGHUP afterwards does not kill it, and SIGTERM still exits 0.
#[test]
fn closed_stdout_does_not_stop_the_balancer() {
    let ns = Netns::new("pipe");
    let backend = ns.udp_bind("127.0.0.1:9876");
    let cmd = udplb_command(&ns, &[], &["--stats", "1", "lo", "9875=9876"]);
    let mut lb = Spawned::new(cmd);
    // Like head -3: three lines (attached, the frontend, the first
    // counters), then the reader closes.
    let (lines, reader) = lb.read_until("attached to lo");
    let mut lines = lines;
    let mut reader = reader;
    while lines.len() < 3 {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "{lines:?}");
        lines.push(line);
    }
    drop(reader);
    // Two more --stats ticks write into the closed pipe: one failed write
    // each (EPIPE ends the line's write_all).
    let before = lb.output_writes();
    let deadline = Instant::now() + Duration::from_secs(10);
    while lb.alive() && lb.output_writes() < before + 2 {
        assert!(Instant::now() < deadline, "no --stats tick within 10 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        lb.alive(),
        "udplb died writing to a closed pipe: {:?}",
        lb.stderr_now()
    );
    balanced(&ns, "127.0.0.1:9875", &backend, 10, 100);

    // SIGHUP is answered (on stderr, still open) and survived.
    nix::sys::signal::kill(lb.pid(), Signal::SIGHUP).unwrap();
    lb.wait_stderr("udplb: reload ignored: started without --config");
    assert!(lb.alive(), "udplb died after SIGHUP: {:?}", lb.stderr_now());
    balanced(&ns, "127.0.0.1:9875", &backend, 10, 100);

    let status = lb.stop(Signal::SIGTERM);
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert_eq!(ns.xdp_on("lo"), "");
}
