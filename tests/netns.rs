//! End-to-end tests with real sockets in network namespaces made here:
//! the example command on a namespace's own lo, and a client namespace
//! sending across a veth pair to udplb on the balancer's veth, with the
//! client's checksum offload on and off.

use udplb_testkit as support;

use std::net::{SocketAddr, UdpSocket};

use nix::sys::signal::Signal;
use support::cpu::*;
use support::netns::*;
use support::process::*;
use support::sockets::*;

const BACKENDS: [u16; 3] = [9876, 9877, 9878];
const PER_BACKEND: usize = 100;

fn len_of(seq: u32) -> usize {
    // From a small payload up to one that fills a 1500-byte IPv6 packet
    // (1452 bytes): larger ones would be fragmented, and IPv6 fragments
    // carry an extension header that udplb passes without balancing.
    20 + (seq as usize * 37) % 1433
}

/// Sends PER_BACKEND * 3 datagrams from a connected client pinned to one CPU,
/// then checks that backend k got exactly the datagrams k, k+3, k+6, ... in
/// order with exact payloads, echoes them back, and checks that the client
/// receives every reply (a connected socket only accepts replies from the
/// frontend address and port it sent to). Returns the client socket.
fn round_robin_and_replies(
    client_ns: &Netns,
    backends: &[UdpSocket],
    bind: &str,
    frontend: SocketAddr,
) {
    let total = PER_BACKEND * backends.len();
    let client = client_ns.enter(|| {
        pin_to_cpu0();
        let c = UdpSocket::bind(bind).expect("client bind");
        big_rcvbuf(&c);
        c.connect(frontend).expect("client connect");
        for seq in 0..total as u32 {
            c.send(&payload(seq, len_of(seq))).expect("client send");
        }
        c
    });
    let client_addr = client.local_addr().unwrap();

    for (k, b) in backends.iter().enumerate() {
        let got = recv_exactly(b, PER_BACKEND);
        for (j, (data, from)) in got.iter().enumerate() {
            let seq = seq_of(data);
            assert_eq!(
                seq as usize,
                k + j * backends.len(),
                "backend {k} datagram {j} out of round-robin order"
            );
            assert_eq!(
                data,
                &payload(seq, len_of(seq)),
                "payload of datagram {seq} changed"
            );
            assert_eq!(*from, client_addr, "datagram {seq} has the wrong source");
            b.send_to(data, from).expect("backend reply");
        }
    }

    client
        .set_read_timeout(Some(std::time::Duration::from_secs(2)))
        .unwrap();
    let mut seen = vec![false; total];
    let mut buf = vec![0u8; 65536];
    for i in 0..total {
        let (len, from) = client.recv_from(&mut buf).unwrap_or_else(|e| {
            panic!("reply {i} of {total} missing at the connected client: {e}")
        });
        assert_eq!(from, frontend, "reply did not come from the frontend");
        let seq = seq_of(&buf[..len]);
        assert_eq!(
            &buf[..len],
            payload(seq, len_of(seq)).as_slice(),
            "reply {seq} payload changed"
        );
        assert!(
            !std::mem::replace(&mut seen[seq as usize], true),
            "reply {seq} twice"
        );
    }
}

fn bind_backends(ns: &Netns, host: &str) -> Vec<UdpSocket> {
    BACKENDS
        .iter()
        .map(|p| {
            let s = ns.udp_bind(&format!("{host}:{p}"));
            big_rcvbuf(&s);
            s
        })
        .collect()
}

fn assert_final_counters(out: &str) {
    for port in BACKENDS {
        let line = format!("backend {port:<5}  packets {PER_BACKEND:>12}");
        assert!(out.contains(&line), "final counters lack `{line}`:\n{out}");
    }
    let replies = format!(
        "replies        packets {:>12}",
        PER_BACKEND * BACKENDS.len()
    );
    assert!(
        out.contains(&replies),
        "final counters lack `{replies}`:\n{out}"
    );
}

fn example_on_lo(host: &str, frontend: &str) {
    let ns = Netns::new("lo");
    let lb = Udplb::start(&ns, &["lo", "9875=9876,9877,9878"]);
    assert!(
        ns.xdp_on("lo").contains("xdpgeneric"),
        "lo: {}",
        ns.xdp_on("lo")
    );
    let backends = bind_backends(&ns, host);
    round_robin_and_replies(
        &ns,
        &backends,
        &format!("{host}:0"),
        frontend.parse().unwrap(),
    );
    assert_eq!(ns.snmp("Udp", "InCsumErrors"), 0);
    assert_eq!(ns.snmp("Udp", "InErrors"), 0);

    let (status, out) = lb.stop(Signal::SIGINT);
    assert!(
        status.success(),
        "udplb exited with {status} after SIGINT:\n{out}"
    );
    assert!(out.contains("detached from lo"), "{out}");
    assert_final_counters(&out);
    assert_eq!(ns.xdp_on("lo"), "", "XDP left on lo after SIGINT");
}

