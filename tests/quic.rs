//! Real QUIC connections (aioquic) through udplb, end to end in namespaces:
//!
//!   client ns: veth-a 198.18.0.1 (and 198.18.0.3, for migration)
//!     | veth
//!   balancer ns: veth-b 198.18.0.2, udplb on veth-b, frontend
//!   198.18.0.2:443; QUIC servers on local ports 4431-4434, each issuing
//!   QUIC-LB connection IDs with its own server ID (0a01-0a04)
//!
//! - NAT rebinding: 30 connections, each moving to a new source port after
//!   two of its four requests: all complete through a `quic` frontend; the
//!   same run under `--sched maglev` is printed beside it (the new 4-tuple
//!   hashes elsewhere for about two thirds of them);
//! - migration to a second client address, the same way;
//! - handshakes started while a backend is added and another removed (by
//!   SIGHUP) complete, but for connections on the removed backend;
//! - (the flow table's issue) 20 connections through `--sched maglev` with
//!   the flow table stay up across a backend add, a drain and a removal of
//!   another backend (the added one, which carries none of them).

use udplb_testkit as support;

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::netns::{veth_pair, Netns};
use support::operate::{backend_packets, sample, scrape, status, udplb_cmd};
use support::process::{TempFile, Udplb};
use support::quic::{clients, require_aioquic, Clients, Server, Summary};

const FRONTEND: &str = "198.18.0.2:443";

/// (port, server ID) of the backends.
const BACKENDS: [(u16, &str); 4] = [
    (4431, "0a01"),
    (4432, "0a02"),
    (4433, "0a03"),
    (4434, "0a04"),
];

struct Setup {
    client: Netns,
    lb: Netns,
    _servers: Vec<Server>,
}

/// The two namespaces and a QUIC server on every backend port.
fn setup(tag: &str) -> Setup {
    require_aioquic();
    let (client, lb) = (
        Netns::new(&format!("{tag}c")),
        Netns::new(&format!("{tag}l")),
    );
    veth_pair(&client, &lb);
    client.ip(&["addr", "add", "198.18.0.3/24", "dev", "veth-a"]);
    let servers = BACKENDS
        .iter()
        .map(|(port, sid)| Server::start(&lb, *port, sid, &format!("server-{sid}")))
        .collect();
    Setup {
        client,
        lb,
        _servers: servers,
    }
}

/// `PORT#SID` (quic) or `PORT` (maglev) for the first `n` backends, with
/// weights from `weights` where given.
fn backends(sched: &str, ports: &[u16], weights: &[(u16, u32)]) -> Vec<String> {
    ports
        .iter()
        .map(|p| {
            let sid = BACKENDS.iter().find(|(q, _)| q == p).unwrap().1;
            let mut b = match sched {
                "quic" => format!("{p}#{sid}"),
                _ => p.to_string(),
            };
            if let Some((_, w)) = weights.iter().find(|(q, _)| q == p) {
                b += &format!("@{w}");
            }
            b
        })
        .collect()
}

fn spec(sched: &str) -> String {
    format!(
        "{FRONTEND}={}",
        backends(sched, &[4431, 4432, 4433], &[]).join(",")
    )
}

/// The aioquic clients, from 198.18.0.1 to the frontend: `connections`
/// connections of `requests` requests each, moving after `move_after` of
/// them (0: never), and the arguments `more`.
fn start_clients(
    s: &Setup,
    [connections, requests, move_after]: [u32; 3],
    more: &[&str],
) -> Clients {
    let counts = [connections, requests, move_after].map(|n| n.to_string());
    let mut args = vec!["--server", FRONTEND, "--bind", "198.18.0.1"];
    args.extend(["--connections", &counts[0], "--requests", &counts[1]]);
    args.extend(["--move-after", &counts[2]]);
    args.extend(more);
    clients(&s.client, &args)
}

