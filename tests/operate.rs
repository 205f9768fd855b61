//! Operating udplb like a service: /metrics read by a real Prometheus
//! parser (prometheus_client from PyPI), `udplb status` and `udplb reload`
//! over the control socket, the systemd notify protocol on a socket the test
//! owns, and the start-up warnings. Each in a network namespace of its own.

use udplb_testkit as support;

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::cpu::*;
use support::netns::*;
use support::operate::*;
use support::process::*;
use support::sockets::*;

/// `n` datagrams to 127.0.0.1:`port` in `ns`, from one CPU.
fn send(ns: &Netns, port: u16, n: usize) {
    ns.enter(|| {
        pin_to_cpu0();
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        for i in 0..n {
            s.send_to(&payload(i as u32, 40), ("127.0.0.1", port))
                .unwrap();
        }
    });
}

#[test]
fn metrics_parse_and_match_the_datapath() {
    let ns = Netns::new("metrics");
    let _backends: Vec<UdpSocket> = (9876..=9878)
        .map(|p| ns.udp_bind(&format!("127.0.0.1:{p}")))
        .collect();
    let lb = Udplb::start(
        &ns,
        &["--metrics", "127.0.0.1:9100", "lo", "9875=9876,9877,9878@2"],
    );
    send(&ns, 9875, 400);

    let (code, ctype, body) = http_get(&ns, "/metrics");
    assert_eq!(code, "HTTP/1.1 200 OK");
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    let m = parse_with_prometheus(&body);
    let fe = "frontend=*:9875";
    // Round robin from one CPU, weights 1:1:2 over 400 datagrams.
    for (b, n) in [("9876", 100.0), ("9877", 100.0), ("9878", 200.0)] {
        let l = format!("backend={b},{fe}");
        assert_eq!(sample(&m, "udplb_backend_packets_total", &l), n, "{b}");
        assert_eq!(sample(&m, "udplb_backend_configured", &l), 1.0);
    }
    assert_eq!(
        sample(&m, "udplb_backend_weight", &format!("backend=9878,{fe}")),
        2.0
    );
    assert_eq!(
        sample(&m, "udplb_packets_total", "hook=xdp,verdict=balanced"),
        400.0
    );
    assert_eq!(sample(&m, "udplb_build_info", "version=0.1.0"), 1.0);
    assert_eq!(sample(&m, "udplb_frontend_ring_entries", fe), 4.0);

    // The same figures as the datapath's own counters, which udplb prints
    // when it stops (no traffic in between).
    let (status, out) = lb.stop(Signal::SIGTERM);
    assert!(status.success(), "{out}");
    for (b, n) in [("9876", 100), ("9877", 100), ("9878@2", 200)] {
        let bytes = sample(
            &m,
            "udplb_backend_bytes_total",
            &format!("backend={},{fe}", b.split('@').next().unwrap()),
        );
        let want = format!("backend {b:<5}  packets {n:>12}  bytes {bytes:>14}");
        assert!(out.contains(&want), "no `{want}` in\n{out}");
    }

    // Other paths and methods get their status codes; the listener is gone
    // with udplb.
    assert!(ns.enter(|| TcpStream::connect("127.0.0.1:9100")).is_err());
}

#[test]
fn http_errors_and_a_stalled_client_do_not_stop_the_balancer() {
    let ns = Netns::new("httperr");
    let lb = Udplb::start(&ns, &["--metrics", "127.0.0.1:9100", "lo", "9875=9876"]);
    assert_eq!(http_get(&ns, "/nope").0, "HTTP/1.1 404 Not Found");
    // A client that connects and says nothing, and one that floods.
    let stalled = ns.enter(|| TcpStream::connect("127.0.0.1:9100").unwrap());
    ns.enter(|| {
        let mut s = TcpStream::connect("127.0.0.1:9100").unwrap();
        let _ = s.write_all(&[b'A'; 20000]);
    });
    let t = Instant::now();
    assert_eq!(http_get(&ns, "/metrics").0, "HTTP/1.1 200 OK");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    let post = ns.enter(|| {
        let mut s = TcpStream::connect("127.0.0.1:9100").unwrap();
        s.write_all(b"POST /metrics HTTP/1.1\r\n\r\n").unwrap();
        let mut t = String::new();
        s.read_to_string(&mut t).unwrap();
        t
    });
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");
    drop(stalled);
    let (status, out) = lb.stop(Signal::SIGTERM);
    assert!(status.success(), "{out}");
}

/// A config file with `backends` for frontend 9875, Maglev.
fn maglev_file(backends: &str) -> String {
    format!(
        "interface = \"lo\"\nsched = \"maglev\"\ntable_size = 251\n\n\
         [[frontend]]\nlisten = \"9875\"\nbackends = [{backends}]\n"
    )
}