#[test]
fn example_command_on_lo_ipv4() {
    example_on_lo("127.0.0.1", "127.0.0.1:9875");
}

#[test]
fn example_command_on_lo_ipv6() {
    example_on_lo("[::1]", "[::1]:9875");
}

#[test]
fn example_command_on_lo_other_local_address() {
    // "any local address": 127.0.0.2 is local on lo too.
    example_on_lo("127.0.0.2", "127.0.0.2:9875");
}

#[test]
fn sigterm_detaches_and_exits_zero() {
    let ns = Netns::new("term");
    let lb = Udplb::start(&ns, &["lo", "9875=9876"]);
    let (status, out) = lb.stop(Signal::SIGTERM);
    assert!(status.success(), "exit {status} after SIGTERM:\n{out}");
    assert!(out.contains("final counters"), "{out}");
    assert_eq!(ns.xdp_on("lo"), "");
}

#[test]
fn sigkill_leaves_nothing_attached() {
    let ns = Netns::new("kill");
    let lb = Udplb::start(&ns, &["lo", "9875=9876,9877"]);
    assert_ne!(ns.xdp_on("lo"), "");
    let (status, _) = lb.stop(Signal::SIGKILL);
    assert!(!status.success());
    // The kernel releases the bpf_link when the last fd closes; give it a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !ns.xdp_on("lo").is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "XDP still on lo after SIGKILL: {}",
            ns.xdp_on("lo")
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Client namespace --veth-- balancer namespace with udplb on veth-b.
fn across_veth(tx_csum: bool, ipv6: bool) {
    let client = Netns::new("cli");
    let lbns = Netns::new("lb");
    veth_pair(&client, &lbns);
    set_tx_csum(&client, "veth-a", tx_csum);
    set_tx_csum(&lbns, "veth-b", tx_csum);
    let (bind, lb_addr) = if ipv6 {
        ("[::]", "2001:2::2")
    } else {
        ("0.0.0.0", "198.18.0.2")
    };
    resolve_neighbour(&client, lb_addr);

    let lb = Udplb::start(&lbns, &["veth-b", "9875=9876,9877,9878"]);
    assert!(
        lbns.xdp_on("veth-b").contains("xdp"),
        "{}",
        lbns.xdp_on("veth-b")
    );
    // Warnings on stderr may come before it: find the line.
    let attached = lb.line_with("attached to");
    assert!(attached.contains("replies: tcx egress"), "{attached}");
    let backends = bind_backends(&lbns, bind);
    let frontend: SocketAddr = if ipv6 {
        "[2001:2::2]:9875".parse().unwrap()
    } else {
        "198.18.0.2:9875".parse().unwrap()
    };

    // Requests in round-robin order with exact payloads at the backends;
    // every reply back at the connected client from the frontend (the TC
    // egress program rewrote it on its way out of veth-b).
    round_robin_and_replies(&client, &backends, &format!("{bind}:0"), frontend);
    assert_eq!(
        lbns.snmp("Udp", "InCsumErrors"),
        0,
        "balancer saw bad UDP checksums"
    );
    assert_eq!(
        client.snmp("Udp", "InCsumErrors"),
        0,
        "client saw bad UDP checksums"
    );

    let (status, out) = lb.stop(Signal::SIGINT);
    assert!(status.success(), "{out}");
    assert_final_counters(&out);
    assert_eq!(lbns.xdp_on("veth-b"), "", "XDP left on veth-b");
}

#[test]
fn veth_ipv4_checksum_offload_on() {
    across_veth(true, false);
}

#[test]
fn veth_ipv4_checksum_offload_off() {
    across_veth(false, false);
}

#[test]
fn veth_ipv6_checksum_offload_on() {
    across_veth(true, true);
}

#[test]
fn veth_ipv6_checksum_offload_off() {
    across_veth(false, true);
}

#[test]
fn bpftool_shows_maps_with_field_names() {
    let ns = Netns::new("bpftool");
    let lb = Udplb::start(&ns, &["lo", "9875=9876,9877,9878"]);
    // Other tests may run their own udplb: look for this one's entry.
    // A port-only frontend's value is a record by ring id.
    let dump = sh(&["bpftool", "map", "dump", "name", "fe_records"]);
    for field in [
        "\"ring_id\"",
        "\"flow_timeout_s\"",
        "\"ring_size\": 3",
        "\"sched\": 0",
    ] {
        assert!(
            dump.contains(field),
            "bpftool map dump lacks {field}:\n{dump}"
        );
    }
    let replies = sh(&["bpftool", "map", "dump", "name", "replies"]);
    assert!(replies.contains("\"frontend_id\""), "{replies}");
    assert!(replies.contains("\"port_be\": 37670"), "{replies}");
    let reasons = sh(&["bpftool", "map", "dump", "name", "reason_counters"]);
    assert!(reasons.contains("\"cpu\": 0"), "per-CPU values: {reasons}");
    let (status, _) = lb.stop(Signal::SIGTERM);
    assert!(status.success());
}

#[test]
fn stats_are_printed_periodically() {
    let ns = Netns::new("stats");
    let mut lb = Udplb::start(&ns, &["--stats", "1", "lo", "9875=9876,9877"]);
    let backends: Vec<UdpSocket> = [9876, 9877]
        .iter()
        .map(|p| ns.udp_bind(&format!("127.0.0.1:{p}")))
        .collect();
    ns.enter(|| {
        pin_to_cpu0();
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        for seq in 0..4 {
            c.send_to(&payload(seq, 64), "127.0.0.1:9875").unwrap();
        }
    });
    for b in &backends {
        recv_exactly(b, 2);
    }
    // Within a few intervals a report shows the datagrams just sent.
    let line = "verdicts: balanced 4,";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !lb.output.iter().any(|l| l.contains(line)) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let next = lb
            .next_line(left)
            .unwrap_or_else(|| panic!("no stats with `{line}`:\n{}", lb.output.join("\n")));
        lb.output.push(next);
    }
    assert!(
        lb.output
            .iter()
            .any(|l| l.starts_with("verdicts: balanced 4")),
        "{}",
        lb.output.join("\n")
    );
    let (status, _) = lb.stop(Signal::SIGTERM);
    assert!(status.success());
}

