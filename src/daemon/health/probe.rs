//! Active checks on the event loop: every probe is a non-blocking socket
//! whose readiness the loop waits for, with a deadline the loop's timer
//! brings; nothing here ever blocks. All probes due at one moment go out
//! together, so one interval's probes are all in flight at once.
//!
//! The probe exemption. udplb rewrites every datagram from a backend port
//! into one from its frontend: on `lo` the same XDP program sees the
//! backend's answer to a probe from this host, so a reply from
//! 127.0.0.1:5302 arrives as one from 127.0.0.1:53. A connected UDP socket
//! would drop it (the kernel matches a connected socket's peer port), and
//! a prober that insisted on the backend's port would declare every local
//! backend dead. So a `udp` or `dns` probe uses an *unconnected* socket of
//! its own, on an ephemeral port that nothing else uses. This needs nothing
//! from the datapath and holds on every hook (lo, veth, TC egress) and for
//! remote backends, whose replies to the balancer's own address are not
//! rewritten at all.
//!
//! What a probe accepts. Every datagram is a claim; the probe's socket
//! takes one as the answer only if it comes
//! - from the backend's address, on the backend's port or, for a local
//!   backend, the frontend's (a remote backend's answer to this host is
//!   not rewritten: its own port only), which udplb holds with a socket of
//!   its own so that no other local user can send from it ([`guarded`]);
//! - for a local backend, to the loopback address (127.0.0.1, ::1), to
//!   which its socket is bound: the backend's address is one of this
//!   host's, which a datagram from the wire can carry as a forged source
//!   (IPv6 lets it in, IPv4 where an operator set `accept_local=1`),
//!   but only this host can send to its loopback address (from the wire,
//!   Linux drops that as a martian destination, IPv4 unless
//!   `route_localnet=1`). The interface a datagram came in on would not
//!   tell: this host's own datagrams to an address of eth0 are reported
//!   as coming in on eth0 too;
//! - with the right content: the `expect` prefix, or a DNS response with
//!   the query's ID.
//!
//! Anything else is counted and ignored: the probe waits for the right
//! answer until its timeout, and fails only then ("timed out (2 wrong
//! answers ignored; last: ...)"). So a forged datagram cannot fail a probe,
//! and to pass one it must hit the probe's port, which the kernel picks at
//! random (bind to port 0: `udp_lib_get_port` starts at a random point of
//! `ip_local_port_range`), and a DNS query's ID, random too.
//!
//! Deadlines are judged on what a probe's socket holds, not on the loop's
//! punctuality: before [`Prober::run`] fails a probe for its timeout, it
//! reads the socket (or sees whether the connect completed). An answer
//! that came in while the loop was busy elsewhere counts, also one that
//! came a little after the deadline (without kernel timestamps the two
//! cannot be told apart; this errs in the backend's favour).

use std::collections::BTreeSet;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Instant;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    connect, getsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, SockaddrStorage,
};

use crate::config::{BackendConfig, Check, CheckKind, FrontendConfig, Listen};
use crate::plan::BackendId;

/// One backend to probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub frontend: Listen,
    pub backend: BackendId,
    /// Where the probe goes (a local backend: on this host's loopback, or
    /// the frontend's own address if it has one).
    pub addr: SocketAddr,
    /// A local backend's: the frontend's port, which its answer on lo
    /// has after the rewrite. A remote backend's answer to this host passes
    /// untranslated (reply_to_local), so its own port: accepting the
    /// frontend's would let a client forge answers from the backend's
    /// address that the reverse-path check never sees (no reply key).
    pub frontend_port: u16,
    /// A local backend (on this host): its udp and dns probes are sent
    /// from the loopback address (see the module comment); tcp and http
    /// connect from the source the kernel picks.
    pub local: bool,
    pub check: Check,
}

impl Target {
    /// The target of backend `b` of `fe`, unless its check is `none`.
    pub fn of(fe: &FrontendConfig, b: &BackendConfig) -> Option<Target> {
        let check = fe.health.check_of(&b.name()).clone();
        let ip = match (b.addr, fe.listen.addr) {
            (Some(a), _) => a,
            (None, Some(a)) if !a.is_unspecified() => a,
            (None, Some(IpAddr::V6(_))) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            (None, _) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        };
        let port = match &check.kind {
            CheckKind::None => return None,
            CheckKind::Tcp { port } | CheckKind::Http { port, .. } => port.unwrap_or(b.port),
            _ => b.port,
        };
        Some(Target {
            frontend: fe.listen,
            backend: b.id(),
            addr: SocketAddr::new(ip, port),
            frontend_port: if b.addr.is_some() {
                port
            } else {
                fe.listen.port
            },
            local: b.addr.is_none(),
            check,
        })
    }
}

