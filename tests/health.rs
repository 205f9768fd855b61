//! Health checks end to end, with real servers in namespaces made here:
//! dnsmasq behind udplb with `dns` checks (loss window and recovery
//! measured), socket-table liveness of local backends, `udp` probes on
//! `lo` (the probe exemption), fail open and `on_all_down = "drop"`, and
//! `tcp` / `http` checks against a backend host.

use udplb_testkit as support;

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::netns::*;
use support::operate::{backend, backend_packets, status_on};
use support::process::*;
use support::servers::{self, wait_bound, Echo, Reply, Server};
use support::topology::*;

/// dnsmasq on `port`, answering health.udplb with 198.18.9.(port % 100):
/// an answer names the server that gave it.
fn dnsmasq(ns: &Netns, port: u16) -> Server {
    servers::dnsmasq(
        ns,
        port,
        "health.udplb",
        &format!("198.18.9.{}", port % 100),
    )
}

/// A DNS query for health.udplb A with `id`.
fn query(id: u16) -> Vec<u8> {
    let mut q = vec![(id >> 8) as u8, id as u8, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in ["health", "udplb"] {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

#[test]
fn dns_checks_take_a_dead_dnsmasq_out_and_bring_it_back() {
    let (client, lb) = (Netns::new("hc"), Netns::new("hl"));
    veth_pair(&client, &lb);
    let mut servers: Vec<Server> = [5301, 5302, 5303]
        .iter()
        .map(|&p| dnsmasq(&lb, p))
        .collect();
    for p in [5301, 5302, 5303] {
        wait_bound(&lb, p);
    }
    let (interval, fall, rise) = (200u64, 2u64, 2u64);
    // sockets = false: the figures below are the dns probes' alone (the
    // socket table would see the dead dnsmasq's port close first).
    let file = TempFile::new(
        "lb.toml",
        &format!(
            r#"
interface = "veth-b"
[[frontend]]
listen = "198.18.0.2:53"
backends = [5301, 5302, 5303]
[frontend.health]
check = "dns"
name = "health.udplb"
type = "A"
rcode = "noerror"
interval = "{interval}ms"
timeout = "150ms"
rise = {rise}
fall = {fall}
sockets = false
"#
        ),
    );
    let mut u = Udplb::start(&lb, &["--config", file.path()]);
    u.wait_for("5303 health: dns every 200ms", Duration::from_secs(2));

    // The client: a query every 20 ms until told to stop (bounded: 10,000
    // queries, 20 s, longer on a slow machine, where the waits below are
    // longer too), each with its own ID; a reader reports each answer with
    // the server that gave it.
    const N: usize = 10_000;
    const EVERY: Duration = Duration::from_millis(20);
    let until = support::slow(Duration::from_secs(20));
    let sock = client.enter(|| {
        let s = UdpSocket::bind("198.18.0.1:0").unwrap();
        s.connect("198.18.0.2:53").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        s
    });
    let reader = sock.try_clone().unwrap();
    let (stop, done) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let (answers_tx, answers) = std::sync::mpsc::channel::<(usize, u8)>();
    let reading = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while !done.load(Ordering::SeqCst) {
                if let Ok(n) = reader.recv(&mut buf) {
                    let id = u16::from_be_bytes([buf[0], buf[1]]) as usize;
                    // The A record's address ends the answer: 198.18.9.X.
                    if n > 12 + 4 && id < N {
                        let _ = answers_tx.send((id, buf[n - 1]));
                    }
                }
            }
        })
    };
    let start = Instant::now();
    let sending = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut sent = Vec::with_capacity(N);
            for i in 0..N {
                if stop.load(Ordering::SeqCst) || start.elapsed() > until {
                    break;
                }
                let at = start + EVERY * i as u32;
                std::thread::sleep(at.saturating_duration_since(Instant::now()));
                // A send the socket refuses (an ICMP error pending on it)
                // is no query: None.
                let at = Instant::now();
                sent.push(sock.send(&query(i as u16)).ok().map(|_| at));
            }
            sent
        })
    };

    let packets = |name: &str| backend_packets(&status_on(&lb, "veth-b"), name);
    let others = || packets("5301") + packets("5303");
    std::thread::sleep(Duration::from_millis(1500));
    let killed = Instant::now();
    servers[1].kill();
    u.wait_for("5302 down: 2 dns probes", Duration::from_secs(3));
    let down_after = killed.elapsed();
    // Once the down transition is logged, the ring no longer holds 5302:
    // while queries keep flowing to the others, none reaches it.
    let (at_down, others_at_down) = (packets("5302"), others());
    std::thread::sleep(Duration::from_millis(1500));
    let before_restart = packets("5302");
    assert!(others() > others_at_down, "no queries flowed meanwhile");
    assert_eq!(
        before_restart, at_down,
        "queries went to 5302 after its down transition"
    );
    let restarted = Instant::now();
    servers[1] = dnsmasq(&lb, 5302);
    let up = u.wait_for("5302 up: 2 dns probes answered", Duration::from_secs(3));
    let back_after = restarted.elapsed();
    // Back in the ring: queries reach it again.
    let deadline = Instant::now() + support::slow(Duration::from_secs(5));
    while packets("5302") == before_restart {
        assert!(
            Instant::now() < deadline,
            "5302 got no queries after it came back"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::SeqCst);
    let sent = sending.join().unwrap();

    // Every query forwarded to a live server is answered, by that server:
    // the queries lost are 5302's (dead, or unread when it was killed).
    // Waits (bounded) for the last answers to come in.
    let mut answered: Vec<Option<u8>> = vec![None; sent.len()];
    let mut by = [0u64; 4];
    let deadline = Instant::now() + Duration::from_secs(5);
    let counters = || [packets("5301"), packets("5302"), packets("5303")];
    let mut forwarded = counters();
    while [by[1], by[3]] != [forwarded[0], forwarded[2]] && Instant::now() < deadline {
        match answers.recv_timeout(Duration::from_millis(100)) {
            Ok((id, server)) => {
                if answered[id].replace(server).is_none() {
                    by[server as usize % 4] += 1;
                }
            }
            Err(_) => forwarded = counters(),
        }
    }
    done.store(true, Ordering::SeqCst);
    reading.join().unwrap();
    assert_eq!(
        [by[1], by[3]],
        [forwarded[0], forwarded[2]],
        "answers of 5301 and 5303 against the queries forwarded to them"
    );

    let lost: Vec<usize> = (0..sent.len())
        .filter(|&i| sent[i].is_some() && answered[i].is_none())
        .collect();
    let refused = sent.iter().filter(|s| s.is_none()).count();
    assert!(
        !lost.is_empty(),
        "the kill lost nothing: was 5302 in the ring?"
    );
    assert_eq!(
        lost.len() as u64,
        forwarded[1] - by[2],
        "the queries lost are those forwarded to 5302 and not answered"
    );
    let window = sent[*lost.last().unwrap()].unwrap() - sent[lost[0]].unwrap();
    // Figures for the reader, not bounds: a loaded machine stretches them.
    println!(
        "dns checks (interval {interval} ms, fall {fall}, rise {rise}): {} of {} queries lost \
         ({refused} sends refused), loss window {window:?}; down logged {down_after:?} after the kill; back \
         {back_after:?} after the restart: {up}",
        lost.len(),
        sent.len()
    );
    let (_, out) = u.stop(Signal::SIGTERM);
    assert!(out.contains("backend 5302 "), "{out}");
}