#[test]
fn xdp_mode_generic_on_a_veth() {
    let client = Netns::new("gen-c");
    let lbns = Netns::new("gen-b");
    veth_pair(&client, &lbns);
    resolve_neighbour(&client, "198.18.0.2");
    let lb = Udplb::start(
        &lbns,
        &["--xdp-mode", "generic", "veth-b", "9875=9876,9877,9878"],
    );
    let attached = lb.line_with("attached to");
    assert!(attached.contains("generic XDP"), "{attached}");
    assert!(
        lbns.xdp_on("veth-b").contains("xdpgeneric"),
        "{}",
        lbns.xdp_on("veth-b")
    );
    let backends = bind_backends(&lbns, "0.0.0.0");
    round_robin_and_replies(
        &client,
        &backends,
        "0.0.0.0:0",
        "198.18.0.2:9875".parse().unwrap(),
    );
    let (status, out) = lb.stop(Signal::SIGTERM);
    assert!(status.success(), "{out}");
    assert_eq!(lbns.xdp_on("veth-b"), "");
}

/// A QUIC-style backend sends its replies with UDP GSO (UDP_SEGMENT): one
/// large buffer that the stack cuts into datagrams after the TC egress
/// program has seen it. Each datagram must still leave from the frontend.
#[test]
fn gso_replies_leave_from_the_frontend() {
    let client = Netns::new("gso-c");
    let lbns = Netns::new("gso-b");
    veth_pair(&client, &lbns);
    resolve_neighbour(&client, "198.18.0.2");
    let lb = Udplb::start(&lbns, &["veth-b", "9875=9876"]);
    let backend = lbns.udp_bind("0.0.0.0:9876");
    let frontend: SocketAddr = "198.18.0.2:9875".parse().unwrap();
    let c = client.enter(|| {
        let c = UdpSocket::bind("0.0.0.0:0").unwrap();
        c.connect(frontend).unwrap();
        c.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        c.send(b"hello").unwrap();
        c
    });
    let mut buf = [0u8; 2048];
    let (_, from) = backend.recv_from(&mut buf).expect("request");
    nix::sys::socket::setsockopt(&backend, nix::sys::socket::sockopt::UdpGsoSegment, &500)
        .expect("UDP_SEGMENT");
    let reply: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    backend.send_to(&reply, from).expect("GSO send");
    for k in 0..2 {
        let n = c
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("segment {k} at the connected client: {e}"));
        assert_eq!(&buf[..n], &reply[k * 500..(k + 1) * 500], "segment {k}");
    }
    assert_eq!(client.snmp("Udp", "InCsumErrors"), 0);
    let (status, out) = lb.stop(Signal::SIGTERM);
    assert!(status.success(), "{out}");
}