/// A finished probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub frontend: Listen,
    pub backend: BackendId,
    /// Why it failed: "timed out", "timed out (2 wrong answers ignored;
    /// last: ...)", "connection refused", "HTTP 503"...
    pub result: Result<(), String>,
}

enum Wait {
    /// A datagram from the target, starting with `prefix`, or a DNS
    /// response with `id`; what else came meanwhile.
    Datagram(UdpSocket, Expect, Ignored),
    /// A TCP connection being opened; `request`: then send it (http).
    Connect(OwnedFd, Option<Vec<u8>>),
    /// The HTTP status line.
    Response(TcpStream, Vec<u8>),
}

enum Expect {
    Prefix(Vec<u8>),
    Dns { id: u16, noerror: bool },
}

/// The datagrams a probe ignored: how many, and why the last one.
#[derive(Default)]
struct Ignored {
    count: u32,
    last: String,
}

struct InFlight {
    id: u64,
    target: usize,
    deadline: Instant,
    wait: Wait,
}

struct Slot {
    target: Target,
    next: Instant,
}

/// Every active check of the balancer.
#[derive(Default)]
pub struct Prober {
    slots: Vec<Slot>,
    inflight: Vec<InFlight>,
    next_id: u64,
    /// Sockets udplb holds (never reads) on the addresses local backends'
    /// answers come from after the rewrite on lo, the frontend's port (see
    /// [`guarded`]).
    guards: Vec<UdpSocket>,
}

/// Where a local target's answer comes from once the datapath rewrote it:
/// the probed address on the frontend's port. Nothing listens there (XDP
/// serves the frontend), so any user could bind it (a port from 1024 up)
/// and answer every probe from it, its ports being in /proc/net/udp for
/// all to read; so udplb binds it first, with SO_REUSEPORT, which the
/// kernel lets only sockets of the same user share: root (udplb's user)
/// can still send from it, as it can from anywhere with a raw socket; no
/// one else can.
fn guarded(t: &Target) -> Option<SocketAddr> {
    let datagrams = matches!(t.check.kind, CheckKind::Udp { .. } | CheckKind::Dns { .. });
    (t.local && datagrams && t.frontend_port != t.addr.port())
        .then(|| SocketAddr::new(t.addr.ip(), t.frontend_port))
}

impl Prober {
    /// The targets now (at start and after each reload). A target that
    /// stays keeps its schedule; probes in flight for ones that went are
    /// dropped. New targets are probed at once.
    ///
    /// Returns a warning for each address answers may come from that udplb
    /// could not hold (see [`guarded`]): something else has it.
    pub fn set_targets(&mut self, targets: Vec<Target>, now: Instant) -> Vec<String> {
        let warnings = self.guard(&targets);
        let old = std::mem::take(&mut self.slots);
        self.slots = targets
            .into_iter()
            .map(|t| {
                let next = (old.iter()).find(|s| s.target == t).map_or(now, |s| s.next);
                Slot { target: t, next }
            })
            .collect();
        let slots = &self.slots;
        self.inflight.retain_mut(|p| {
            let target = &old[p.target].target;
            match slots.iter().position(|s| s.target == *target) {
                Some(i) => {
                    p.target = i;
                    true
                }
                None => false,
            }
        });
        warnings
    }

    /// Holds the [`guarded`] address of every target, and only those.
    fn guard(&mut self, targets: &[Target]) -> Vec<String> {
        let wanted: BTreeSet<SocketAddr> = targets.iter().filter_map(guarded).collect();
        let mine = |s: &UdpSocket| s.local_addr().is_ok_and(|a| wanted.contains(&a));
        self.guards.retain(mine);
        let held: BTreeSet<SocketAddr> = self
            .guards
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect();
        let mut warnings = Vec::new();
        for addr in wanted.difference(&held) {
            match bind_guard(*addr) {
                Ok(s) => self.guards.push(s),
                Err(e) => warnings.push(format!(
                    "udplb: warning: cannot hold {addr} ({}): whoever holds it can answer the \
                     udp and dns probes of the backends behind port {}",
                    words(e),
                    addr.port()
                )),
            }
        }
        warnings
    }

