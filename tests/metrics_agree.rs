//! Metrics that agree (issue 24 item 2): udplb's verdict counters add up
//! to what the kernel counted on the interface (XDP's to the packets it
//! received, egress's to the packets it sent), replies are counted where
//! they are rewritten (XDP on lo, egress on a veth) under one name, a real
//! Prometheus server scraping udplb answers PromQL with what the test sent,
//! and `promtool check metrics` finds nothing to say about a real scrape.

use udplb_testkit as support;

use std::net::UdpSocket;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::Signal;
use support::netns::*;
use support::operate::*;
use support::process::*;
use support::prometheus::*;
use support::servers::Echo;
use support::sockets::*;

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The sum of `name`'s samples whose labels include every one of `labels`
/// (`k=v`).
fn total(m: &Metrics, name: &str, labels: &[&str]) -> f64 {
    (m.iter())
        .filter(|((n, l), _)| n == name && labels.iter().all(|w| l.split(',').any(|x| x == *w)))
        .map(|(_, v)| v)
        .sum()
}

fn verdict(m: &Metrics, hook: &str, v: &str) -> f64 {
    total(
        m,
        "udplb_packets_total",
        &[&format!("hook={hook}"), &format!("verdict={v}")],
    )
}

fn hook(m: &Metrics, hook: &str) -> f64 {
    total(m, "udplb_packets_total", &[&format!("hook={hook}")])
}

