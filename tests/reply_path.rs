//! The stateless reply path cannot be abused (hardening issue, item 1):
//! with remote backends, a datagram that forges a backend's source is
//! never sent on with the frontend's address, never delivered to the
//! balancer itself, and a backend's datagram to a frontend starts no loop.
//! Real sockets in the client / balancer / two backend hosts triangle, IPv4
//! and IPv6, native and generic XDP.
//!
//! Before the fix, a forged "reply" from the client side was rewritten to
//! come from the frontend and redirected to its destination (VIP spoofing
//! toward any host), and one datagram from backend 2's address to the
//! frontend looped between the balancer and echoing backends tens of
//! thousands of times in a few seconds.

use udplb_testkit as support;

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::sys::socket::{
    bind, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, SockaddrStorage,
};
use support::operate::status;
use support::process::Udplb;
use support::servers::{Echo, Reply};
use support::topology::*;

/// A UDP socket bound to `addr` even where `addr` is not local: the
/// attacker's tool (IP_FREEBIND to bind; IPv4 also needs IP_TRANSPARENT to
/// route from a foreign source; root in its namespace).
fn forged_socket(addr: SocketAddr) -> UdpSocket {
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let fd: OwnedFd = socket(family, SockType::Datagram, SockFlag::empty(), None).unwrap();
    setsockopt(&fd, sockopt::IpFreebind, &true).unwrap();
    if family == AddressFamily::Inet {
        setsockopt(&fd, sockopt::IpTransparent, &true).unwrap();
    }
    bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrStorage::from(addr),
    )
    .unwrap();
    UdpSocket::from(fd)
}

/// How many of the test's attack datagrams (not the warm-up's "hello"s)
/// `s` receives within `wait`; echoes each back if `echo` (an echoing
/// backend is what turns one datagram into a loop).
fn received(s: &UdpSocket, wait: Duration, echo: bool) -> usize {
    let mut buf = [0u8; 2048];
    let mut n = 0;
    let end = Instant::now() + wait;
    s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    while Instant::now() < end {
        if let Ok((len, from)) = s.recv_from(&mut buf) {
            n += usize::from(!buf.starts_with(b"hello"));
            if echo {
                let _ = s.send_to(&buf[..len], from);
            }
        }
    }
    n
}

/// The sources of the datagrams `s` receives within `wait`.
fn sources(s: &UdpSocket, wait: Duration) -> Vec<SocketAddr> {
    let mut buf = [0u8; 2048];
    let mut from = Vec::new();
    let end = Instant::now() + wait;
    s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    while Instant::now() < end {
        if let Ok((_, f)) = s.recv_from(&mut buf) {
            from.push(f);
        }
    }
    from
}

