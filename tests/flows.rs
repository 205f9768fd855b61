//! The flow table with real sockets on a namespace's lo: 300 flows (fixed
//! source ports) through `--sched maglev` to echoing backends, so that
//! replies pin them. Then: removing a backend moves none of the others'
//! flows, adding one moves no pinned flow, a drained backend keeps its
//! flows until they are idle for the flow timeout, and a flood of requests
//! from spoofed sources (that never get a reply) moves nothing. The client
//! runs on one CPU and the backends on another, so requests and replies
//! meet in the shared table from different CPUs.

use udplb_testkit as support;

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::cpu::*;
use support::netns::*;
use support::operate::{backend, status};
use support::packets::{udp, Csum};
use support::process::*;
use support::servers::{Echo, Reply};
use support::sockets::{clients_on, raw_socket, round_to, send_ip};

const FLOWS: u16 = 300;
const FIRST_SPORT: u16 = 20000;
/// The flood test's flow table: small, so that a flood can overfill it.
const TABLE_SLOTS: u32 = 4096;

/// The 300 clients, bound in the namespace on fixed source ports.
fn clients(ns: &Netns, first: u16, n: u16) -> Vec<UdpSocket> {
    clients_on(ns, "127.0.0.1", first, n)
}

/// One datagram per flow from a thread on `cpu`; the backend port each
/// flow's answer names.
fn round(socks: &[UdpSocket], cpu: Option<usize>) -> BTreeMap<usize, u16> {
    round_to(socks, "127.0.0.1:9875", cpu)
}

/// Waits (at most 10 s) until the UDP sockets on `ports` in `ns` have
/// nothing queued (`/proc/net/udp`, rx_queue).
fn wait_drained(ns: &Netns, ports: &[u16]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let table = ns.enter(|| std::fs::read_to_string("/proc/net/udp").expect("/proc/net/udp"));
        let queued: u64 = table
            .lines()
            .skip(1)
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let port = u16::from_str_radix(f.get(1)?.rsplit(':').next()?, 16).ok()?;
                let rx = u64::from_str_radix(f.get(4)?.rsplit(':').next()?, 16).ok()?;
                ports.contains(&port).then_some(rx)
            })
            .sum();
        if queued == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "backends still have {queued} B queued"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn moved(before: &BTreeMap<usize, u16>, after: &BTreeMap<usize, u16>, skip: Option<u16>) -> usize {
    before
        .iter()
        .filter(|(f, b)| Some(**b) != skip && after[f] != **b)
        .count()
}

fn config(backends: &str, timeout: u32) -> String {
    let list: Vec<String> = backends.split(',').map(|b| format!("\"{b}\"")).collect();
    format!(
        "interface = \"lo\"\nsched = \"maglev\"\nflow_timeout = {timeout}\n\
         [[frontend]]\nlisten = \"9875\"\nbackends = [{}]\n",
        list.join(", ")
    )
}

/// CPUs for the client and the backends: two different ones if we may.
fn cpus() -> (Option<usize>, Option<usize>) {
    match allowed_cpus().as_slice() {
        [a, b, ..] => (Some(*a), Some(*b)),
        _ => (None, None),
    }
}

/// Rewrites the file for `backends` and waits for udplb to say it applied
/// exactly that list (wait_for also finds older lines: "reloaded" would do
/// only once).
fn reload(lb: &mut Udplb, file: &TempFile, backends: &str, timeout: u32) {
    file.write(&config(backends, timeout));
    lb.signal(Signal::SIGHUP);
    let want = format!("-> {} (maglev)", backends.replace(',', ", "));
    lb.wait_for(&want, Duration::from_secs(5));
}