    /// The addresses udplb holds so that no one can answer probes from
    /// them: sockets of its own, not a frontend's listener.
    pub fn guards(&self) -> Vec<SocketAddr> {
        self.guards
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// When [`run`](Self::run) next has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let due = self.slots.iter().map(|s| s.next);
        let timeouts = self.inflight.iter().map(|p| p.deadline);
        due.chain(timeouts).min()
    }

    /// Ends probes past their timeout and sends those that are due. A
    /// probe past its timeout is judged on what its socket holds: the loop
    /// may have been busy when its answer came (see the module comment).
    pub fn run(&mut self, now: Instant) -> Vec<Outcome> {
        let mut out = Vec::new();
        let (expired, live): (Vec<_>, Vec<_>) = std::mem::take(&mut self.inflight)
            .into_iter()
            .partition(|p| p.deadline <= now);
        self.inflight = live;
        for mut p in expired {
            let target = &self.slots[p.target].target;
            let result = match settled(&p.wait) {
                true => progress(&mut p, target),
                false => None,
            };
            let result = result.unwrap_or_else(|| Err(timed_out(&p.wait)));
            out.push(self.outcome(p.target, result));
        }
        for i in 0..self.slots.len() {
            if self.slots[i].next > now {
                continue;
            }
            let interval = self.slots[i].target.check.interval;
            let slot = &mut self.slots[i];
            while slot.next <= now {
                slot.next += interval;
            }
            // A probe still out when the next is due: it times out first
            // (timeout <= interval), so this only happens on a late loop.
            if self.inflight.iter().any(|p| p.target == i) {
                continue;
            }
            match self.start(i, now) {
                Ok(p) => self.inflight.push(p),
                Err(why) => out.push(self.outcome(i, Err(why))),
            }
        }
        out
    }

    /// The descriptors to wait on, with the probe's id and what to wait for.
    pub fn sources(&self) -> Vec<(BorrowedFd<'_>, u64, PollFlags)> {
        (self.inflight.iter())
            .map(|p| match &p.wait {
                Wait::Datagram(s, ..) => (s.as_fd(), p.id, PollFlags::POLLIN),
                Wait::Connect(fd, _) => (fd.as_fd(), p.id, PollFlags::POLLOUT),
                Wait::Response(s, _) => (s.as_fd(), p.id, PollFlags::POLLIN),
            })
            .collect()
    }

    /// The local ports of the UDP probe sockets now open: not backends.
    pub fn own_udp_ports(&self) -> BTreeSet<u16> {
        (self.inflight.iter())
            .filter_map(|p| match &p.wait {
                Wait::Datagram(s, ..) => s.local_addr().ok().map(|a| a.port()),
                _ => None,
            })
            .collect()
    }

    /// Probe `id`'s socket is ready: its outcome, if it has one now.
    pub fn ready(&mut self, id: u64) -> Option<Outcome> {
        let i = self.inflight.iter().position(|p| p.id == id)?;
        let p = &mut self.inflight[i];
        let result = progress(p, &self.slots[p.target].target)?;
        let p = self.inflight.remove(i);
        Some(self.outcome(p.target, result))
    }

    fn outcome(&self, target: usize, result: Result<(), String>) -> Outcome {
        let t = &self.slots[target].target;
        Outcome {
            frontend: t.frontend,
            backend: t.backend,
            result,
        }
    }

    fn start(&mut self, target: usize, now: Instant) -> Result<InFlight, String> {
        self.next_id += 1;
        let t = &self.slots[target].target;
        let wait = match &t.check.kind {
            CheckKind::None => return Err("no check".into()),
            CheckKind::Udp { payload, expect } => {
                let sock = udp_send(t, payload)?;
                Wait::Datagram(sock, Expect::Prefix(expect.clone()), Ignored::default())
            }
            CheckKind::Dns {
                name,
                qtype,
                noerror,
            } => {
                let id = crate::dns::random_id().map_err(words)?;
                let query = crate::dns::query(id, name, qtype).map_err(|e| e.0)?;
                let sock = udp_send(t, &query)?;
                let expect = Expect::Dns {
                    id,
                    noerror: *noerror,
                };
                Wait::Datagram(sock, expect, Ignored::default())
            }
            CheckKind::Tcp { .. } => Wait::Connect(tcp_connect(t.addr)?, None),
            CheckKind::Http { path, .. } => {
                let host = match t.addr {
                    SocketAddr::V4(a) => a.to_string(),
                    SocketAddr::V6(a) => a.to_string(),
                };
                let request = format!(
                    "GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: udplb-health\r\nConnection: close\r\n\r\n"
                );
                Wait::Connect(tcp_connect(t.addr)?, Some(request.into_bytes()))
            }
        };
        Ok(InFlight {
            id: self.next_id,
            target,
            deadline: now + t.check.timeout,
            wait,
        })
    }
}

