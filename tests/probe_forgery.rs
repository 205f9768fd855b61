//! Probes wait for the right answer (issue 22, item 4). Datagrams with the
//! frontend's own address and port as their source (which is how a local
//! backend's answer looks once udplb rewrites it on lo) are sprayed at
//! every ephemeral port of the balancer's namespace, where the `udp`
//! probes' sockets are: a wrong answer ("xxxx", sent on the balancer
//! itself, where that source is real) must not take a live backend down,
//! and the expected answer ("pong", forged from the client's side of the
//! wire) must not keep a dead backend up. IPv4 and IPv6, with and without
//! net.ipv4.conf.all.accept_local=1, which lets such IPv4 forgeries past
//! the kernel's martian check (IPv6 has no such check).
//!
//! Before the fix, a probe whose socket held only wrong answers when it was
//! drained failed at once ("udp probes answered without the expected
//! prefix"), and a forged right answer from the wire counted.

use udplb_testkit as support;

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::netns::*;
use support::process::*;
use support::sockets::{forged_socket, resolve_neighbour};

/// The balancer's ephemeral ports (where bind to port 0 picks the probes'
/// ports), narrowed so that one round of the spray covers them all in a
/// few milliseconds.
const PORT_RANGE: &str = "40000 40199";

/// How long a live backend takes to answer: the spray has that long to
/// reach the probe's socket first.
const ANSWER_DELAY: Duration = Duration::from_millis(60);

/// A frontend on the balancer's veth address with two local backends: one
/// that answers, one that is bound but never answers (hung).
struct Family {
    frontend: SocketAddr,
    live: u16,
    dead: u16,
}

impl Family {
    /// The start of a transition line: "198.18.0.2:9875 -> 9877 down".
    fn line(&self, backend: u16, state: &str) -> String {
        format!("{} -> {backend} {state}", self.frontend)
    }
}

fn families() -> [Family; 2] {
    [
        Family {
            frontend: "198.18.0.2:9875".parse().unwrap(),
            live: 9876,
            dead: 9877,
        },
        Family {
            frontend: "[2001:2::2]:9885".parse().unwrap(),
            live: 9886,
            dead: 9887,
        },
    ]
}

fn config(families: &[Family]) -> String {
    let mut text = "interface = \"veth-b,lo\"\n".to_string();
    for f in families {
        text += &format!(
            r#"[[frontend]]
listen = "{}"
backends = [{}, {}]
[frontend.health]
check = "udp"
payload = "ping"
expect = "pong"
interval = "300ms"
timeout = "250ms"
rise = 2
fall = 2
sockets = false
"#,
            f.frontend, f.live, f.dead
        );
    }
    text
}