#[test]
fn pinned_flows_stay_across_removal_addition_and_drain() {
    let ns = Netns::new("flows");
    let (client_cpu, backend_cpu) = cpus();
    // Backends that answer with their own port, from the other CPU.
    let port_echo = Echo::setup(Reply::Port).on_cpu(backend_cpu);
    let _echo = port_echo.start_ports(&ns, "127.0.0.1", &[9876, 9877, 9878, 9879]);
    let file = TempFile::new("flows.toml", &config("9876,9877,9878", 2));
    let mut lb = Udplb::start(&ns, &["--config", file.path()]);
    let socks = clients(&ns, FIRST_SPORT, FLOWS);

    let first = round(&socks, client_cpu);
    for r in 0..2 {
        assert_eq!(
            moved(&first, &round(&socks, client_cpu), None),
            0,
            "round {r}"
        );
    }
    let on = |m: &BTreeMap<usize, u16>, p: u16| m.values().filter(|b| **b == p).count();
    for p in [9876, 9877, 9878] {
        assert!(on(&first, p) > 50, "{p}: {} of {FLOWS}", on(&first, p));
    }

    // Remove 9877: its flows move, no other flow does.
    reload(&mut lb, &file, "9876,9878", 2);
    let after_removal = round(&socks, client_cpu);
    let others = moved(&first, &after_removal, Some(9877));
    eprintln!("removing 9877: {others} flows of 9876/9878 moved");
    assert_eq!(others, 0, "flows on 9876 or 9878 moved when 9877 went");
    assert_eq!(on(&after_removal, 9877), 0);

    // Add 9879: no pinned flow moves.
    reload(&mut lb, &file, "9876,9878,9879", 2);
    let after_add = round(&socks, client_cpu);
    let n = moved(&after_removal, &after_add, None);
    eprintln!("adding 9879: {n} pinned flows moved");
    assert_eq!(n, 0, "pinned flows moved when 9879 came");
    // New flows do reach it.
    let fresh = clients(&ns, FIRST_SPORT + 1000, 100);
    assert!(on(&round(&fresh, client_cpu), 9879) > 0);

    // Drain 9876: its flows stay while they are busy...
    let on_9876 = on(&after_add, 9876);
    reload(&mut lb, &file, "9876@0,9878,9879", 2);
    let drained = round(&socks, client_cpu);
    let n = moved(&after_add, &drained, None);
    eprintln!("draining 9876: {n} flows moved, {on_9876} stay on it");
    assert_eq!(n, 0, "flows moved when 9876 was drained");
    let newer = clients(&ns, FIRST_SPORT + 2000, 100);
    assert_eq!(
        on(&round(&newer, client_cpu), 9876),
        0,
        "new flows on a drained backend"
    );
    // The drained backend still counts live flows (a number, not absent).
    let s = status(&ns);
    assert!(backend(&s, "9876")["live_flows"].is_u64(), "{s}");
    // ... and move once idle for the timeout (2 s).
    std::thread::sleep(Duration::from_millis(2600));
    let idle = round(&socks, client_cpu);
    assert_eq!(on(&idle, 9876), 0, "idle flows left the drained backend");
    let (exit, out) = lb.stop(Signal::SIGTERM);
    assert!(exit.success(), "{out}");
}

/// An IPv4/UDP datagram from `src`:sport to 127.0.0.1:9875, from its IP
/// header on (UDP checksum 0: none).
fn spoofed(src: [u8; 4], sport: u16) -> Vec<u8> {
    let src = std::net::Ipv4Addr::from(src);
    let f = udp(&format!("{src}:{sport}"), "127.0.0.1:9875")
        .payload(b"spam")
        .csum(Csum::Fixed(0))
        .build();
    f.bytes[f.l3..].to_vec()
}