fn forged_replies_are_refused(ipv6: bool, mode: &str) {
    let t = triangle();
    let (vip, srv, lb_addr, victim) = if ipv6 {
        (
            format!("[{VIP6}]:53"),
            ["[2001:2:1::2]:5353", "[2001:2:2::2]:5353"],
            "[2001:2::2]:7777",
            "[2001:2:2::2]:7777",
        )
    } else {
        (
            format!("{VIP4}:53"),
            ["198.18.1.2:5353", "198.18.2.2:5353"],
            "198.18.0.2:7777",
            "198.18.2.2:7777",
        )
    };
    // The client side can reach the backend LANs through the balancer (as
    // any router would let it); that is what a forger uses.
    for net in ["198.18.1.0/24", "198.18.2.0/24"] {
        route(&t.client, &[net, "via", "198.18.0.2"]);
    }
    for net in ["2001:2:1::/64", "2001:2:2::/64"] {
        route(&t.client, &[net, "via", "2001:2::2"]);
    }
    t.lb.exec(&["sysctl", "-qw", "net.ipv4.conf.all.accept_local=1"]);
    let backends: Vec<UdpSocket> = t
        .srv
        .iter()
        .zip(srv)
        .map(|(ns, a)| ns.udp_bind(a))
        .collect();
    let victim_sock = t.srv[1].udp_bind(victim);
    let local_sock = t.lb.udp_bind(lb_addr);
    let mut lb = Udplb::start(
        &t.lb,
        &[
            "--xdp-mode",
            mode,
            "l0,l1,l2",
            &format!("{vip}={},{}", srv[0], srv[1]),
        ],
    );
    lb.wait_for("attached to l2", Duration::from_secs(5));

    // A legitimate round trip works: the client hears from the frontend.
    let frontend: SocketAddr = vip.parse().unwrap();
    let client = t.client.enter(|| {
        let c = UdpSocket::bind(if ipv6 { "[::]:0" } else { "0.0.0.0:0" }).unwrap();
        c.connect(frontend).unwrap();
        c.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        c
    });
    let mut answered = false;
    let mut buf = [0u8; 2048];
    for i in 0..25 {
        t.client
            .enter(|| client.send(format!("hello {i}").as_bytes()).unwrap());
        for b in &backends {
            b.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
            if let Ok((n, from)) = b.recv_from(&mut buf) {
                b.send_to(&buf[..n], from).unwrap();
            }
        }
        if client.recv(&mut buf).is_ok() {
            answered = true;
            break;
        }
    }
    assert!(answered, "no legitimate round trip through the frontend");

    const FORGED: usize = 50;
    // 1. From the client side, forging backend 0's source, toward a host on
    //    the backend side: it would arrive there from the frontend.
    // 2. ... toward the balancer's own address: it would reach a local
    //    service from the frontend.
    // 3. Forging backend 1's source toward the frontend: with echoing
    //    backends, a loop through the balancer.
    t.client.enter(|| {
        let as_srv0 = forged_socket(srv[0].parse().unwrap());
        let as_srv1 = forged_socket(srv[1].parse().unwrap());
        for i in 0..FORGED {
            let p = format!("forged {i}");
            as_srv0.send_to(p.as_bytes(), victim).unwrap();
            as_srv0.send_to(p.as_bytes(), lb_addr).unwrap();
            as_srv1.send_to(p.as_bytes(), frontend).unwrap();
        }
    });
    // 4. A backend itself sending to the frontend (a reply sent back in),
    //    and to the balancer's address.
    t.srv[1].enter(|| {
        for i in 0..FORGED {
            let p = format!("backend {i}");
            backends[1].send_to(p.as_bytes(), frontend).unwrap();
            backends[1].send_to(p.as_bytes(), lb_addr).unwrap();
        }
    });
    let wait = Duration::from_millis(1500);
    let echoed: Vec<usize> = std::thread::scope(|s| {
        let h: Vec<_> = backends
            .iter()
            .map(|b| s.spawn(move || received(b, wait, true)))
            .collect();
        h.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let at_victim = received(&victim_sock, Duration::from_millis(100), false);
    let at_balancer = sources(&local_sock, Duration::from_millis(100));
    let verdicts = status(&t.lb)["verdicts"].clone();
    let verdict = |name: &str| verdicts[name].as_u64().unwrap_or(0);
    let (status, out) = lb.stop(Signal::SIGTERM);
    assert!(status.success(), "{out}");
    assert_eq!(
        at_victim, 0,
        "forged replies reached a host from the frontend\n{out}"
    );
    // The backend's own datagrams to this host arrive as it sent them,
    // from its address (as udplb's health probes' answers do); the forged
    // ones from the client side are refused.
    let backend1: SocketAddr = srv[1].parse().unwrap();
    assert_eq!(
        at_balancer,
        vec![backend1; FORGED],
        "datagrams at the balancer's own address: only backend 1's, from itself\n{out}"
    );
    assert_eq!(
        echoed,
        vec![0, 0],
        "backends received forged or looped datagrams\n{out}"
    );
    assert!(verdict("spoofed_reply") >= 2 * FORGED as u64, "{verdicts}");
    assert!(
        verdict("backend_to_frontend") >= 2 * FORGED as u64,
        "{verdicts}"
    );
    assert!(verdict("reply_to_local") >= FORGED as u64, "{verdicts}");
}

#[test]
fn forged_replies_ipv4_native() {
    forged_replies_are_refused(false, "native");
}

#[test]
fn forged_replies_ipv6_native() {
    forged_replies_are_refused(true, "native");
}

#[test]
fn forged_replies_ipv4_generic() {
    forged_replies_are_refused(false, "generic");
}

#[test]
fn forged_replies_ipv6_generic() {
    forged_replies_are_refused(true, "generic");
}

/// A remote backend's answer to udplb's own probe reaches this host as the
/// backend sent it, from the backend's port (reply_to_local passes it
/// untranslated). Accepting one from the backend's address on the
/// *frontend's* port as well (needed only for local backends, whose
/// answers on lo are rewritten) lets a client forge answers that the
/// reverse-path check never sees: that port is no reply key, so the
/// datagram passes as no_frontend and reaches the probe's socket. A dead
/// backend with a `udp` check (any reply counts) is then kept up by a
/// client spraying datagrams from the backend's address and the frontend's
/// port at the probe ports (the lb namespace's ephemeral range is narrowed
/// to ten ports so that a short bounded spray is enough; a real attacker
/// sprays the whole range).
#[test]
fn probe_answers_forged_from_the_frontend_port_keep_no_dead_backend_up() {
    let t = triangle();
    route(&t.client, &["198.18.1.0/24", "via", "198.18.0.2"]);
    t.lb.exec(&["sysctl", "-qw", "net.ipv4.ip_local_port_range=40000 40009"]);
    let file = support::topology::triangle_file(
        &["198.18.1.2:5353", "198.18.2.2:5353"],
        r#"check = "udp"
interval = "100ms"
timeout = "80ms"
rise = 1
fall = 1
"#,
    );
    // Backend 1 answers; backend 0 has nothing listening: it goes down.
    let _alive = Echo::setup(Reply::Payload).start(&t.srv[1], "198.18.2.2:5353");
    let mut lb = Udplb::start(&t.lb, &["--config", file.path()]);
    lb.wait_for("198.18.1.2:5353 down", Duration::from_secs(3));

    // The client forges backend 0's address with the frontend's port, at
    // the balancer's probe ports: bounded, 20 rounds of 10 over 2 s.
    t.client.enter(|| {
        let forger = forged_socket("198.18.1.2:53".parse().unwrap());
        for _ in 0..20 {
            for port in 40000..40010u16 {
                let _ = forger.send_to(b"forged", ("198.18.0.2", port));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let (status, out) = lb.stop(Signal::SIGTERM);
    assert!(status.success(), "{out}");
    assert!(
        !out.contains("198.18.1.2:5353 up"),
        "forged probe answers from the client side brought a dead backend up\n{out}"
    );
    assert!(
        !out.contains("198.18.2.2:5353 down"),
        "the answering backend went down\n{out}"
    );
}
