//! Idle /metrics connections must not take live backends down (found by
//! the independent review of the control plane).
//!
//! udplb started under systemd's default open-file limit (soft 1024: the
//! unit sets none) with 940 local backends and a `udp` check: all probes of
//! an interval go out together, one socket each. Anyone who can reach the
//! metrics port can hold its 64 client slots with idle connections: with
//! the soft limit as it came, 64 descriptors fewer made the last probes of
//! each round fail with "too many open files" and their live backends go
//! down. udplb raises its soft limit to the hard one at start.

use udplb_testkit as support;

use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use nix::sys::signal::Signal;
use support::netns::*;
use support::process::*;

const METRICS: &str = "127.0.0.1:9100";
const FIRST: u16 = 20000;
const BACKENDS: u16 = 940;
/// systemd's DefaultLimitNOFILE soft limit, which scripts/udplb.service
/// keeps.
const SYSTEMD_SOFT_NOFILE: u64 = 1024;

fn config() -> String {
    let ports: Vec<String> = (FIRST..FIRST + BACKENDS).map(|p| p.to_string()).collect();
    format!(
        r#"interface = "lo"
metrics = "{METRICS}"
[[frontend]]
listen = "9875"
backends = [{}]
[frontend.health]
check = "udp"
payload = "ping"
expect = "pong"
"#,
        ports.join(", ")
    )
}

/// Every backend, answering "pong" to each "ping" until `stop` (at most
/// 60 s), from one thread.
fn backends(ns: &Netns, stop: Arc<AtomicBool>) -> JoinHandle<usize> {
    let socks: Vec<UdpSocket> = ns.enter(|| {
        (FIRST..FIRST + BACKENDS)
            .map(|p| {
                let s = UdpSocket::bind(("127.0.0.1", p)).unwrap();
                s.set_nonblocking(true).unwrap();
                s
            })
            .collect()
    });
    std::thread::spawn(move || {
        let (mut answered, mut buf) = (0, [0u8; 64]);
        let end = Instant::now() + Duration::from_secs(60);
        while !stop.load(Ordering::SeqCst) && Instant::now() < end {
            let mut fds: Vec<PollFd> = (socks.iter())
                .map(|s| PollFd::new(s.as_fd(), PollFlags::POLLIN))
                .collect();
            let _ = poll(&mut fds, PollTimeout::from(50u8));
            let ready: Vec<bool> = (fds.iter())
                .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                .collect();
            for (s, _) in socks.iter().zip(ready).filter(|(_, r)| *r) {
                while let Ok((n, from)) = s.recv_from(&mut buf) {
                    if &buf[..n] == b"ping" {
                        answered += usize::from(s.send_to(b"pong", from).is_ok());
                    }
                }
            }
        }
        answered
    })
}

/// udplb started with systemd's soft open-file limit (the child inherits
/// it; this process gets its own back at once).
fn start_as_a_service(ns: &Netns, args: &[&str]) -> Udplb {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, SYSTEMD_SOFT_NOFILE, hard).unwrap();
    let u = std::panic::catch_unwind(|| Udplb::start(ns, args));
    setrlimit(Resource::RLIMIT_NOFILE, soft, hard).unwrap();
    u.unwrap_or_else(|e| std::panic::resume_unwind(e))
}

#[test]
fn idle_metrics_connections_take_no_backend_down() {
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard.min(65536), hard.min(65536)).unwrap();
    let ns = Netns::new("fdb");
    let stop = Arc::new(AtomicBool::new(false));
    let answering = backends(&ns, stop.clone());
    let file = TempFile::new("lb.toml", &config());
    let mut u = start_as_a_service(&ns, &["--config", file.path()]);
    // Three intervals of probes with every slot free: nothing goes down.
    u.watch(Duration::from_secs(3));
    let calm = u.output.iter().filter(|l| l.contains(" down: ")).count();
    assert_eq!(calm, 0, "down without any client:\n{}", u.output.join("\n"));

    // 64 idle connections, as many as the metrics slots, for four
    // intervals (fall 3).
    let to: SocketAddr = METRICS.parse().unwrap();
    let idle: Vec<TcpStream> = ns.enter(|| {
        (0..64)
            .filter_map(|_| TcpStream::connect(to).ok())
            .collect()
    });
    assert_eq!(idle.len(), 64);
    u.watch(Duration::from_secs(4));
    drop(idle);
    stop.store(true, Ordering::SeqCst);
    let (_, out) = u.stop(Signal::SIGTERM);
    assert!(answering.join().unwrap() >= usize::from(BACKENDS) * 3);
    let down: Vec<&str> = out.lines().filter(|l| l.contains(" down: ")).collect();
    assert!(
        down.is_empty(),
        "{} live backends down under 64 idle /metrics connections, e.g. {:?}; {:?}",
        down.len(),
        down.first(),
        out.lines().find(|l| l.contains("Too many open files"))
    );
}