fn words(e: std::io::Error) -> String {
    match e.kind() {
        ErrorKind::ConnectionRefused => "connection refused".into(),
        _ => {
            let s = e.to_string();
            // "Connection reset by peer (os error 104)" -> "connection reset by peer"
            let s = s.split(" (os error").next().unwrap_or(&s).to_string();
            let mut c = s.chars();
            c.next()
                .map(|f| f.to_lowercase().collect::<String>() + c.as_str())
                .unwrap_or(s)
        }
    }
}

/// What probe `p`'s socket holds: its result, or `None` while it waits.
fn progress(p: &mut InFlight, target: &Target) -> Option<Result<(), String>> {
    match &mut p.wait {
        Wait::Datagram(sock, expect, ignored) => datagram(sock, expect, target, ignored),
        Wait::Connect(fd, request) => Some(match getsockopt(&*fd, sockopt::SocketError) {
            Ok(0) => match request.take() {
                None => Ok(()),
                Some(req) => {
                    // Out of descriptors: a failure now, not a wait (the
                    // socket stays ready and would wake the loop at once).
                    let Some(spare) = dup_placeholder() else {
                        return Some(Err("too many open files".into()));
                    };
                    let fd = std::mem::replace(fd, spare);
                    let mut stream = TcpStream::from(fd);
                    match stream.write(&req) {
                        Ok(n) if n == req.len() => {
                            p.wait = Wait::Response(stream, Vec::new());
                            return None;
                        }
                        Ok(_) => Err("could not send the request".into()),
                        Err(e) => Err(words(e)),
                    }
                }
            },
            Ok(e) => Err(words(std::io::Error::from_raw_os_error(e))),
            Err(e) => Err(words(e.into())),
        }),
        Wait::Response(stream, buf) => http_status(stream, buf),
    }
}

/// Whether [`progress`] can be asked without the loop's readiness: reads
/// never block, but a connect under way is only seen done by polling it.
fn settled(wait: &Wait) -> bool {
    let Wait::Connect(fd, _) = wait else {
        return true;
    };
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLOUT)];
    poll(&mut fds, PollTimeout::ZERO).is_ok_and(|n| n > 0)
}

/// Why a probe that had no answer by its timeout failed.
fn timed_out(wait: &Wait) -> String {
    match wait {
        Wait::Datagram(.., i) if i.count > 0 => {
            let s = if i.count == 1 { "" } else { "s" };
            format!(
                "timed out ({} wrong answer{s} ignored; last: {})",
                i.count, i.last
            )
        }
        _ => "timed out".into(),
    }
}