/// 30 connections moving after two requests (rebinding, or to `migrate`).
fn moving(sched: &str, migrate: Option<&str>) -> Summary {
    let s = setup(&format!("q{}", &sched[..1]));
    let metrics = ["--metrics", "127.0.0.1:9100"];
    let lb = Udplb::start(
        &s.lb,
        &[&metrics[..], &["--sched", sched, "veth-b", &spec(sched)]].concat(),
    );
    let migrate: Vec<&str> = migrate.map(|a| vec!["--migrate-to", a]).unwrap_or_default();
    let summary = start_clients(&s, [30, 4, 2], &migrate).wait(Duration::from_secs(90));
    if sched == "quic" {
        shows_the_counters(&s.lb);
    }
    let (_, out) = lb.stop(Signal::SIGTERM);
    if sched == "quic" {
        assert!(out.contains("quic: routed "), "final counters: {out}");
    }
    assert_eq!(
        summary.moved, summary.connections,
        "every connection moved: {summary:?}"
    );
    summary
}

/// `udplb status` and /metrics show the QUIC counters: requests routed by
/// CID, and Initials with the client's own CID that went by the ring.
fn shows_the_counters(lb: &Netns) {
    let s = status(lb);
    let quic = &s["quic_events"];
    assert!(quic["routed"].as_u64().unwrap() > 100, "{quic}");
    assert!(quic["client_cid"].as_u64().unwrap() >= 30, "{quic}");
    // The table shows them too (its presentation, not a source of figures).
    let (code, table, err) = udplb_cmd(lb, &["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("quic: ") && l.contains("routed ") && l.contains("client_cid ")),
        "{table}"
    );
    let m = scrape(lb);
    let routed = sample(&m, "udplb_quic_packets_total", "outcome=routed");
    assert!(routed > 100.0, "{m:?}");
}

fn figure(s: &Summary) -> String {
    format!("{}/{}", s.completed, s.connections)
}

#[test]
fn rebinding_clients_keep_their_connections() {
    let quic = moving("quic", None);
    let maglev = moving("maglev", None);
    eprintln!(
        "NAT rebinding, 30 connections: quic {} complete, maglev {} complete",
        figure(&quic),
        figure(&maglev)
    );
    assert_eq!(quic.completed, 30, "{quic:?}");
    assert!(
        quic.servers.len() >= 2,
        "spread over the backends: {quic:?}"
    );
}

#[test]
fn migrating_clients_keep_their_connections() {
    let quic = moving("quic", Some("198.18.0.3"));
    let maglev = moving("maglev", Some("198.18.0.3"));
    eprintln!(
        "migration to a second address, 30 connections: quic {} complete, maglev {} complete",
        figure(&quic),
        figure(&maglev)
    );
    assert_eq!(quic.completed, 30, "{quic:?}");
}

fn file(sched: &str, ports: &[u16], weights: &[(u16, u32)], flow_timeout: u32) -> String {
    let list: Vec<String> = backends(sched, ports, weights)
        .iter()
        .map(|b| format!("{b:?}"))
        .collect();
    format!(
        "interface = \"veth-b\"\nflow_timeout = {flow_timeout}\n[[frontend]]\n\
         listen = \"{FRONTEND}\"\nsched = \"{sched}\"\nbackends = [{}]\n",
        list.join(", ")
    )
}

/// Rewrites the file, sends SIGHUP and waits until udplb applied it.
fn reload(lb: &mut Udplb, f: &TempFile, text: String, sched: &str) {
    f.write(&text);
    lb.signal(Signal::SIGHUP);
    let list = text.split("backends = [").nth(1).unwrap().trim_end();
    let want = format!(
        "-> {} ({sched})",
        list.trim_end_matches(']').replace('"', "")
    );
    lb.wait_for(&want, Duration::from_secs(5));
}

/// Datagrams udplb forwarded so far to the backend on local `port`.
fn forwarded(lb: &Netns, port: u16) -> u64 {
    backend_packets(&status(lb), &port.to_string())
}

/// Datagrams udplb forwarded so far to all backends, removed ones included.
fn total_forwarded(lb: &Netns) -> u64 {
    let s = status(lb);
    let backends = s["frontends"][0]["backends"].as_array().unwrap();
    backends
        .iter()
        .map(|b| b["traffic"]["packets"].as_u64().unwrap())
        .sum()
}

/// Polls `done` until it holds; fails the test after 30 s.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "not within 30 s: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn handshakes_during_a_backend_add_and_removal_complete() {
    let s = setup("qh");
    let f = TempFile::new("quic.toml", &file("quic", &[4431, 4432], &[], 60));
    let mut lb = Udplb::start(&s.lb, &["--config", f.path()]);
    // 40 connections started over 4 s, each with four requests 100 ms
    // apart and a new source port after the second. The reloads follow
    // the traffic, not the clock: the add once both backends carry
    // connections, the removal once the added one does.
    let run = start_clients(&s, [40, 4, 2], &["--interval", "0.1", "--spread", "4"]);
    wait_until("connections on 4431 and 4432", || {
        forwarded(&s.lb, 4431) >= 20 && forwarded(&s.lb, 4432) >= 20
    });
    reload(
        &mut lb,
        &f,
        file("quic", &[4431, 4432, 4433], &[], 60),
        "quic",
    );
    wait_until("connections on the added 4433", || {
        forwarded(&s.lb, 4433) >= 20
    });
    reload(&mut lb, &f, file("quic", &[4432, 4433], &[], 60), "quic");
    let at_removal = forwarded(&s.lb, 4432) + forwarded(&s.lb, 4433);
    let summary = run.wait(Duration::from_secs(90));
    eprintln!(
        "handshakes over a backend add and removal: {} complete; broken by server ID: {:?}",
        figure(&summary),
        summary.broken_by_server_id
    );
    // The clients were still at work after the removal.
    assert!(
        forwarded(&s.lb, 4432) + forwarded(&s.lb, 4433) > at_removal,
        "no traffic after the removal: {summary:?}"
    );
    // Only connections that the removed backend (0a01) served at that
    // moment may break: it is gone. Every other one completes, handshakes
    // that got no server at all ("none") included.
    let others: u32 = (summary.broken_by_server_id.iter())
        .filter(|(sid, _)| sid.as_str() != "0a01")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(others, 0, "{summary:?}");
    for kept in ["server-0a02", "server-0a03"] {
        assert!(summary.servers.contains_key(kept), "{kept}: {summary:?}");
    }
}

