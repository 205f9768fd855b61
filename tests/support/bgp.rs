//! BGP in namespaces: BIRD 2 processes started from the configurations the
//! README shows (scripts/bird/, the one source), UDP echo backends
//! ([`super::servers::Echo`]) that say which backend answered, and the
//! topology of tests/bgp.rs:
//!
//!   client (198.18.0.1) -- router (BIRD, ECMP) == lb0, lb1 (udplb + BIRD)
//!     -- backend LAN (a bridge) -- srv0, srv1, srv2 (echo servers)
//!
//! lb<i> reaches the router over 198.18.<3+i>.0/24 and the LAN as
//! 198.18.10.<1+i>; the backends are 198.18.10.11-13 and send their
//! replies through lb1 (either balancer translates them). No route leaves
//! the namespaces.

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::netns::Netns;
use super::process::TempFile;
use super::servers::Echo;
use super::topology::{forwarding, link, route, End};

/// The BIRD configurations the README includes verbatim.
pub const BALANCER_CONF: &str = include_str!("../../scripts/bird/balancer.conf");
pub const ROUTER_CONF: &str = include_str!("../../scripts/bird/router.conf");

/// Balancer `i`'s BIRD configuration: the README's, with its own uplink
/// (balancer 0's is the README's own).
pub fn balancer_conf(i: usize) -> String {
    BALANCER_CONF.replace("198.18.3.", &format!("198.18.{}.", 3 + i))
}

/// A BIRD daemon in a namespace, in the foreground, with its own control
/// socket and pid file; stopped by its PID.
pub struct Bird {
    child: Child,
    pub socket: String,
    _conf: TempFile,
    _pid: TempFile,
}