/// (received, sent) packets of `dev` in `ns`, as the kernel counts them.
fn link_packets(ns: &Netns, dev: &str) -> (f64, f64) {
    let out = ns.ip(&["-s", "-j", "link", "show", "dev", dev]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let s = &v[0]["stats64"];
    (
        s["rx"]["packets"].as_f64().unwrap(),
        s["tx"]["packets"].as_f64().unwrap(),
    )
}

/// The link's counters and a scrape taken while nothing crossed the link
/// (the IPv6 and ARP chatter of a fresh veth comes when it will: retried
/// until the link's counters did not move around the scrape).
fn quiet(ns: &Netns, dev: &str) -> ((f64, f64), Metrics) {
    for _ in 0..20 {
        let before = link_packets(ns, dev);
        let m = scrape(ns);
        if link_packets(ns, dev) == before {
            return (before, m);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{dev} never quiet for the length of a scrape");
}

/// Sends `n` datagrams on `sock` to `to`, one every 1/`rate` s on a fixed
/// schedule (a late one is sent at once, so the count per second holds
/// while the machine is loaded); returns the Unix time of each send.
/// Bounded: fails past twice the planned time plus 30 s.
fn send_paced(sock: &UdpSocket, to: &str, n: usize, rate: f64) -> Vec<f64> {
    let start = Instant::now();
    let limit = Duration::from_secs_f64(2.0 * n as f64 / rate + 30.0);
    let mut sent = Vec::with_capacity(n);
    for i in 0..n {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        assert!(start.elapsed() < limit, "sending {n} took over {limit:?}");
        sock.send_to(&payload(i as u32, 40), to).unwrap();
        sent.push(now_unix());
    }
    sent
}

/// Datagrams per second sent in the `window` seconds up to `at`.
fn sent_rate(sent: &[f64], at: f64, window: f64) -> f64 {
    sent.iter()
        .filter(|t| **t > at - window && **t <= at)
        .count() as f64
        / window
}

/// On a veth: every packet that came in has one XDP verdict, every packet
/// that went out one egress verdict, and the replies (rewritten by egress
/// there, XDP's `reply` staying 0) are counted once under each reply name.
/// A real Prometheus scraping udplb every second gets the totals exactly
/// and the rates within a quarter of what the sender achieved.
#[test]
fn prometheus_sees_what_was_sent_on_a_veth() {
    let (c, l) = (Netns::new("promc"), Netns::new("proml"));
    veth_pair(&c, &l);
    let _echoes: Vec<Echo> = (9876..=9877)
        .map(|p| Echo::named(&l, &format!("0.0.0.0:{p}"), "e"))
        .collect();
    let started = now_unix();
    let lb = Udplb::start(
        &l,
        &["--metrics", "127.0.0.1:9100", "veth-b", "9875=9876,9877"],
    );
    let prom = Prometheus::start(&l, "127.0.0.1:9100");
    prom.wait_for("up{job=\"udplb\"}", 1.0, Duration::from_secs(30));
    resolve_neighbour(&c, "198.18.0.2");

    let client = c.udp_bind("198.18.0.1:0");
    big_rcvbuf(&client);
    let (out0, in0) = (c.snmp("Udp", "OutDatagrams"), c.snmp("Udp", "InDatagrams"));
    let (link0, m0) = quiet(&l, "veth-b");
    // 3000 datagrams over 10 s.
    let (n, rate) = (3000, 300.0);
    let sent = send_paced(&client, "198.18.0.2:9875", n, rate);
    let echoed = recv_exactly(&client, n);
    assert!(echoed.iter().all(|(_, from)| from.port() == 9875));
    let n = n as f64;

    // What the kernel counted against udplb's verdicts, over the run.
    let (link1, m1) = quiet(&l, "veth-b");
    let d = |f: &dyn Fn(&Metrics) -> f64| f(&m1) - f(&m0);
    assert_eq!(c.snmp("Udp", "OutDatagrams") - out0, n as u64);
    assert_eq!(c.snmp("Udp", "InDatagrams") - in0, n as u64);
    assert_eq!(d(&|m| verdict(m, "xdp", "balanced")), n);
    assert_eq!(d(&|m| hook(m, "xdp")), link1.0 - link0.0, "XDP vs rx");
    assert_eq!(d(&|m| hook(m, "egress")), link1.1 - link0.1, "egress vs tx");
    assert_eq!(d(&|m| verdict(m, "egress", "reply")), n);
    assert_eq!(verdict(&m1, "xdp", "reply"), 0.0, "no reply reaches XDP");
    assert_eq!(
        d(&|m| total(m, "udplb_frontend_reply_packets_total", &[])),
        n
    );
    assert_eq!(
        d(&|m| total(m, "udplb_backend_reply_packets_total", &[])),
        n
    );
    assert_eq!(d(&|m| total(m, "udplb_backend_packets_total", &[])), n);

    // The same through PromQL: totals exact once a scrape followed the
    // last reply; nothing else sent UDP from the client namespace.
    prom.wait_for(
        "sum(udplb_backend_packets_total)",
        n,
        Duration::from_secs(30),
    );
    let ask = |q: &str| prom.scalar(q, None);
    assert_eq!(
        ask("sum(udplb_packets_total{hook=\"egress\",verdict=\"reply\"})"),
        n
    );
    assert_eq!(ask("sum(udplb_packets_total{verdict=\"reply\"})"), n);
    assert_eq!(ask("sum(udplb_frontend_reply_packets_total)"), n);
    assert_eq!(ask("sum(udplb_backend_reply_packets_total)"), n);
    let start_time = ask("udplb_start_time_seconds");
    assert!(
        (started..sent[0]).contains(&start_time),
        "start time {start_time}, test started at {started}"
    );

    // Rates 8 s into the run, over the 5 s before: against the sender's own
    // count in that window.
    let at = sent[0] + 8.0;
    let want = sent_rate(&sent, at, 5.0);
    for q in [
        "sum(rate(udplb_packets_total{hook=\"xdp\",verdict=\"balanced\"}[5s]))",
        "sum(rate(udplb_packets_total{hook=\"egress\",verdict=\"reply\"}[5s]))",
        "sum(rate(udplb_backend_packets_total[5s]))",
    ] {
        let got = prom.scalar(q, Some(at));
        eprintln!("{q} at +8 s: {got:.1}/s, sent {want:.1}/s");
        assert!(
            (got - want).abs() <= 0.25 * want,
            "{q}: {got}/s, the sender sent {want}/s"
        );
    }

    // promtool on a real scrape: nothing to say.
    let (_, _, body) = http_get(&l, "/metrics");
    assert_eq!(promtool_check(&body), (0, String::new()), "{body}");
    drop(prom);
    let (status, out) = lb.stop(Signal::SIGTERM);
    assert!(status.success(), "{out}");
    assert!(out.contains("egress verdicts: reply 3000, "), "{out}");
}

/// On lo, XDP sees both directions and rewrites the replies itself: its
/// UDP verdicts add up to every datagram the namespace sent (the requests
/// and the echoes), and there is no egress program to count anything.
#[test]
fn verdicts_add_up_to_the_datagrams_on_lo() {
    let ns = Netns::new("promlo");
    let _echoes: Vec<Echo> = (9876..=9877)
        .map(|p| Echo::named(&ns, &format!("127.0.0.1:{p}"), "e"))
        .collect();
    let lb = Udplb::start(
        &ns,
        &["--metrics", "127.0.0.1:9100", "lo", "9875=9876,9877"],
    );
    let udp =
        |m: &Metrics| hook(m, "xdp") - verdict(m, "xdp", "not_ip") - verdict(m, "xdp", "not_udp");
    let (out0, m0) = (ns.snmp("Udp", "OutDatagrams"), scrape(&ns));
    let client = ns.udp_bind("127.0.0.1:0");
    big_rcvbuf(&client);
    let n = 1000;
    send_paced(&client, "127.0.0.1:9875", n, 1000.0);
    recv_exactly(&client, n);
    let m1 = scrape(&ns);
    let sent = ns.snmp("Udp", "OutDatagrams") - out0;
    assert_eq!(sent, 2 * n as u64, "requests and echoes");
    assert_eq!(udp(&m1) - udp(&m0), sent as f64);
    let n = n as f64;
    assert_eq!(verdict(&m1, "xdp", "balanced"), n);
    assert_eq!(verdict(&m1, "xdp", "reply"), n);
    assert_eq!(total(&m1, "udplb_frontend_reply_packets_total", &[]), n);
    assert_eq!(total(&m1, "udplb_backend_reply_packets_total", &[]), n);
    assert_eq!(hook(&m1, "egress"), 0.0);
    assert!(
        !m1.keys().any(|(_, l)| l.contains("hook=egress")),
        "no egress program on lo: {m1:?}"
    );
    let (_, _, body) = http_get(&ns, "/metrics");
    assert_eq!(promtool_check(&body), (0, String::new()), "{body}");
    let (status, out) = lb.stop(Signal::SIGTERM);
    assert!(status.success(), "{out}");
}