/// 20 long connections (20 requests, 250 ms apart) through Maglev with a
/// flow table of `flow_timeout` s, across an add, a drain and a removal.
fn maglev_across_reloads(flow_timeout: u32) -> Summary {
    let s = setup("qf");
    let f = TempFile::new(
        "maglev.toml",
        &file("maglev", &[4431, 4432, 4433], &[], flow_timeout),
    );
    let mut lb = Udplb::start(&s.lb, &["--config", f.path()]);
    let run = start_clients(&s, [20, 20, 0], &["--interval", "0.25", "--spread", "0.5"]);
    // Each reload once the connections carried traffic on the table
    // before it (the connections last 5 s; the reloads follow the
    // traffic, not the clock); and traffic after the last one, so that
    // the connections did live across all three.
    let mut mark = 0;
    let mut traffic = |what: &str, more: u64| {
        wait_until(what, || total_forwarded(&s.lb) >= mark + more);
        mark = total_forwarded(&s.lb);
    };
    traffic("the connections under way", 100);
    let all = [4431, 4432, 4433, 4434];
    reload(
        &mut lb,
        &f,
        file("maglev", &all, &[], flow_timeout),
        "maglev",
    );
    traffic("traffic after the add", 50);
    reload(
        &mut lb,
        &f,
        file("maglev", &all, &[(4431, 0)], flow_timeout),
        "maglev",
    );
    traffic("traffic after the drain", 50);
    let fewer = [4431, 4432, 4433];
    reload(
        &mut lb,
        &f,
        file("maglev", &fewer, &[(4431, 0)], flow_timeout),
        "maglev",
    );
    traffic("traffic after the removal", 50);
    run.wait(Duration::from_secs(90))
}

#[test]
fn maglev_flow_table_keeps_quic_connections_across_reloads() {
    let with = maglev_across_reloads(60);
    let without = maglev_across_reloads(0);
    eprintln!(
        "20 QUIC connections across add, drain, removal (maglev): flow table {} broken, \
         no flow table {} broken",
        with.broken, without.broken
    );
    assert_eq!(with.broken, 0, "{with:?}");
    assert_eq!(with.completed, 20);
    // The control: the same reloads without the flow table break some,
    // so the connections did live across them.
    assert!(without.broken > 0, "{without:?}");
}
