//! A local user without privileges must not keep a hung local backend up
//! (found by the independent review of the control plane).
//!
//! A local backend's `udp` probe accepts "pong" from the loopback address
//! on the frontend's port, because udplb rewrites the backend's answer on
//! lo to come from there. Nothing holds that port: the frontend is served
//! by XDP, not by a socket, so anyone on the host can bind it (>= 1024).
//! The probe's own port is random, but /proc/net/udp shows it to every
//! user. A thread that dropped root (per-thread credentials) binds
//! 127.0.0.1:FRONTEND_PORT, reads the probes' ports from /proc/net/udp and
//! answers each: a backend whose socket is bound but never answers (a hung
//! worker, what probes exist to catch) must stay down. udplb now holds
//! that address itself; the forger, refused, answers from what it can get.

use udplb_testkit as support;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::netns::*;
use support::process::*;

const FRONTEND: u16 = 9875;
const LIVE: u16 = 9876;
const HUNG: u16 = 9877;

fn config() -> String {
    format!(
        r#"interface = "lo"
[[frontend]]
listen = "{FRONTEND}"
backends = [{LIVE}, {HUNG}]
[frontend.health]
check = "udp"
payload = "ping"
expect = "pong"
interval = "300ms"
timeout = "250ms"
rise = 2
fall = 2
"#
    )
}

/// A backend that answers "pong" to each "ping" until `stop` (at most 60 s).
fn live_backend(ns: &Netns, stop: Arc<AtomicBool>) -> JoinHandle<usize> {
    let s = ns.udp_bind(&format!("127.0.0.1:{LIVE}"));
    s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    std::thread::spawn(move || {
        let (mut answered, mut buf) = (0, [0u8; 64]);
        let end = Instant::now() + Duration::from_secs(60);
        while !stop.load(Ordering::SeqCst) && Instant::now() < end {
            if let Ok((n, from)) = s.recv_from(&mut buf) {
                if &buf[..n] == b"ping" {
                    answered += usize::from(s.send_to(b"pong", from).is_ok());
                }
            }
        }
        answered
    })
}

/// The loopback ports of root's UDP sockets in this thread's namespace,
/// as any user reads them.
fn roots_loopback_ports() -> Vec<u16> {
    let table = std::fs::read_to_string("/proc/thread-self/net/udp").unwrap_or_default();
    (table.lines().skip(1))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (addr, port) = f.get(1)?.split_once(':')?;
            (addr == "0100007F" && f.get(7) == Some(&"0")).then_some(())?;
            u16::from_str_radix(port, 16).ok()
        })
        .filter(|&p| p != LIVE && p != HUNG)
        .collect()
}

/// The unprivileged forger, in `ns`, until `stop` (at most 10 s); returns
/// how many answers it sent, and whether it could bind the frontend's port
/// on loopback (else it sends from a port of its own).
fn forger(ns: &Netns, stop: Arc<AtomicBool>) -> JoinHandle<(usize, bool)> {
    let name = ns.name.clone();
    std::thread::spawn(move || {
        join_path(&format!("/run/netns/{name}")).unwrap();
        // Per-thread credentials (the raw syscall, not glibc's, which
        // would change every thread of the test): from here on this thread
        // is user nobody.
        let rc = unsafe { nix::libc::syscall(nix::libc::SYS_setresuid, 65534, 65534, 65534) };
        assert_eq!(rc, 0, "dropping root");
        let frontend = UdpSocket::bind((Ipv4Addr::LOCALHOST, FRONTEND));
        let bound = frontend.is_ok();
        let s = frontend
            .or_else(|_| UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)))
            .expect("bind as nobody");
        let mut sent = 0;
        let end = Instant::now() + Duration::from_secs(10);
        while !stop.load(Ordering::SeqCst) && Instant::now() < end {
            for port in roots_loopback_ports() {
                let to = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
                sent += usize::from(s.send_to(b"pong", to).is_ok());
            }
            std::thread::sleep(Duration::from_millis(3));
        }
        (sent, bound)
    })
}

#[test]
fn an_unprivileged_local_user_cannot_keep_a_hung_backend_up() {
    let ns = Netns::new("plf");
    let stop = Arc::new(AtomicBool::new(false));
    let live = live_backend(&ns, stop.clone());
    // Bound (the socket table says it is there), never answers.
    let _hung = ns.udp_bind(&format!("127.0.0.1:{HUNG}"));
    let file = TempFile::new("lb.toml", &config());
    let mut u = Udplb::start(&ns, &["--config", file.path()]);
    let down = format!("*:{FRONTEND} -> {HUNG} down");
    u.wait_for(&down, Duration::from_secs(5));

    let forging = forger(&ns, stop.clone());
    // Rise 2 at 300 ms: 3 s is five times what an up takes.
    u.watch(Duration::from_secs(3));
    stop.store(true, Ordering::SeqCst);
    let (sent, bound) = forging.join().unwrap();
    let (_, out) = u.stop(Signal::SIGTERM);
    assert!(
        live.join().unwrap() >= 5,
        "the live backend answered probes"
    );
    assert!(sent > 0, "the forger found no probe to answer");
    assert!(
        !bound,
        "an unprivileged user could bind 127.0.0.1:{FRONTEND}"
    );
    let up = format!("*:{FRONTEND} -> {HUNG} up");
    assert!(
        !out.contains(&up),
        "a hung backend brought up by {sent} forged answers from an unprivileged user:\n{out}"
    );
}
