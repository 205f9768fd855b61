//! Nothing a client does can hold the daemon's event loop: slow /metrics
//! readers by the hundred, a flood of idle connections, a stdout nobody
//! reads. Under each, health checks keep their timing (a killed backend is
//! down within interval × fall + one interval, no live backend goes
//! down), `udplb status` answers at once, and an announced address stays.
//! Every attack comes from inside the test's own namespace, over its lo,
//! bounded in count and time; the figures are printed.

use udplb_testkit as support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn};
use support::netns::*;
use support::process::*;
use support::servers::Echo;

/// The tests here load the machine on purpose: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const METRICS: &str = "127.0.0.1:9100";

/// How long one `udplb status` takes, client process included.
fn status_time(ns: &Netns) -> Duration {
    let t = Instant::now();
    let (code, _, err) = support::operate::udplb_cmd(ns, &["status", "--json"]);
    assert_eq!(code, 0, "udplb status: {err}");
    t.elapsed()
}

/// An echo backend on each port; `None` once stopped.
fn echoes(ns: &Netns, ports: &[u16]) -> Vec<Option<Echo>> {
    (ports.iter())
        .map(|p| Some(Echo::named(ns, &format!("0.0.0.0:{p}"), "b")))
        .collect()
}

/// Waits until every backend of the first frontend is up.
fn all_up(ns: &Netns) {
    let t = Instant::now();
    loop {
        let s = support::operate::status(ns);
        let backends = s["frontends"][0]["backends"].as_array().unwrap().clone();
        if backends.iter().all(|b| b["health"]["state"] == "up") {
            return;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "not all up: {s}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// A TCP connection to /metrics with a receive buffer of a few KB: what
/// it asked for piles up on the balancer's side.
fn slow_reader(to: SocketAddr) -> Option<TcpStream> {
    let fd = socket::socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .ok()?;
    socket::setsockopt(&fd, sockopt::RcvBuf, &1024).ok()?;
    let SocketAddr::V4(v4) = to else { return None };
    socket::connect(fd.as_raw_fd(), &SockaddrIn::from(v4)).ok()?;
    let mut s = TcpStream::from(fd);
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .ok()?;
    Some(s)
}

/// The attack, from a thread in `ns`: 200 slow readers and 1000 idle
/// connections at once, then 20 more slow readers every 250 ms until
/// `until`. Returns how many connections it made.
fn flood(ns: &Netns, until: Instant) -> usize {
    let to: SocketAddr = METRICS.parse().unwrap();
    ns.enter(|| {
        let mut held: Vec<TcpStream> = Vec::new();
        let mut made = 0;
        for _ in 0..200 {
            held.extend(slow_reader(to));
            made += 1;
        }
        for _ in 0..1000 {
            held.extend(TcpStream::connect(to).ok());
            made += 1;
        }
        while Instant::now() < until && made < 5000 {
            std::thread::sleep(Duration::from_millis(250));
            for _ in 0..20 {
                held.extend(slow_reader(to));
                made += 1;
            }
        }
        made
    })
}

/// Raises this process's open-file limit for the flood's connections.
fn room_for_connections() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard.min(65536), hard.min(65536)).unwrap();
}

fn config(backends: &[u16]) -> String {
    let list: Vec<String> = backends.iter().map(|p| p.to_string()).collect();
    format!(
        r#"
interface = "lo"
metrics = "{METRICS}"
[[frontend]]
listen = "9875"
backends = [{}]
[frontend.health]
check = "udp"
payload = "ping"
interval = "300ms"
timeout = "200ms"
rise = 2
fall = 3
sockets = false
"#,
        list.join(", ")
    )
}

/// Probes under 200 slow /metrics readers and 1000 connections: a killed
/// backend goes down in its usual time, no live one does, `udplb status`
/// answers within 100 ms.
#[test]
fn slow_metrics_readers_hold_nothing() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    room_for_connections();
    let ns = Netns::new("stall");
    // 48 backends: a /metrics answer of tens of KB, more than a socket
    // buffer takes from a reader that does not read.
    let ports: Vec<u16> = (9001..9049).collect();
    let mut echoes = echoes(&ns, &ports);
    let file = TempFile::new("lb.toml", &config(&ports));
    let mut u = Udplb::start(&ns, &["--config", file.path()]);
    all_up(&ns);
    let (_, _, body) = support::operate::http_get(&ns, "/metrics");
    assert!(body.len() > 20_000, "a /metrics of {} B", body.len());
    let quiet: Vec<Duration> = (0..5).map(|_| status_time(&ns)).collect();

    let attack = Instant::now() + Duration::from_secs(6);
    let made = std::thread::scope(|s| {
        let flood = s.spawn(|| flood(&ns, attack));
        std::thread::sleep(Duration::from_millis(1500));
        let under: Vec<Duration> = (0..5).map(|_| status_time(&ns)).collect();
        let killed = Instant::now();
        echoes[0] = None; // 9001 stops answering
        u.wait_for("9001 down", Duration::from_secs(5));
        let down_after = killed.elapsed();
        let made = flood.join().unwrap();
        eprintln!(
            "{made} connections: udplb status {:?} quiet, {:?} under attack (medians); \
             killed backend down after {down_after:?} (usual: 300 ms x 3 + 300 ms)",
            median(quiet.clone()),
            median(under.clone())
        );
        assert!(
            median(under.clone()) < Duration::from_millis(100),
            "{under:?}"
        );
        assert!(
            under.iter().all(|t| *t < Duration::from_secs(1)),
            "{under:?}"
        );
        // interval × fall + one interval, and a margin for a loaded machine
        // far below the seconds a held loop took.
        assert!(down_after < Duration::from_millis(2200), "{down_after:?}");
        made
    });
    assert!(made >= 1200, "{made}");
    let (status, out) = u.stop(Signal::SIGTERM);
    assert!(status.success(), "{out}");
    let downs: Vec<&str> = (out.lines())
        .filter(|l| l.starts_with("udplb: ") && l.contains(" down: "))
        .collect();
    assert_eq!(downs.len(), 1, "a live backend went down: {downs:?}");
    assert!(downs[0].contains("9001 down"), "{downs:?}");
    drop(echoes);
}