impl Bird {
    pub fn start(ns: &Netns, conf: &str) -> Bird {
        let conf = TempFile::new("bird.conf", conf);
        let pid = TempFile::new("bird.pid", "");
        let socket = format!("{}.ctl", conf.path());
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", ns.name))
            .args([
                "bird",
                "-f",
                "-c",
                conf.path(),
                "-s",
                &socket,
                "-P",
                pid.path(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("starting bird (package bird2, scripts/install-deps.sh): {e}")
            });
        let bird = Bird {
            child,
            socket,
            _conf: conf,
            _pid: pid,
        };
        let deadline = Instant::now() + super::slow(Duration::from_secs(5));
        while bird.try_birdc("show status").is_err() {
            assert!(
                Instant::now() < deadline,
                "bird did not open its control socket"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        bird
    }

    fn try_birdc(&self, cmd: &str) -> Result<String, String> {
        let out = Command::new("birdc")
            .args(["-s", &self.socket])
            .args(cmd.split_whitespace())
            .output()
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        match out.status.success() && !text.contains("Unable to connect") {
            true => Ok(text),
            false => Err(text),
        }
    }

    /// `birdc -s SOCKET <cmd>`.
    pub fn birdc(&self, cmd: &str) -> String {
        self.try_birdc(cmd)
            .unwrap_or_else(|e| panic!("birdc {cmd}: {e}"))
    }
}

impl Drop for Bird {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + super::slow(Duration::from_secs(5));
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub const F1: &str = "198.18.100.1";
pub const F2: &str = "198.18.100.2";
/// Each balancer's uplink address: the next hop the router learns.
pub const HOPS: [&str; 2] = ["198.18.3.2", "198.18.4.2"];

pub struct Bgp {
    pub client: Netns,
    pub router: Netns,
    pub lbs: [Netns; 2],
    pub lan: Netns,
    pub srv: [Netns; 3],
    /// The router's BIRD, then each balancer's.
    pub birds: Vec<Bird>,
}

/// The topology above, with BIRD running on the router and both balancers
/// (no udplb yet, so nothing is announced).
pub fn topology(tag: &str) -> Bgp {
    let t = Bgp {
        client: Netns::new(&format!("{tag}c")),
        router: Netns::new(&format!("{tag}r")),
        lbs: [
            Netns::new(&format!("{tag}l0")),
            Netns::new(&format!("{tag}l1")),
        ],
        lan: Netns::new(&format!("{tag}n")),
        srv: [
            Netns::new(&format!("{tag}s0")),
            Netns::new(&format!("{tag}s1")),
            Netns::new(&format!("{tag}s2")),
        ],
        birds: Vec::new(),
    };
    link(
        End(&t.client, "c0", &["198.18.0.1/24"]),
        End(&t.router, "r0", &["198.18.0.2/24"]),
    );
    route(&t.client, &["198.18.100.0/24", "via", "198.18.0.2"]);
    t.lan.ip(&["link", "add", "br0", "type", "bridge"]);
    t.lan.ip(&["link", "set", "br0", "up"]);
    let mut ports = Vec::new();
    for (i, lb) in t.lbs.iter().enumerate() {
        let (r_dev, r_addr, lb_addr) = (
            format!("r{}", i + 1),
            format!("198.18.{}.1/24", i + 3),
            format!("{}/24", HOPS[i]),
        );
        link(
            End(&t.router, &r_dev, &[&r_addr]),
            End(lb, "up0", &[&lb_addr]),
        );
        let lan_dev = format!("p{i}");
        link(
            End(lb, "lan0", &[&format!("198.18.10.{}/24", i + 1)]),
            End(&t.lan, &lan_dev, &[]),
        );
        ports.push(lan_dev);
        route(lb, &["default", "via", &format!("198.18.{}.1", i + 3)]);
        forwarding(lb);
    }
    for (i, s) in t.srv.iter().enumerate() {
        let lan_dev = format!("p{}", i + 2);
        link(
            End(s, "s0", &[&format!("198.18.10.{}/24", i + 11)]),
            End(&t.lan, &lan_dev, &[]),
        );
        ports.push(lan_dev);
        route(s, &["default", "via", "198.18.10.2"]);
    }
    for p in &ports {
        t.lan.ip(&["link", "set", p, "master", "br0"]);
    }
    forwarding(&t.router);
    t.router
        .exec(&["sysctl", "-qw", "net.ipv4.fib_multipath_hash_policy=1"]);
    let mut birds = vec![Bird::start(&t.router, ROUTER_CONF)];
    for (i, lb) in t.lbs.iter().enumerate() {
        birds.push(Bird::start(lb, &balancer_conf(i)));
    }
    Bgp { birds, ..t }
}

/// The udplb configuration both balancers run: F1 over srv0 and srv1
/// (Maglev), F2 over srv2; tcp health checks every 100 ms.
pub fn udplb_conf(grace: &str, lease: u32) -> String {
    format!(
        r#"interface = "up0,lan0"
sched = "maglev"
announce_interface = "lo"
announce_grace = "{grace}"
announce_lease = {lease}

[[frontend]]
listen = "{F1}:53"
backends = ["198.18.10.11:5353", "198.18.10.12:5353"]
[frontend.health]
check = "tcp"
interval = "100ms"
rise = 1
fall = 2

[[frontend]]
listen = "{F2}:53"
backends = ["198.18.10.13:5353"]
[frontend.health]
check = "tcp"
interval = "100ms"
rise = 1
fall = 2
"#
    )
}

impl Bgp {
    /// The echo servers: srv<i> answers as `srv<i>`.
    pub fn echoes(&self) -> Vec<Echo> {
        (self.srv.iter().enumerate())
            .map(|(i, s)| Echo::named(s, &format!("198.18.10.{}:5353", i + 11), &format!("srv{i}")))
            .collect()
    }

    /// The router's next hops for `vip` now (empty: no route).
    pub fn next_hops(&self, vip: &str) -> Vec<String> {
        let out = self
            .router
            .ip(&["-4", "route", "show", &format!("{vip}/32")]);
        let mut hops: Vec<String> = out
            .split_whitespace()
            .collect::<Vec<_>>()
            .windows(2)
            .filter(|w| w[0] == "via")
            .map(|w| w[1].to_string())
            .collect();
        hops.sort();
        hops
    }

    /// Waits up to `timeout` for the router's next hops for `vip` to be
    /// `hops`; how long it took.
    pub fn wait_hops(&self, vip: &str, hops: &[&str], timeout: Duration) -> Duration {
        let t0 = Instant::now();
        loop {
            let now = self.next_hops(vip);
            if now == hops {
                return t0.elapsed();
            }
            assert!(
                t0.elapsed() < timeout,
                "router next hops for {vip}: {now:?}, expected {hops:?} within {timeout:?}\n{}\n{}",
                self.birds[0].birdc("show protocols"),
                self.birds[0].birdc("show route all"),
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// One datagram from each of `count` flows (source port 20000 + f) to
/// `vip`:53, in batches of sockets; the backend that answered each, read
/// from the reply, which must come from `vip`:53. Bounded: each batch
/// sends at most 3 times and waits at most 3 s.
pub fn flows(client: &Netns, vip: &str, count: u16) -> BTreeMap<u16, String> {
    let dst: SocketAddr = format!("{vip}:53").parse().unwrap();
    let mut seen = BTreeMap::new();
    for start in (0..count).step_by(200) {
        let batch: Vec<(u16, UdpSocket)> = (start..count.min(start + 200))
            .map(|f| (f, client.udp_bind(&format!("198.18.0.1:{}", 20000 + f))))
            .collect();
        let deadline = Instant::now() + super::slow(Duration::from_secs(3));
        let mut sends = 0;
        let mut buf = [0u8; 512];
        while batch.iter().any(|(f, _)| !seen.contains_key(f)) {
            assert!(
                Instant::now() < deadline,
                "no reply for some of flows {start}.."
            );
            if sends < 3 {
                for (f, s) in batch.iter().filter(|(f, _)| !seen.contains_key(f)) {
                    s.send_to(format!("flow {f}").as_bytes(), dst).unwrap();
                }
                sends += 1;
            }
            let t = Instant::now();
            while t.elapsed() < Duration::from_millis(300) {
                let mut got = false;
                for (f, s) in &batch {
                    s.set_nonblocking(true).unwrap();
                    while let Ok((n, from)) = s.recv_from(&mut buf) {
                        assert_eq!(from, dst, "flow {f}: a reply not from the frontend");
                        let text = String::from_utf8_lossy(&buf[..n]);
                        let (who, what) = text.split_once(' ').unwrap();
                        assert_eq!(what, format!("flow {f}"));
                        if let Some(before) = seen.insert(*f, who.to_string()) {
                            assert_eq!(before, who, "flow {f} answered by two backends");
                        }
                        got = true;
                    }
                }
                if !got && batch.iter().all(|(f, _)| seen.contains_key(f)) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
    seen
}

/// What a [`stream`] saw: datagrams sent, and the send times (since the
/// stream started) of those that got no reply.
pub struct Streamed {
    pub sent: usize,
    pub lost: Vec<Duration>,
    pub interval: Duration,
}

impl Streamed {
    /// From the first lost datagram to the last one, plus one interval
    /// (zero when none was lost).
    pub fn loss_window(&self) -> Duration {
        match (self.lost.first(), self.lost.last()) {
            (Some(a), Some(b)) => *b - *a + self.interval,
            _ => Duration::ZERO,
        }
    }
}

/// Sends one datagram every `interval` for `length`, over flows 20000..+k
/// in turn, to `vip`:53, and checks that each reply comes from the backend
/// `expect` says for its flow. Bounded: at most length / interval
/// datagrams, then 500 ms for the last replies.
pub fn stream(
    client: &Netns,
    vip: &str,
    expect: &BTreeMap<u16, String>,
    k: u16,
    interval: Duration,
    length: Duration,
) -> Streamed {
    let dst: SocketAddr = format!("{vip}:53").parse().unwrap();
    let socks: Vec<UdpSocket> = (0..k)
        .map(|f| {
            let s = client.udp_bind(&format!("198.18.0.1:{}", 20000 + f));
            s.set_nonblocking(true).unwrap();
            s
        })
        .collect();
    let t0 = Instant::now();
    let mut sent_at: Vec<Duration> = Vec::new();
    let mut answered: Vec<bool> = Vec::new();
    let mut buf = [0u8; 512];
    let drain = |answered: &mut Vec<bool>, buf: &mut [u8]| {
        for (f, s) in socks.iter().enumerate() {
            while let Ok((n, from)) = s.recv_from(buf) {
                assert_eq!(from, dst);
                let text = String::from_utf8_lossy(&buf[..n]);
                let mut words = text.split(' ');
                let (who, seq) = (words.next().unwrap(), words.nth(1).unwrap());
                assert_eq!(who, expect[&(f as u16)], "flow {f} changed backend");
                answered[seq.parse::<usize>().unwrap()] = true;
            }
        }
    };
    while t0.elapsed() < length {
        let seq = sent_at.len();
        let f = seq % k as usize;
        sent_at.push(t0.elapsed());
        answered.push(false);
        let _ = socks[f].send_to(format!("seq {seq}").as_bytes(), dst);
        drain(&mut answered, &mut buf);
        let next = interval * (seq as u32 + 1);
        if let Some(wait) = next.checked_sub(t0.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    let end = Instant::now();
    while end.elapsed() < Duration::from_millis(500) {
        drain(&mut answered, &mut buf);
        std::thread::sleep(Duration::from_millis(5));
    }
    Streamed {
        sent: sent_at.len(),
        lost: (sent_at.iter().zip(&answered))
            .filter(|(_, a)| !**a)
            .map(|(t, _)| *t)
            .collect(),
        interval,
    }
}
