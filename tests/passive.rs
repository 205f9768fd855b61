//! Passive health signals end to end, with real sockets in the client /
//! balancer / two backend hosts triangle (tests/support/topology.rs) and
//! active checks off (`--health none`):
//! - a backend host with nothing listening on the backend port is taken
//!   down by its ICMP port unreachables alone within 1 s of traffic
//!   starting (IPv4 and IPv6); the log line, `udplb status` and /metrics
//!   (read by Prometheus's own parser) say so with a passive cause, and
//!   traffic then goes only to the live backend;
//! - ICMP errors forged on the client side about datagrams to a backend
//!   neither take it down nor leave the balancer (spoofed_reply).

use udplb_testkit as support;

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::cpu::pin_to_cpu0;
use support::operate::*;
use support::packets::{icmp_error, udp};
use support::process::*;
use support::servers::{Echo, Reply};
use support::sockets::{resolve_neighbour, send_raw};
use support::topology::*;

/// The frontend and the two backends (srv0's, srv1's) of one family.
fn endpoints(ipv6: bool) -> (String, String, String) {
    if ipv6 {
        (
            format!("[{VIP6}]:53"),
            "[2001:2:1::2]:5353".into(),
            "[2001:2:2::2]:5353".into(),
        )
    } else {
        (
            format!("{VIP4}:53"),
            "198.18.1.2:5353".into(),
            "198.18.2.2:5353".into(),
        )
    }
}

/// A client socket in the client namespace, unconnected (ICMP errors do not
/// fail its sends).
fn client_socket(t: &Triangle, ipv6: bool) -> UdpSocket {
    let bind = if ipv6 { "[::]:0" } else { "0.0.0.0:0" };
    let c = t
        .client
        .enter(|| UdpSocket::bind(bind).expect("client bind"));
    c.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    c
}

/// Sends a datagram to `to` every 10 ms until the flag goes down (at most
/// 500 of them); returns how many it sent.
fn steady_sender(c: UdpSocket, to: SocketAddr) -> (Arc<AtomicBool>, JoinHandle<u32>) {
    let on = Arc::new(AtomicBool::new(true));
    let flag = on.clone();
    let t = std::thread::spawn(move || {
        let mut n = 0;
        while flag.load(Ordering::Relaxed) && n < 500 {
            let _ = c.send_to(format!("steady {n}").as_bytes(), to);
            n += 1;
            std::thread::sleep(Duration::from_millis(10));
        }
        n
    });
    (on, t)
}

/// Fills every neighbour table on the way (client, balancer, backend
/// hosts), so that the figure measured is udplb's and not NDP's (a fresh
/// IPv6 link takes about a second before the client's first datagram
/// leaves).
fn resolve_neighbours(t: &Triangle, ipv6: bool) {
    let a = |v4: &str, v6: &str| if ipv6 { v6.to_string() } else { v4.to_string() };
    resolve_neighbour(&t.client, &a("198.18.0.2", "2001:2::2"));
    resolve_neighbour(&t.lb, &a("198.18.0.1", "2001:2::1"));
    for i in 1..=2 {
        resolve_neighbour(
            &t.lb,
            &a(&format!("198.18.{i}.2"), &format!("2001:2:{i}::2")),
        );
        resolve_neighbour(
            &t.srv[i - 1],
            &a(&format!("198.18.{i}.1"), &format!("2001:2:{i}::1")),
        );
    }
}