#[test]
fn local_backends_without_a_socket_are_down_without_any_probe() {
    let ns = Netns::new("hs");
    let b1 = ns.udp_bind("127.0.0.1:9876");
    let b2 = ns.udp_bind("127.0.0.1:9877");
    let mut u = Udplb::start(&ns, &["lo", "9875=9876,9877"]);
    let client = ns.udp_bind("127.0.0.1:0");
    let send = |n: usize| {
        for i in 0..n {
            client
                .send_to(format!("d{i}").as_bytes(), "127.0.0.1:9875")
                .unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    send(10);
    b1.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 64];
    let mut got = 0;
    while b1.recv(&mut buf).is_ok() {
        got += 1;
    }
    assert!((4..=6).contains(&got), "round robin before: {got} of 10");

    let closed = Instant::now();
    drop(b2);
    let line = u.wait_for("9877 down", Duration::from_secs(2));
    let detected = closed.elapsed();
    assert!(
        line.ends_with("9877 down: no UDP socket is bound to port 9877"),
        "{line}"
    );
    // From 200 ms after the close on, nothing goes to 9877's port: the
    // kernel would count each such datagram as NoPorts.
    std::thread::sleep(Duration::from_millis(200).saturating_sub(closed.elapsed()));
    let noports = ns.snmp("Udp", "NoPorts");
    send(40);
    assert_eq!(
        ns.snmp("Udp", "NoPorts"),
        noports,
        "datagrams still go to 9877"
    );
    let mut got = 0;
    while b1.recv(&mut buf).is_ok() {
        got += 1;
    }
    assert_eq!(got, 40, "all to 9876");
    println!("socket liveness: 9877 down {detected:?} after its socket closed");
    // `udplb status` keeps its weight and says down (issue 24 item 6): a
    // configured backend, its weight as set, that health took out (the
    // table shows such a backend as "1 down": src/daemon/status.rs's
    // unit test).
    let s = support::operate::status(&ns);
    let b = backend(&s, "9877");
    assert_eq!(b["weight"], 1, "{b}");
    assert_eq!(b["state"], "active", "{b}");
    assert_eq!(b["health"]["state"], "down", "{b}");
    assert_eq!(
        b["health"]["cause"], "no UDP socket is bound to port 9877",
        "{b}"
    );

    let b2 = ns.udp_bind("127.0.0.1:9877");
    u.wait_for(
        "9877 up: a UDP socket is bound to port 9877",
        Duration::from_secs(2),
    );
    send(10);
    b2.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut got = 0;
    while b2.recv(&mut buf).is_ok() {
        got += 1;
    }
    // Per-CPU round-robin cursors: about half, whatever CPU sent.
    assert!((3..=7).contains(&got), "9877 back in the ring: {got} of 10");
    let (_, out) = u.stop(Signal::SIGTERM);
    assert!(out.contains("backend 9877 "), "{out}");
}

/// Echo backends on 127.0.0.1 in `ns`: they answer the udp probes.
fn echoes(ns: &Netns, ports: &[u16]) -> Vec<Echo> {
    Echo::setup(Reply::Payload).start_ports(ns, "127.0.0.1", ports)
}

/// Probes every 100 ms with an 80 ms timeout, or that times the slowdown
/// on a slow machine (an emulated kernel answers HTTP in more than 80 ms).
fn probe_timing(config: &str) -> String {
    let ms = |n| {
        support::slow(Duration::from_millis(n))
            .as_millis()
            .to_string()
            + "ms"
    };
    config
        .replace("INTERVAL", &ms(100))
        .replace("TIMEOUT", &ms(80))
}

/// Intervals of probe_timing, waited.
fn intervals(n: u64) -> Duration {
    support::slow(Duration::from_millis(100 * n))
}

const LO_UDP: &str = r#"
interface = "lo"
[[frontend]]
listen = "9875"
backends = [9876, 9877]
[frontend.health]
check = "udp"
payload = "ping"
interval = "INTERVAL"
timeout = "TIMEOUT"
rise = 2
fall = 2
sockets = false
"#;

#[test]
fn udp_probes_on_lo_are_exempt_from_the_reply_rewrite() {
    let ns = Netns::new("hp");
    let servers = echoes(&ns, &[9876, 9877]);
    let file = TempFile::new("lb.toml", &probe_timing(LO_UDP));
    let mut u = Udplb::start(&ns, &["--config", file.path()]);
    // Ten intervals: a probe whose rewritten reply did not count would
    // have taken both down after two.
    std::thread::sleep(intervals(10));
    let s = status_on(&ns, "lo");
    for b in s["frontends"][0]["backends"].as_array().unwrap() {
        assert_eq!(b["health"]["state"], "up", "{b}");
    }
    servers[1].answer(false);
    let line = u.wait_for("9877 down", Duration::from_secs(2));
    assert!(
        line.ends_with("9877 down: 2 udp probes timed out"),
        "{line}"
    );
    servers[1].answer(true);
    u.wait_for("9877 up: 2 udp probes answered", Duration::from_secs(2));
    let (_, out) = u.stop(Signal::SIGTERM);
    assert!(!out.contains("9876 down"), "{out}");
    for echo in servers {
        assert!(echo.heard() >= 10, "probes reached the backends");
    }
}

#[test]
fn all_down_fails_open_unless_told_to_drop() {
    for drop_all in [false, true] {
        let ns = Netns::new("ha");
        let servers = echoes(&ns, &[9876, 9877]);
        let text = match drop_all {
            false => LO_UDP.to_string(),
            true => LO_UDP.replace("sockets = false", "sockets = false\non_all_down = \"drop\""),
        };
        let file = TempFile::new("lb.toml", &probe_timing(&text));
        let mut u = Udplb::start(&ns, &["--config", file.path()]);
        for echo in &servers {
            echo.answer(false);
        }
        let line = u.wait_for("every backend is down", Duration::from_secs(2));
        assert_eq!(line.contains("fail open"), !drop_all, "{line}");
        assert!(!line.contains("  "), "one line, no run of spaces: {line}");
        let before = status_on(&ns, "lo");
        let client = ns.udp_bind("127.0.0.1:0");
        for i in 0..10 {
            client
                .send_to(format!("d{i}").as_bytes(), "127.0.0.1:9875")
                .unwrap();
        }
        std::thread::sleep(Duration::from_millis(100));
        let after = status_on(&ns, "lo");
        let sent: u64 = ["9876", "9877"]
            .iter()
            .map(|b| backend_packets(&after, b) - backend_packets(&before, b))
            .sum();
        // Probes go to the backends' ports directly: not counted here.
        assert_eq!(sent, if drop_all { 0 } else { 10 }, "drop: {drop_all}");
        u.stop(Signal::SIGTERM);
    }
}

/// python3's http.server on 198.18.2.2:8000 in `ns`: the health check's
/// real HTTP server.
fn http_server(ns: &Netns) -> Server {
    servers::http_server(ns, "198.18.2.2", 8000, "/")
}

#[test]
fn tcp_and_http_checks_against_a_backend_host() {
    let t = triangle();
    let file = triangle_file(
        &["198.18.1.2:53", "198.18.2.2:53"],
        &probe_timing(
            r#"check = "tcp"
port = 7000
interval = "INTERVAL"
timeout = "TIMEOUT"
[frontend.health.backend."198.18.2.2:53"]
check = "http"
port = 8000
path = "/"
"#,
        ),
    );
    let listener: TcpListener = t.srv[0].enter(|| TcpListener::bind("198.18.1.2:7000").unwrap());
    let mut http = http_server(&t.srv[1]);
    let mut u = Udplb::start(&t.lb, &["--config", file.path()]);
    std::thread::sleep(intervals(6));
    assert!(
        !u.output.iter().any(|l| l.contains(" down:")),
        "{:?}",
        u.output
    );

    drop(listener);
    let line = u.wait_for("198.18.1.2:53 down", Duration::from_secs(2));
    assert!(line.contains("3 tcp probes"), "{line}");
    http.kill();
    let line = u.wait_for("198.18.2.2:53 down", Duration::from_secs(2));
    assert!(line.contains("3 http probes"), "{line}");
    u.wait_for("every backend is down", Duration::from_secs(1));

    let _listener = t.srv[0].enter(|| TcpListener::bind("198.18.1.2:7000").unwrap());
    u.wait_for(
        "198.18.1.2:53 up: 2 tcp probes connected",
        Duration::from_secs(2),
    );
    let _http = http_server(&t.srv[1]);
    u.wait_for(
        "198.18.2.2:53 up: 2 http probes returned 2xx",
        Duration::from_secs(10),
    );
    let s = status_on(&t.lb, "l0,l1,l2");
    assert_eq!(s["frontends"][0]["backends"][1]["health"]["transitions"], 2);
    let _ = SocketAddr::from(([0, 0, 0, 0], 0));
    u.stop(Signal::SIGTERM);
}

/// dns checks against dnsmasq on two backend hosts, reached through
/// interfaces udplb is attached to: the answers come back to this host from
/// the backends and must reach the probes untranslated (they used to be
/// dropped as replies to this host, and every backend went down).
#[test]
fn dns_checks_against_backend_hosts_through_attached_interfaces() {
    let t = triangle();
    let file = triangle_file(
        &["198.18.1.2:53", "198.18.2.2:53"],
        &probe_timing(
            r#"check = "dns"
name = "health.udplb"
type = "A"
interval = "INTERVAL"
timeout = "TIMEOUT"
"#,
        ),
    );
    let mut servers: Vec<Server> = t.srv.iter().map(|ns| dnsmasq(ns, 53)).collect();
    for ns in &t.srv {
        wait_bound(ns, 53);
    }
    let mut u = Udplb::start(&t.lb, &["--config", file.path()]);
    std::thread::sleep(intervals(8));
    assert!(
        !u.output.iter().any(|l| l.contains(" down:")),
        "a backend answering its dns probes went down: {:?}",
        u.output
    );
    let s = status_on(&t.lb, "l0,l1,l2");
    for b in 0..2 {
        assert_eq!(s["frontends"][0]["backends"][b]["health"]["state"], "up");
    }
    servers[1].kill();
    let line = u.wait_for("198.18.2.2:53 down", Duration::from_secs(2));
    assert!(line.contains("dns probes"), "{line}");
    let s = status_on(&t.lb, "l0,l1,l2");
    assert_eq!(s["frontends"][0]["backends"][0]["health"]["state"], "up");
    assert!(
        s["verdicts"]["reply_to_local"].as_u64().unwrap() > 0,
        "the probes' answers pass as reply_to_local: {s}"
    );
    u.stop(Signal::SIGTERM);
}