#[test]
fn a_spoofed_flood_moves_no_pinned_flow() {
    let ns = Netns::new("flood");
    let (client_cpu, backend_cpu) = cpus();
    let port_echo = Echo::setup(Reply::Port).on_cpu(backend_cpu);
    let _echo = port_echo.start_ports(&ns, "127.0.0.1", &[9876, 9877, 9878]);
    let file = TempFile::new("flood.toml", &config("9876,9877,9878", 60));
    let mut lb = Udplb::start(
        &ns,
        &[
            "--config",
            file.path(),
            "--flow-table-size",
            &TABLE_SLOTS.to_string(),
        ],
    );
    let socks = clients(&ns, FIRST_SPORT, FLOWS);
    let first = round(&socks, client_cpu);
    // Move every pin off the ring's choice? No: the ring would agree. Make
    // them matter instead: drop 9877 from the ring by weight 0, so that only
    // the pins keep its flows there.
    reload(&mut lb, &file, "9876,9877@0,9878", 60);

    // Up to 100,000 datagrams from random sources in 198.19.0.0/16 (no
    // route back: never answered), through a raw socket in the namespace,
    // bounded in count and in time: 10 s of wall clock on any machine (not
    // scaled by `slow`: on an emulated kernel a longer flood starves the
    // guest). The question needs only more sources than the table has
    // slots, twice over: had the flood pinned flows, the LRU would have
    // evicted every real one.
    let sent = ns.enter(|| {
        let fd = raw_socket(false);
        let to = "127.0.0.1".parse().unwrap();
        let mut x: u32 = 0x9e3779b9;
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut sent = 0u32;
        while sent < 100_000 && Instant::now() < deadline {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let pkt = spoofed(
                [198, 19, (x >> 8) as u8, x as u8],
                1024 + (x >> 16) as u16 % 60000,
            );
            if send_ip(&fd, &pkt, to) == Ok(pkt.len()) {
                sent += 1;
            }
        }
        sent
    });
    assert!(
        sent >= 2 * TABLE_SLOTS,
        "only {sent} flood datagrams sent in 10 s: fewer than twice the {TABLE_SLOTS} slots of the table"
    );
    // The backends' sockets overflowed with the flood: let them drain, or
    // the next round's requests are dropped there (that is not the question).
    wait_drained(&ns, &[9876, 9877, 9878]);
    let after = round(&socks, client_cpu);
    let n = moved(&first, &after, None);
    let s = status(&ns);
    eprintln!("after a flood of {sent} spoofed datagrams: {n} pinned flows moved\n{s:#}");
    assert_eq!(n, 0, "pinned flows moved by the flood");
    let entries = s["flow_entries"].as_u64().unwrap_or(u64::MAX);
    assert!(
        entries <= FLOWS as u64,
        "{entries} entries: the flood pinned flows\n{s:#}"
    );
    let (exit, out) = lb.stop(Signal::SIGTERM);
    assert!(exit.success(), "{out}");
}

/// `--pin` restarts keep the flow table: 300 flows from a client namespace
/// across a veth, pinned by their replies (TC egress), are all still in
/// the table, live, after the first udplb stops (left attached) and a
/// second takes over.
#[test]
fn a_pinned_restart_keeps_the_flow_table() {
    let client = Netns::new("fpc");
    let lbns = Netns::new("fpb");
    veth_pair(&client, &lbns);
    // Pins live under /sys/fs/bpf/udplb/<iface> for the whole host.
    let dev = format!("fpin{}", std::process::id() % 1_000_000);
    lbns.ip(&["link", "set", "veth-b", "down"]);
    lbns.ip(&["link", "set", "veth-b", "name", &dev]);
    lbns.ip(&["link", "set", &dev, "up"]);
    support::sockets::resolve_neighbour(&client, "198.18.0.2");
    let _unpin = Unpin(dev.clone());
    let _echo = Echo::setup(Reply::Port).start_ports(&lbns, "0.0.0.0", &[9876, 9877, 9878]);
    let socks = clients_on(&client, "198.18.0.1", FIRST_SPORT, FLOWS);
    let args = ["--pin", "--sched", "maglev", &dev, "9875=9876,9877,9878"];
    let mut first = Udplb::start(&lbns, &args);
    first.wait_for("pinned under", Duration::from_secs(5));
    let before = round_to(&socks, "198.18.0.2:9875", None);
    let live = |s: &serde_json::Value| -> u64 {
        s["frontends"][0]["backends"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["live_flows"].as_u64().unwrap_or(0))
            .sum()
    };
    let s = status(&lbns);
    assert_eq!(s["flow_entries"], u64::from(FLOWS), "{s}");
    let (exit, out) = first.stop(Signal::SIGTERM);
    assert!(exit.success() && out.contains("left attached"), "{out}");

    let mut second = Udplb::start(&lbns, &args);
    second.wait_for("keeping the pinned flow table", Duration::from_secs(5));
    let s = status(&lbns);
    eprintln!(
        "after a --pin restart: {} entries, {} live",
        s["flow_entries"],
        live(&s)
    );
    assert_eq!(s["flow_entries"], u64::from(FLOWS), "{s}");
    assert_eq!(
        live(&s),
        u64::from(FLOWS),
        "pins live after the restart: {s}"
    );
    let after = round_to(&socks, "198.18.0.2:9875", None);
    assert_eq!(moved(&before, &after, None), 0);
    let s = status(&lbns);
    let hits = s["flow_events"]["hit"].as_u64().unwrap();
    assert!(
        hits >= u64::from(FLOWS),
        "requests after the restart hit their pins: {s}"
    );
    second.stop(Signal::SIGTERM);
}