/// An announced address over probed local backends stays while /metrics
/// is flooded, and a backend that stops answering goes down in its usual
/// time.
#[test]
fn an_announced_address_stays_under_a_metrics_flood() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    room_for_connections();
    let ns = Netns::new("stalla");
    let ports: Vec<u16> = (5301..5341).collect();
    let mut echoes = echoes(&ns, &ports);
    // The config of the other test with an announced address: the
    // backends are probed, so a held loop would fail them all and withdraw
    // the address; the shortest lease (2 s) would let it expire too.
    let text = config(&ports)
        .replace("listen = \"9875\"", "listen = \"198.18.100.1:53\"")
        .replace(
            "[[frontend]]",
            "announce_interface = \"lo\"\nannounce_grace = \"0s\"\nannounce_lease = \"2s\"\n[[frontend]]",
        );
    let file = TempFile::new("lb.toml", &text);
    let mut u = Udplb::start(&ns, &["--config", file.path()]);
    let announced = || {
        ns.ip(&["-4", "addr", "show", "dev", "lo"])
            .contains("198.18.100.1/32")
    };
    let t = Instant::now();
    while !announced() && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(announced(), "never announced: {}", u.output.join("\n"));
    let attack = Instant::now() + Duration::from_secs(5);
    std::thread::scope(|s| {
        let flood = s.spawn(|| flood(&ns, attack));
        let mut checks = 0;
        while Instant::now() < attack {
            assert!(announced(), "withdrawn under the flood");
            checks += 1;
            std::thread::sleep(Duration::from_millis(100));
        }
        let killed = Instant::now();
        echoes[0] = None; // 5301 stops answering
        u.wait_for("5301 down", Duration::from_secs(5));
        let down_after = killed.elapsed();
        eprintln!("address present in {checks} checks; a killed backend down after {down_after:?}");
        assert!(down_after < Duration::from_millis(2200), "{down_after:?}");
        assert!(flood.join().unwrap() >= 1200);
    });
    assert!(announced());
    let (status, out) = u.stop(Signal::SIGTERM);
    assert!(status.success(), "{out}");
    let withdrawn: Vec<&str> = out.lines().filter(|l| l.contains("withdr")).collect();
    assert_eq!(
        withdrawn,
        ["udplb: withdrew 198.18.100.1 from lo: stopping"],
        "withdrawn before the stop: {out}"
    );
    drop(echoes);
}

/// A udplb this test started, killed (by its own PID, while it is still
/// this test's child) if the test fails before it stops it.
struct Stopped(std::process::Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// `udplb --stats 1 ... | sleep 40`: a stdout pipe nobody reads. udplb goes
/// on (status answers, a closed backend socket is seen) and SIGTERM ends
/// it within seconds.
#[test]
fn an_unread_stdout_holds_nothing() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let ns = Netns::new("stallo");
    let ports: Vec<u16> = (9001..9041).collect();
    let mut echoes = echoes(&ns, &ports);
    let spec = format!(
        "9875={}",
        ports
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(",")
    );
    let mut child = Stopped(
        support::operate::udplb_command(&ns, &[], &["--stats", "1", "lo", &spec])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn udplb"),
    );
    let child = &mut child.0;
    let stdout = child.stdout.take().unwrap();
    // The smallest pipe there is: one page. Each --stats report (a line a
    // backend) is bigger.
    let fd: OwnedFd = nix::unistd::dup(&stdout).unwrap();
    nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_SETPIPE_SZ(4096)).unwrap();
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    let t = Instant::now();
    while !line.contains("attached to") {
        line.clear();
        assert!(
            reader.read_line(&mut line).unwrap() > 0
                && t.elapsed() < support::slow(Duration::from_secs(20)),
            "udplb did not attach"
        );
    }
    // From here nothing reads: three reports fill the pipe many times.
    std::thread::sleep(Duration::from_secs(3));
    let took = status_time(&ns);
    echoes[0] = None;
    let t = Instant::now();
    let down = loop {
        let s = support::operate::status(&ns);
        let b = &s["frontends"][0]["backends"][0];
        if b["health"]["state"] == "down" {
            break true;
        }
        if t.elapsed() > Duration::from_secs(5) {
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, Signal::SIGTERM).unwrap();
    let t = Instant::now();
    let exited = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if t.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    eprintln!(
        "stdout unread: status in {took:?}, exit {:?} after {:?}",
        exited,
        t.elapsed()
    );
    assert!(took < Duration::from_secs(1), "udplb status took {took:?}");
    assert!(down, "a closed backend socket was never seen");
    assert!(
        exited.is_some_and(|s| s.success()),
        "SIGTERM did not end it: {exited:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let mut rest = String::new();
    let _ = reader.read_to_string(&mut rest);
    drop((fd, echoes));
}