fn dead_backend_host_goes_down_by_passive_signals_alone(ipv6: bool) {
    let t = triangle();
    resolve_neighbours(&t, ipv6);
    let (vip, live, dead) = endpoints(ipv6);
    let echo = Echo::setup(Reply::Payload).start(&t.srv[0], &live);
    let mut u = Udplb::start(
        &t.lb,
        &[
            "--health",
            "none",
            "--metrics",
            "127.0.0.1:9100",
            "l0,l1,l2",
            &format!("{vip}={live},{dead}"),
        ],
    );
    u.wait_for("attached to l2", Duration::from_secs(5));
    let frontend: SocketAddr = vip.parse().unwrap();

    let client = client_socket(&t, ipv6);
    let started = Instant::now();
    let (sending, sender) = steady_sender(client.try_clone().unwrap(), frontend);
    let line = u.wait_for(&format!("{dead} down"), Duration::from_secs(3));
    let detected = started.elapsed();
    sending.store(false, Ordering::Relaxed);
    let sent = sender.join().unwrap();
    assert!(
        line.contains(&format!("{dead} down: passive: ")) && line.contains("ICMP errors"),
        "{line}"
    );
    assert!(
        detected <= Duration::from_secs(1),
        "{dead} down {detected:?} after traffic started (at most 1 s): {line}"
    );

    let s = status(&t.lb);
    let (d, l) = (backend(&s, &dead), backend(&s, &live));
    assert_eq!(d["health"]["state"], "down", "{d}");
    let cause = d["health"]["cause"].as_str().unwrap();
    assert!(cause.starts_with("passive: "), "{cause}");
    let errors = d["passive"]["icmp_errors"].as_u64().unwrap();
    assert!(errors >= 3, "{d}");
    assert_eq!(d["passive"]["replies"], 0, "{d}");
    assert_eq!(l["health"]["state"], "up", "{l}");
    assert!(l["passive"]["replies"].as_u64().unwrap() > 0, "{l}");

    // /metrics says the same, through Prometheus's own parser.
    let m = scrape(&t.lb);
    let labels = |b: &str| format!("backend={b},frontend={vip}");
    assert_eq!(sample(&m, "udplb_backend_up", &labels(&dead)), 0.0);
    assert_eq!(sample(&m, "udplb_backend_up", &labels(&live)), 1.0);
    assert_eq!(
        sample(&m, "udplb_backend_icmp_errors_total", &labels(&dead)),
        errors as f64
    );
    assert_eq!(
        sample(&m, "udplb_backend_reply_packets_total", &labels(&dead)),
        0.0
    );
    assert_eq!(
        sample(&m, "udplb_backend_icmp_errors_total", &labels(&live)),
        0.0
    );
    assert!(sample(&m, "udplb_backend_reply_packets_total", &labels(&live)) > 0.0);

    // From now on every datagram goes to the live backend, and each is
    // answered (well within the 5 s hold).
    let mut buf = [0u8; 64];
    while client.recv(&mut buf).is_ok() {}
    let to_dead = backend_packets(&s, &dead);
    for i in 0..40 {
        client
            .send_to(format!("after {i}").as_bytes(), frontend)
            .unwrap();
        let (n, from) = client
            .recv_from(&mut buf)
            .expect("a reply from the live backend");
        assert_eq!(from, frontend);
        assert_eq!(&buf[..n], format!("after {i}").as_bytes());
    }
    let s = status(&t.lb);
    assert_eq!(
        backend_packets(&s, &dead),
        to_dead,
        "datagrams still went to {dead}"
    );
    println!(
        "passive ({}): {dead} down {detected:?} after traffic started \
         ({sent} datagrams at 100/s, {errors} ICMP errors counted)",
        if ipv6 { "IPv6" } else { "IPv4" }
    );

    if !ipv6 {
        // The hold ends: back on trial (no traffic, so it stays up).
        let line = u.wait_for(&format!("{dead} up"), Duration::from_secs(6));
        assert!(line.contains("back on trial after 5s"), "{line}");
    }
    assert!(echo.heard() > 0);
    let (status, out) = u.stop(Signal::SIGTERM);
    assert!(status.success(), "{out}");
}

#[test]
fn dead_backend_host_goes_down_by_passive_signals_alone_ipv4() {
    dead_backend_host_goes_down_by_passive_signals_alone(false);
}

#[test]
fn dead_backend_host_goes_down_by_passive_signals_alone_ipv6() {
    dead_backend_host_goes_down_by_passive_signals_alone(true);
}

#[test]
fn icmp_errors_forged_on_the_client_side_do_not_take_a_backend_down() {
    for ipv6 in [false, true] {
        let t = triangle();
        let (vip, b0, b1) = endpoints(ipv6);
        let echo = Echo::setup(Reply::Payload);
        let _echoes = [echo.start(&t.srv[0], &b0), echo.start(&t.srv[1], &b1)];
        let mut u = Udplb::start(
            &t.lb,
            &["--health", "none", "l0,l1,l2", &format!("{vip}={b0},{b1}")],
        );
        u.wait_for("attached to l2", Duration::from_secs(5));
        // A client that knows a backend's address forges the port
        // unreachable that backend's host would send about a datagram
        // from the client, and sends it to the balancer: 100 of them in
        // 1 s, with no traffic at all (no reply to speak for the backend).
        let (client, lb, kind) = if ipv6 {
            ("2001:2::1", "2001:2::2", (1, 4))
        } else {
            ("198.18.0.1", "198.18.0.2", (3, 3))
        };
        let quoted = udp(
            &SocketAddr::new(client.parse().unwrap(), 40000).to_string(),
            &b1,
        )
        .payload(b"forged")
        .build();
        // Outer source: the client itself (what a client can send).
        let forged = icmp_error(client, lb, kind, 0, &quoted, quoted.bytes.len() - quoted.l3);
        for _ in 0..100 {
            send_raw(&t.client, &forged, lb, ipv6);
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(500));
        assert!(
            !u.output.iter().any(|l| l.contains(" down")),
            "a forged error took a backend down: {:?}",
            u.output
        );
        let s = status(&t.lb);
        let b = backend(&s, &b1);
        assert_eq!(b["health"]["state"], "up", "{b}");
        assert_eq!(b["passive"]["icmp_errors"], 0, "forged errors counted: {b}");
        let spoofed = s["verdicts"]["spoofed_reply"].as_u64().unwrap_or(0);
        assert_eq!(spoofed, 100, "{}", s["verdicts"]);
        // Both backends still serve.
        let c = client_socket(&t, ipv6);
        let frontend: SocketAddr = vip.parse().unwrap();
        let mut buf = [0u8; 64];
        // One CPU: the round-robin cursor is per CPU.
        pin_to_cpu0();
        for i in 0..4 {
            c.send_to(format!("real {i}").as_bytes(), frontend).unwrap();
            c.recv_from(&mut buf).expect("a reply");
        }
        let s = status(&t.lb);
        for b in [&b0, &b1] {
            assert_eq!(backend(&s, b)["traffic"]["packets"], 2, "{s}");
        }
        u.stop(Signal::SIGTERM);
    }
}