/// A probe's own unconnected UDP socket (see the module comment), the
/// probe sent: on the loopback address for a local backend, on any
/// address for a remote one; on a port the kernel picks at random (bind to
/// port 0).
fn udp_send(t: &Target, payload: &[u8]) -> Result<UdpSocket, String> {
    let ip: IpAddr = match (t.addr, t.local) {
        (SocketAddr::V4(_), true) => Ipv4Addr::LOCALHOST.into(),
        (SocketAddr::V6(_), true) => Ipv6Addr::LOCALHOST.into(),
        (SocketAddr::V4(_), false) => Ipv4Addr::UNSPECIFIED.into(),
        (SocketAddr::V6(_), false) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let sock = UdpSocket::bind((ip, 0)).map_err(words)?;
    sock.set_nonblocking(true).map_err(words)?;
    sock.send_to(payload, t.addr).map_err(words)?;
    Ok(sock)
}

/// Reads what arrived: `Some` once the right answer is in (or the socket
/// failed), `None` while it waits; every other datagram is counted in
/// `ignored`.
fn datagram(
    sock: &UdpSocket,
    expect: &Expect,
    t: &Target,
    ignored: &mut Ignored,
) -> Option<Result<(), String>> {
    let mut buf = [0u8; 4096];
    // A bounded number a wake-up: a sprayed socket cannot keep the loop
    // here; what is left wakes it again.
    for _ in 0..DATAGRAMS_A_WAKEUP {
        match sock.recv_from(&mut buf) {
            Ok((n, from)) => match judge(&buf[..n], from, expect, t) {
                Ok(()) => return Some(Ok(())),
                Err(why) => {
                    ignored.count += 1;
                    ignored.last = why;
                }
            },
            Err(e) if e.kind() == ErrorKind::WouldBlock => return None,
            Err(e) => return Some(Err(words(e))),
        }
    }
    None
}

/// A socket on `addr` that only this user can share (see [`guarded`]): no
/// SO_REUSEADDR, which would let anyone share it.
fn bind_guard(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let fd = socket(family, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)?;
    nix::sys::socket::setsockopt(&fd, sockopt::ReusePort, &true)?;
    if family == AddressFamily::Inet6 {
        nix::sys::socket::setsockopt(&fd, sockopt::Ipv6V6Only, &true)?;
    }
    use std::os::fd::AsRawFd;
    nix::sys::socket::bind(fd.as_raw_fd(), &SockaddrStorage::from(addr))?;
    Ok(UdpSocket::from(fd))
}

/// Datagrams a probe's socket is read for at one wake-up.
const DATAGRAMS_A_WAKEUP: usize = 64;

/// Whether a datagram from `from` to the probe's socket is target `t`'s
/// answer (the module comment says why these rules); if not, why not.
fn judge(reply: &[u8], from: SocketAddr, expect: &Expect, t: &Target) -> Result<(), String> {
    let ports = [t.addr.port(), t.frontend_port];
    if from.ip() != t.addr.ip() || !ports.contains(&from.port()) {
        return Err(format!("from {from}"));
    }
    match expect {
        Expect::Prefix(p) if reply.starts_with(p) => Ok(()),
        Expect::Prefix(_) => Err("without the expected prefix".to_string()),
        Expect::Dns { id, noerror } => crate::dns::check_response(reply, *id, *noerror),
    }
}

/// A non-blocking TCP connect under way.
fn tcp_connect(to: SocketAddr) -> Result<OwnedFd, String> {
    let family = match to {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let fd = socket(
        family,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| words(e.into()))?;
    use std::os::fd::AsRawFd;
    match connect(fd.as_raw_fd(), &SockaddrStorage::from(to)) {
        Ok(()) | Err(Errno::EINPROGRESS) => Ok(fd),
        Err(e) => Err(words(e.into())),
    }
}

/// A stand-in descriptor for a moment's swap (a closed-on-drop /dev/null
/// would do; an eventless pipe end is cheaper to explain).
fn dup_placeholder() -> Option<OwnedFd> {
    nix::unistd::pipe().ok().map(|(r, _w)| r)
}

/// Reads an HTTP response's status line: 2xx is up.
fn http_status(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Result<(), String>> {
    let mut chunk = [0u8; 1024];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.windows(2).any(|w| w == b"\r\n") || buf.len() > 4096 {
                    break;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return None,
            Err(e) => return Some(Err(words(e))),
        }
    }
    let line = String::from_utf8_lossy(buf);
    let line = line.lines().next().unwrap_or("");
    let mut words_ = line.split_whitespace();
    match (words_.next(), words_.next()) {
        (Some(v), Some(code)) if v.starts_with("HTTP/") => match code.starts_with('2') {
            true => Some(Ok(())),
            false => Some(Err(format!("HTTP {code}"))),
        },
        _ if buf.is_empty() => Some(Err("closed without a response".into())),
        _ => Some(Err("not an HTTP response".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn target(kind: &str, addr: SocketAddr, frontend_port: u16) -> Target {
        Target {
            frontend: Listen {
                addr: None,
                port: frontend_port,
            },
            backend: (None, addr.port()),
            addr,
            frontend_port,
            local: true,
            check: Check {
                kind: CheckKind::with_defaults(kind).unwrap(),
                timeout: Duration::from_millis(300),
                ..Check::default()
            },
        }
    }

    /// Runs the prober until it has `n` outcomes (a bounded loop of polls).
    fn outcomes(p: &mut Prober, n: usize) -> Vec<Outcome> {
        let mut out = p.run(Instant::now());
        let start = Instant::now();
        while out.len() < n && start.elapsed() < Duration::from_secs(3) {
            let ids: Vec<u64> = p.sources().iter().map(|s| s.1).collect();
            for id in ids {
                out.extend(p.ready(id));
            }
            std::thread::sleep(Duration::from_millis(5));
            let now = Instant::now();
            if p.inflight.iter().any(|f| f.deadline <= now) {
                out.extend(p.run(now));
            }
        }
        out
    }

    #[test]
    fn udp_replies_count_from_the_backend_or_its_frontend_port() {
        // A "backend" that answers from another socket on the frontend's
        // port, as the datapath makes it look on lo.
        let backend = UdpSocket::bind("127.0.0.1:0").unwrap();
        let frontend = UdpSocket::bind("127.0.0.1:0").unwrap();
        let t = target(
            "udp",
            backend.local_addr().unwrap(),
            frontend.local_addr().unwrap().port(),
        );
        let mut p = Prober::default();
        p.set_targets(vec![t], Instant::now());
        let sent = p.run(Instant::now());
        assert!(sent.is_empty(), "{sent:?}");
        let mut buf = [0u8; 64];
        backend
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let (n, from) = backend.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], crate::config::health::DEFAULT_UDP_PAYLOAD);
        frontend.send_to(b"pong", from).unwrap();
        let out = outcomes(&mut p, 1);
        assert_eq!(out[0].result, Ok(()), "{out:?}");
    }

    /// A `udp` check with payload "ping" and expect "pong" of `backend`,
    /// started; and where the probe is, as `backend` saw it.
    fn pong_probe(backend: &UdpSocket) -> (Prober, SocketAddr) {
        let mut t = target("udp", backend.local_addr().unwrap(), 1);
        t.check.kind = CheckKind::Udp {
            payload: b"ping".to_vec(),
            expect: b"pong".to_vec(),
        };
        let mut p = Prober::default();
        p.set_targets(vec![t], Instant::now());
        assert!(p.run(Instant::now()).is_empty());
        backend
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut buf = [0u8; 64];
        let (n, probe) = backend.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"ping");
        (p, probe)
    }

    /// Reads probe `id`'s socket until it has ignored `n` datagrams
    /// (bounded: 2 s); must not decide the probe meanwhile.
    fn ignores(p: &mut Prober, id: u64, n: u32) {
        let start = Instant::now();
        loop {
            assert_eq!(p.ready(id), None, "decided by a wrong answer");
            let Wait::Datagram(.., ignored) = &p.inflight[0].wait else {
                unreachable!()
            };
            if ignored.count >= n || start.elapsed() > Duration::from_secs(2) {
                assert_eq!(ignored.count, n);
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits (bounded) until the probe's socket is ready, without reading.
    fn wait_ready(p: &Prober) {
        let sources = p.sources();
        let mut fds = [PollFd::new(sources[0].0, sources[0].2)];
        assert_eq!(poll(&mut fds, PollTimeout::from(2000u16)), Ok(1));
    }

    #[test]
    fn wrong_answers_are_ignored_until_the_right_one_comes() {
        let backend = UdpSocket::bind("127.0.0.1:0").unwrap();
        let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (mut p, probe) = pong_probe(&backend);
        let id = p.inflight[0].id;
        backend.send_to(b"xxxx", probe).unwrap();
        stranger.send_to(b"pong", probe).unwrap();
        ignores(&mut p, id, 2);
        backend.send_to(b"pong", probe).unwrap();
        wait_ready(&p);
        assert_eq!(p.ready(id).map(|o| o.result), Some(Ok(())));
    }

    #[test]
    fn only_wrong_answers_fail_at_the_timeout_and_say_so() {
        let backend = UdpSocket::bind("127.0.0.1:0").unwrap();
        let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (mut p, probe) = pong_probe(&backend);
        let id = p.inflight[0].id;
        stranger.send_to(b"pong", probe).unwrap();
        backend.send_to(b"xxxx", probe).unwrap();
        ignores(&mut p, id, 2);
        let deadline = p.inflight[0].deadline;
        let before = p.run(deadline - Duration::from_millis(1));
        assert!(before.is_empty(), "failed before its timeout: {before:?}");
        let out = p.run(deadline);
        assert_eq!(
            out[0].result,
            Err("timed out (2 wrong answers ignored; last: without the expected prefix)".into())
        );
        assert!(p.inflight.is_empty());
    }

    #[test]
    fn an_answer_in_time_counts_however_late_the_loop_reads_it() {
        let backend = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (mut p, probe) = pong_probe(&backend);
        backend.send_to(b"pong", probe).unwrap();
        wait_ready(&p);
        // The loop comes back long after the deadline, to the timer first.
        let late = p.inflight[0].deadline + Duration::from_secs(10);
        let out = p.run(late);
        assert_eq!(out[0].result, Ok(()), "{out:?}");

        // A TCP connect that completed while the loop was busy.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut p = Prober::default();
        p.set_targets(
            vec![target("tcp", l.local_addr().unwrap(), 1)],
            Instant::now(),
        );
        assert!(p.run(Instant::now()).is_empty());
        wait_ready(&p);
        let late = p.inflight[0].deadline + Duration::from_secs(10);
        assert_eq!(p.run(late)[0].result, Ok(()));
    }

    #[test]
    fn an_answer_comes_from_the_backend() {
        let sa = |s: &str| s.parse::<SocketAddr>().unwrap();
        let local = target("udp", sa("198.18.0.2:5302"), 53);
        let mut remote = target("udp", sa("198.18.1.2:5353"), 5353);
        remote.local = false;
        let any = Expect::Prefix(Vec::new());
        let ok = |from: &str, t: &Target| judge(b"x", sa(from), &any, t).is_ok();
        // A local backend: its port, or the frontend's.
        assert!(ok("198.18.0.2:5302", &local));
        assert!(ok("198.18.0.2:53", &local));
        assert!(!ok("198.18.0.2:54", &local));
        assert!(!ok("198.18.0.3:5302", &local));
        // A remote backend: its own address and port only.
        assert!(ok("198.18.1.2:5353", &remote));
        assert!(!ok("198.18.1.2:53", &remote));
        assert!(!ok("198.18.1.3:5353", &remote));
        // The content.
        let pong = Expect::Prefix(b"pong".to_vec());
        let from = sa("198.18.0.2:5302");
        assert!(judge(b"pong!", from, &pong, &local).is_ok());
        assert!(judge(b"xpong", from, &pong, &local).is_err());
    }

    #[test]
    fn a_local_backend_is_probed_from_the_loopback_address() {
        // The frontend's address stands in for one of this host's: 127.0.0.2
        // is local too, but not the address the probe is bound to.
        let backend = UdpSocket::bind("127.0.0.2:0").unwrap();
        let (_p, probe) = pong_probe(&backend);
        assert_eq!(probe.ip(), IpAddr::from(Ipv4Addr::LOCALHOST));
        let mut t = target("udp", backend.local_addr().unwrap(), 1);
        t.local = false;
        let remote = udp_send(&t, b"ping").unwrap();
        assert!(remote.local_addr().unwrap().ip().is_unspecified());
    }

    #[test]
    fn silence_times_out_and_a_refused_tcp_connect_says_so() {
        let quiet = UdpSocket::bind("127.0.0.1:0").unwrap();
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed_addr = closed.local_addr().unwrap();
        drop(closed);
        let mut p = Prober::default();
        p.set_targets(
            vec![
                target("dns", quiet.local_addr().unwrap(), 1),
                target("tcp", closed_addr, 2),
            ],
            Instant::now(),
        );
        let mut out = outcomes(&mut p, 2);
        out.sort_by_key(|o| o.frontend.port);
        assert_eq!(out[0].result, Err("timed out".into()));
        assert_eq!(out[1].result, Err("connection refused".into()));
    }

    #[test]
    fn tcp_and_http_against_a_listener() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            for (i, s) in l.incoming().take(2).enumerate() {
                let mut s = s.unwrap();
                if i == 1 {
                    let mut req = [0u8; 512];
                    let n = s.read(&mut req).unwrap();
                    assert!(req[..n].starts_with(b"GET /health HTTP/1.0\r\n"));
                    s.write_all(b"HTTP/1.0 503 Service Unavailable\r\n\r\n")
                        .unwrap();
                }
            }
        });
        let mut p = Prober::default();
        p.set_targets(vec![target("tcp", addr, 1)], Instant::now());
        assert_eq!(outcomes(&mut p, 1)[0].result, Ok(()));
        let mut http = target("http", addr, 2);
        http.check.kind = CheckKind::Http {
            port: None,
            path: "/health".into(),
        };
        let mut p = Prober::default();
        p.set_targets(vec![http], Instant::now());
        assert_eq!(outcomes(&mut p, 1)[0].result, Err("HTTP 503".into()));
        server.join().unwrap();
    }
}