/// A local backend on `addr` in `ns`: answers each "ping" with "pong"
/// [`ANSWER_DELAY`] later while `on` is set, until `stop` (at most 60 s);
/// returns how many it answered.
fn backend(
    ns: &Netns,
    addr: SocketAddr,
    on: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> JoinHandle<usize> {
    let s = ns.udp_bind(&addr.to_string());
    s.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
    std::thread::spawn(move || {
        let mut due = VecDeque::new();
        let (mut answered, mut buf) = (0, [0u8; 64]);
        let end = Instant::now() + Duration::from_secs(60);
        while !stop.load(Ordering::SeqCst) && Instant::now() < end {
            if let Ok((n, from)) = s.recv_from(&mut buf) {
                if &buf[..n] == b"ping" && on.load(Ordering::SeqCst) {
                    due.push_back((Instant::now() + ANSWER_DELAY, from));
                }
            }
            while let Some(&(at, to)) = due.front() {
                if at > Instant::now() {
                    break;
                }
                due.pop_front();
                answered += usize::from(s.send_to(b"pong", to).is_ok());
            }
        }
        answered
    })
}

/// From `ns`: `payload` to every port of `ports` on each address of
/// `to`, from its source (bound even where not local: a forgery), one
/// round every 20 ms until `stop` (at most 10 s). Returns the rounds sent.
fn spray(
    ns: &Netns,
    to: &[(SocketAddr, IpAddr)],
    ports: (u16, u16),
    payload: &'static [u8],
    stop: Arc<AtomicBool>,
) -> JoinHandle<u32> {
    let socks: Vec<_> = ns.enter(|| {
        (to.iter())
            .map(|&(from, to)| (forged_socket(from), to))
            .collect()
    });
    std::thread::spawn(move || {
        let end = Instant::now() + Duration::from_secs(10);
        let mut rounds = 0;
        while !stop.load(Ordering::SeqCst) && Instant::now() < end {
            for (s, ip) in &socks {
                for port in ports.0..=ports.1 {
                    let _ = s.send_to(payload, SocketAddr::new(*ip, port));
                }
            }
            rounds += 1;
            std::thread::sleep(Duration::from_millis(20));
        }
        rounds
    })
}

/// Under a spray of `payload` from `ns` to `to`: each dead backend goes
/// down (again), and its line counts ignored answers if `reaches` (the
/// spray reaches the probes' sockets); then five more intervals pass under
/// the spray. Returns what udplb printed meanwhile and the rounds sent.
fn under_spray(
    u: &mut Udplb,
    families: &[Family],
    (ns, to, ports): (&Netns, &[(SocketAddr, IpAddr)], (u16, u16)),
    payload: &'static [u8],
    reaches: bool,
) -> (Vec<String>, u32) {
    let stop = Arc::new(AtomicBool::new(false));
    let spraying = spray(ns, to, ports, payload, stop.clone());
    for f in families {
        let line = u.wait_for(&f.line(f.dead, "down"), Duration::from_secs(4));
        assert!(line.contains("udp probes"), "{line}");
        assert_eq!(
            line.contains(" ignored; last: "),
            reaches,
            "{:?}: {line}",
            String::from_utf8_lossy(payload)
        );
    }
    // Long enough for 20 rounds of spray, on a slow machine too.
    u.watch(support::slow(Duration::from_millis(1500)));
    stop.store(true, Ordering::SeqCst);
    let rounds = spraying.join().unwrap();
    assert!(rounds >= 20, "only {rounds} rounds of spray");
    (std::mem::take(&mut u.output), rounds)
}

fn probes_wait_for_the_right_answer(accept_local: bool) {
    let (client, lb) = (Netns::new("pfc"), Netns::new("pfl"));
    veth_pair(&client, &lb);
    lb.exec(&[
        "sysctl",
        "-qw",
        &format!("net.ipv4.ip_local_port_range={PORT_RANGE}"),
        &format!("net.ipv4.conf.all.accept_local={}", u8::from(accept_local)),
    ]);
    let range = lb.exec(&["cat", "/proc/sys/net/ipv4/ip_local_port_range"]);
    let range: Vec<u16> = (range.split_whitespace())
        .map(|p| p.parse().unwrap())
        .collect();
    let ports = (range[0], range[1]);
    let families = families();
    for f in &families {
        resolve_neighbour(&client, &f.frontend.ip().to_string());
    }
    let stop = Arc::new(AtomicBool::new(false));
    let dead_answers = Arc::new(AtomicBool::new(false));
    let at = |f: &Family, port| SocketAddr::new(f.frontend.ip(), port);
    let live: Vec<_> = (families.iter())
        .map(|f| {
            let on = Arc::new(AtomicBool::new(true));
            backend(&lb, at(f, f.live), on, stop.clone())
        })
        .collect();
    let dead: Vec<_> = (families.iter())
        .map(|f| backend(&lb, at(f, f.dead), dead_answers.clone(), stop.clone()))
        .collect();
    let file = TempFile::new("lb.toml", &config(&families));
    let mut u = Udplb::start(&lb, &["--config", file.path()]);
    let mut log = std::mem::take(&mut u.output);

    // Wrong answers from the frontend's address and port, sent on the
    // balancer to every ephemeral port of both loopback addresses (where a
    // local backend's probe is): ignored, the live backends stay up.
    let local_spray: Vec<_> = (families.iter())
        .map(|f| match f.frontend {
            SocketAddr::V4(_) => (f.frontend, IpAddr::from(Ipv4Addr::LOCALHOST)),
            SocketAddr::V6(_) => (f.frontend, IpAddr::from(Ipv6Addr::LOCALHOST)),
        })
        .collect();
    let (lines, _) = under_spray(&mut u, &families, (&lb, &local_spray, ports), b"xxxx", true);
    log.extend(lines);

    // The dead backends answer for a while: up again.
    dead_answers.store(true, Ordering::SeqCst);
    for f in &families {
        let line = format!("{}: 2 udp probes answered", f.line(f.dead, "up"));
        u.wait_for(&line, Duration::from_secs(4));
    }
    dead_answers.store(false, Ordering::SeqCst);
    log.extend(std::mem::take(&mut u.output));

    // Right answers forged from the wire, to every ephemeral port of the
    // frontends' addresses: the dead backends go down all the same and
    // stay down. The balancer's stack did get them (no socket there:
    // NoPorts), the IPv4 ones only with accept_local (loose bounds: a busy
    // machine may drop some of a round on the veth).
    let wire_spray: Vec<_> = (families.iter())
        .map(|f| (f.frontend, f.frontend.ip()))
        .collect();
    let no_ports = || (lb.snmp("Udp", "NoPorts"), lb.snmp6("Udp6NoPorts"));
    let before = no_ports();
    let (forged, rounds) = under_spray(
        &mut u,
        &families,
        (&client, &wire_spray, ports),
        b"pong",
        false,
    );
    let after = no_ports();
    let sent = u64::from(rounds) * u64::from(ports.1 - ports.0 + 1);
    let (v4, v6) = (after.0 - before.0, after.1 - before.1);
    assert!(v6 >= sent / 10, "{v6} of {sent} IPv6 forgeries reached UDP");
    match accept_local {
        true => assert!(v4 >= sent / 10, "{v4} of {sent} IPv4 forgeries reached UDP"),
        false => assert!(v4 < sent / 100, "{v4} of {sent} IPv4 martians reached UDP"),
    }
    log.extend(forged.iter().cloned());

    let (_, out) = u.stop(Signal::SIGTERM);
    log.push(out);
    let log = log.join("\n");
    for f in &families {
        let live_down = f.line(f.live, "down");
        assert!(!log.contains(&live_down), "{live_down}:\n{log}");
        let dead_up = f.line(f.dead, "up");
        assert!(
            !forged.iter().any(|l| l.contains(&dead_up)),
            "{dead_up} under forged answers:\n{log}"
        );
    }
    stop.store(true, Ordering::SeqCst);
    for t in live {
        assert!(t.join().unwrap() >= 10, "the live backends answered probes");
    }
    for t in dead {
        t.join().unwrap();
    }
}

/// One after the other, not as two tests the harness would run at once:
/// two sprays together on a small shared machine would only add noise.
#[test]
fn sprayed_wrong_or_forged_answers_move_no_backend() {
    for accept_local in [true, false] {
        probes_wait_for_the_right_answer(accept_local);
    }
}