#[test]
fn status_reload_and_fingerprints() {
    let (a, b) = (Netns::new("fpa"), Netns::new("fpb"));
    let fa = TempFile::new("fpa.toml", &maglev_file(r#""9876", "9877", "9878""#));
    let fb = TempFile::new("fpb.toml", &maglev_file(r#""9878", "9876", "9877""#));
    let lb_a = Udplb::start(&a, &["--config", fa.path()]);
    let lb_b = Udplb::start(&b, &["--config", fb.path()]);

    // Traffic during the snapshot: rates show it.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (sa, sb) = std::thread::scope(|s| {
        let sender = s.spawn(|| {
            let deadline = Instant::now() + Duration::from_secs(6);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
                send(&a, 9875, 50);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        std::thread::sleep(Duration::from_millis(2500));
        let sa = status(&a);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        sender.join().unwrap();
        (sa, status(&b))
    });
    let fe = &sa["frontends"][0];
    assert_eq!(fe["listen"], "*:9875");
    assert_eq!(fe["sched"], "maglev");
    assert_eq!(fe["ring_size"], 251);
    let pps: f64 = fe["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["traffic"]["packets_per_second"].as_f64().unwrap())
        .sum();
    assert!(pps > 100.0, "rates during traffic: {sa:#}");
    assert!(sa["rate_interval_seconds"].as_f64().unwrap() >= 1.0);
    // Same backends in another order: the same table.
    let fp = |s: &serde_json::Value| s["frontends"][0]["table_fingerprint"].clone();
    assert_eq!(fp(&sa), fp(&sb), "fingerprints of equal rings");
    assert_eq!(fp(&sa).as_str().unwrap().len(), 16);

    // The human table names what the JSON has.
    let (code, table, _) = udplb_cmd(&a, &["status"]);
    assert_eq!(code, 0);
    assert!(
        table.contains("*:9875 (maglev)") && table.contains("-> 9877"),
        "{table}"
    );

    // A good reload answers with the change, and a weight changes the table.
    fb.write(&maglev_file(r#""9878@2", "9876", "9877""#));
    let (code, out, err) = udplb_cmd(&b, &["reload"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("udplb: reloaded:"), "{out}");
    // Nothing listens in `b`: health holds all three down (failing open),
    // and the change line says so next to the weights as configured.
    assert!(
        out.contains("-> 9878@2 (down), 9876 (down), 9877 (down) (maglev)"),
        "{out}"
    );
    let after = status(&b);
    assert_ne!(fp(&after), fp(&sa), "a weight changes the fingerprint");
    assert_eq!(after["reloads"]["succeeded"], 1);

    // A bad file: exit 2 with file:line: field, nothing changed.
    fb.write(&maglev_file(r#""9878@2", "70000""#));
    let (code, out, err) = udplb_cmd(&b, &["reload"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains(&format!("{}:7: backends:", fb.path())),
        "{err}"
    );
    let unchanged = status(&b);
    assert_eq!(fp(&unchanged), fp(&after));
    assert_eq!(unchanged["reloads"]["failed"], 1);
    assert_eq!(
        unchanged["frontends"][0]["backends"][0]["weight"], 2,
        "{unchanged:#}"
    );

    // Removing a backend keeps its counters, marked removed.
    fa.write(&maglev_file(r#""9876", "9877""#));
    let (code, _, err) = udplb_cmd(&a, &["reload"]);
    assert_eq!(code, 0, "{err}");
    let s = status(&a);
    let gone = &s["frontends"][0]["backends"][2];
    assert_eq!(gone["name"], "9878");
    assert_eq!(gone["state"], "removed");
    let (status_a, out) = lb_a.stop(Signal::SIGTERM);
    assert!(status_a.success());
    assert!(out.contains("  (removed)"), "{out}");
    drop(lb_b);
}

#[test]
fn status_without_a_balancer_says_so() {
    let ns = Netns::new("nolb");
    let (code, _, err) = udplb_cmd(&ns, &["status"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("no udplb is running in this network namespace"),
        "{err}"
    );
    let (code, _, err) = udplb_cmd(&ns, &["reload", "eth7"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("no udplb answers on /run/udplb/eth7@"),
        "{err}"
    );
    // Reloading a balancer started without a file: refused, exit 2.
    let _lb = Udplb::start(&ns, &["lo", "9875=9876"]);
    let (code, _, err) = udplb_cmd(&ns, &["reload"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("started without --config"), "{err}");
}

#[test]
fn six_interfaces_with_the_longest_names_answer_status() {
    let ns = Netns::new("six");
    // 15 bytes each, the most an interface name has: the plain socket
    // name (95 bytes of names) would not fit sun_path.
    let names: Vec<String> = (0..6).map(|i| format!("udplb-long-if-{i}")).collect();
    for n in &names {
        let peer = n.replace("udplb-", "peer--");
        ns.ip(&["link", "add", n, "type", "veth", "peer", "name", &peer]);
        for dev in [n.as_str(), &peer] {
            ns.ip(&["link", "set", dev, "up"]);
        }
    }
    let ifaces = names.join(",");
    let lb = Udplb::start(&ns, &["--xdp-mode", "generic", &ifaces, "9875=9876"]);
    // Found without a name, and by its interfaces.
    assert_eq!(status(&ns)["interfaces"], ifaces.as_str());
    let (code, out, err) = udplb_cmd(&ns, &["status", &ifaces, "--json"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("\"interfaces\": \"{ifaces}\"")),
        "{out}"
    );
    let (status, out) = lb.stop(Signal::SIGTERM);
    assert!(status.success(), "{out}");
}

/// A user without root cannot reach the control socket (0600 in a 0700
/// directory): udplb says so and exits 2, rather than claiming that no
/// balancer runs.
#[test]
fn status_and_reload_without_root_say_they_need_it() {
    let ns = Netns::new("user");
    let _lb = Udplb::start(&ns, &["lo", "9875=9876"]);
    let one_line = |(code, out, err): (i32, String, String), want: &str| {
        assert_eq!(code, 2, "{err}");
        assert!(out.is_empty(), "{out}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.starts_with(&format!("udplb: error: {want}")), "{err}");
    };
    for request in ["status", "reload"] {
        one_line(
            udplb_cmd_as_nobody(&ns, &[request]),
            &format!(
                "udplb {request} needs root: the control sockets under /run/udplb are root's \
                 (sudo udplb {request})"
            ),
        );
    }
    one_line(
        udplb_cmd_as_nobody(&ns, &["status", "lo", "--json"]),
        "udplb status needs root: the control socket /run/udplb/lo@",
    );
    // Root, meanwhile, reaches it.
    assert_eq!(status(&ns)["interfaces"], "lo");
}

/// The notify messages udplb sent, each split into its lines.
fn notifications(sock: &UnixDatagram, until: &str, wait: Duration) -> Vec<Vec<String>> {
    let mut got = Vec::new();
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        sock.set_read_timeout(Some(deadline - Instant::now()))
            .unwrap();
        let Ok(n) = sock.recv(&mut buf) else { break };
        let msg: Vec<String> = String::from_utf8_lossy(&buf[..n])
            .lines()
            .map(str::to_string)
            .collect();
        let done = msg.iter().any(|l| l == until);
        got.push(msg);
        if done {
            break;
        }
    }
    got
}

#[test]
fn systemd_notify_sequence() {
    let ns = Netns::new("notify");
    let path = std::env::temp_dir().join(format!("udplb-notify-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let sock = UnixDatagram::bind(&path).unwrap();
    let file = TempFile::new("notify.toml", &maglev_file(r#""9876""#));
    let lb = Udplb::start_with_env(
        &ns,
        &["--config", file.path()],
        &[("NOTIFY_SOCKET", path.to_str().unwrap())],
    );
    let ready = notifications(&sock, "READY=1", Duration::from_secs(5));
    assert_eq!(ready.len(), 1, "{ready:?}");
    assert!(ready[0].contains(&"READY=1".to_string()), "{ready:?}");
    assert!(
        ready[0]
            .iter()
            .any(|l| l.starts_with("STATUS=balancing 1 frontends")),
        "{ready:?}"
    );

    file.write(&maglev_file(r#""9876", "9877""#));
    let (code, _, err) = udplb_cmd(&ns, &["reload"]);
    assert_eq!(code, 0, "{err}");
    let reload = notifications(&sock, "READY=1", Duration::from_secs(5));
    assert_eq!(reload.len(), 2, "{reload:?}");
    assert_eq!(reload[0][0], "RELOADING=1");
    assert!(reload[0][1].starts_with("MONOTONIC_USEC="), "{reload:?}");
    assert!(reload[1].contains(&"READY=1".to_string()), "{reload:?}");

    lb.signal(Signal::SIGTERM);
    let stop = notifications(&sock, "STOPPING=1", Duration::from_secs(5));
    assert_eq!(stop, vec![vec!["STOPPING=1".to_string()]]);
    let (status, out) = lb.stop(Signal::SIGTERM);
    assert!(status.success() || out.contains("final counters"), "{out}");
    let _ = std::fs::remove_file(&path);
}

#[test]
fn start_up_warnings_name_each_foot_gun() {
    let ns = Netns::new("warn");
    ns.ip(&["addr", "add", "198.18.0.9/32", "dev", "lo"]);
    let _taken = ns.udp_bind("127.0.0.1:9875"); // the frontend's port
    let _b1 = ns.udp_bind("127.0.0.1:9876"); // 9877: nothing
    let mut lb = Udplb::start(
        &ns,
        &["lo", "9875=9876,9877", "198.18.0.1:53=198.18.0.9:5353"],
    );
    for needle in [
        "frontend *:9875: a local socket listens on 127.0.0.1:9875",
        "frontend *:9875: nothing listens on local backend port 9877",
        "frontend 198.18.0.1:53: backend 198.18.0.9:5353 is an address of this host",
    ] {
        lb.wait_for(needle, Duration::from_secs(5));
    }
    let (status, out) = lb.stop(Signal::SIGTERM);
    assert!(status.success(), "{out}");
    assert!(
        !out.contains("nothing listens on local backend port 9876"),
        "{out}"
    );
}
