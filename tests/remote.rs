//! Backends on other hosts, forwarded entirely in XDP, with real sockets in
//! namespaces made here:
//!   - client -- balancer -- two backend hosts (each on its own address),
//!     IPv4 and IPv6, checksum offload on and off: exact payloads at the
//!     backends, every reply at a connected client from the frontend,
//!     UdpInCsumErrors 0 everywhere, and the balancer's own stack forwards
//!     nothing (XDP did it all);
//!   - a router spreading flows with ECMP over two balancers running the
//!     same Maglev configuration: 1000 flows each reach one backend whichever
//!     balancer carried them, and keep it when one balancer is withdrawn.

use udplb_testkit as support;

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::cpu::*;
use support::netns::*;
use support::operate::status;
use support::process::*;
use support::servers::{Echo, Reply};
use support::sockets::*;
use support::topology::*;

/// Echo backends on both backend hosts (srv0's first) that keep what they
/// hear.
fn echo_servers(srv: &[Netns; 2], ipv6: bool) -> Vec<Echo> {
    let echo = Echo::setup(Reply::Payload).recording();
    (srv.iter().enumerate())
        .map(|(i, ns)| match ipv6 {
            true => echo.start(ns, &format!("[2001:2:{}::2]:5353", i + 1)),
            false => echo.start(ns, &format!("198.18.{}.2:5353", i + 1)),
        })
        .collect()
}

fn remote_round_trip(tx_csum: bool, ipv6: bool) {
    let t = triangle();
    set_offload(&t.client, &["c0"], tx_csum);
    set_offload(&t.lb, &["l0", "l1", "l2"], tx_csum);
    for s in &t.srv {
        set_offload(s, &["s0"], tx_csum);
    }
    let (vip, bind, b0, b1) = if ipv6 {
        (
            format!("[{VIP6}]:53"),
            "[::]:0",
            "[2001:2:1::2]:5353",
            "[2001:2:2::2]:5353",
        )
    } else {
        (
            format!("{VIP4}:53"),
            "0.0.0.0:0",
            "198.18.1.2:5353",
            "198.18.2.2:5353",
        )
    };
    let servers = echo_servers(&t.srv, ipv6);
    let mut lb = Udplb::start(&t.lb, &["l0,l1,l2", &format!("{vip}={b0},{b1}")]);
    lb.wait_for("attached to l2", Duration::from_secs(5));
    let frontend: SocketAddr = vip.parse().unwrap();

    let client = t.client.enter(|| {
        pin_to_cpu0();
        let c = UdpSocket::bind(bind).unwrap();
        big_rcvbuf(&c);
        c.connect(frontend).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        c
    });
    // Warm up until both backends have answered once: that fills every
    // neighbour table on the way, so the measured datagrams all take the XDP
    // path.
    let mut buf = vec![0u8; 65536];
    let mut warm_sent = 0u32;
    let deadline = Instant::now() + Duration::from_secs(10);
    while servers.iter().any(|s| s.heard() == 0) {
        let heard: Vec<usize> = servers.iter().map(Echo::heard).collect();
        assert!(
            Instant::now() < deadline,
            "warm-up: backends heard {heard:?}"
        );
        t.client.enter(|| {
            pin_to_cpu0();
            client.send(&payload(1_000_000 + warm_sent, 30)).unwrap()
        });
        warm_sent += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(200));
    client.set_nonblocking(true).unwrap();
    while client.recv(&mut buf).is_ok() {}
    client.set_nonblocking(false).unwrap();
    for s in &servers {
        s.take_heard();
    }
    // Round robin continues from where the warm-up left the cursor.
    let offset = warm_sent as usize % 2;
    let forwarded_before = t.lb.snmp("Ip", "ForwDatagrams");
    let udp_before = t.lb.snmp("Udp", "InDatagrams");

    const N: u32 = 200;
    let len = |seq: u32| 20 + (seq as usize * 53) % 1400;
    t.client.enter(|| {
        pin_to_cpu0();
        for seq in 0..N {
            client.send(&payload(seq, len(seq))).unwrap();
        }
    });
    let mut got = 0;
    while got < N {
        let n = client
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("reply {got} of {N}: {e}"));
        let seq = seq_of(&buf[..n]);
        assert_eq!(&buf[..n], payload(seq, len(seq)).as_slice());
        got += 1;
    }
    // Time for a datagram too many to show up.
    std::thread::sleep(Duration::from_millis(200));
    // Round robin from one CPU: 100 each, alternating, exact payloads.
    let client_addr = client.local_addr().unwrap();
    for (k, s) in servers.iter().enumerate() {
        let heard = s.take_heard();
        assert_eq!(heard.len(), N as usize / 2, "datagrams at backend {k}");
        for (j, (data, from)) in heard.into_iter().enumerate() {
            let seq = seq_of(&data);
            assert_eq!(
                (seq as usize + offset) % 2,
                k,
                "backend {k} datagram {j}: seq {seq}"
            );
            assert_eq!(data, payload(seq, len(seq)), "payload of {seq}");
            assert_eq!(
                from.ip(),
                client_addr.ip(),
                "the client's address reaches the backend"
            );
        }
    }
    for (name, ns) in [
        ("client", &t.client),
        ("balancer", &t.lb),
        ("backend 0", &t.srv[0]),
        ("backend 1", &t.srv[1]),
    ] {
        assert_eq!(
            ns.snmp("Udp", "InCsumErrors"),
            0,
            "{name}: bad UDP checksums"
        );
    }
    assert_eq!(
        t.lb.snmp("Ip", "ForwDatagrams"),
        forwarded_before,
        "the balancer's kernel forwarded datagrams"
    );
    assert_eq!(
        t.lb.snmp("Udp", "InDatagrams"),
        udp_before,
        "the balancer's kernel received datagrams"
    );

    // Every measured datagram went through XDP both ways (the warm-up may
    // have taken the kernel's path while neighbours resolved).
    let s = status(&t.lb);
    for verdict in ["forwarded", "reply_forwarded"] {
        let n = s["verdicts"][verdict].as_u64();
        assert!(n >= Some(u64::from(N)), "{verdict}: {}", s["verdicts"]);
    }
    let (status, out) = lb.stop(Signal::SIGINT);
    assert!(status.success(), "{out}");
    for dev in ["l0", "l1", "l2"] {
        assert_eq!(t.lb.xdp_on(dev), "", "XDP left on {dev}");
    }
}

#[test]
fn remote_ipv4_offload_on() {
    remote_round_trip(true, false);
}

#[test]
fn remote_ipv4_offload_off() {
    remote_round_trip(false, false);
}

#[test]
fn remote_ipv6_offload_on() {
    remote_round_trip(true, true);
}

#[test]
fn remote_ipv6_offload_off() {
    remote_round_trip(false, true);
}

/// client -- router =ECMP=> lb0, lb1 -- backend LAN (a bridge) -- srv0, srv1.
#[test]
fn ecmp_over_two_balancers_keeps_flows_on_their_backend() {
    let client = Netns::new("ec");
    let router = Netns::new("er");
    let lbs = [Netns::new("el0"), Netns::new("el1")];
    let lan = Netns::new("elan");
    let srv = [Netns::new("es0"), Netns::new("es1")];
    link(
        End(&client, "c0", &["198.18.0.1/24"]),
        End(&router, "r0", &["198.18.0.2/24"]),
    );
    route(&client, &[&format!("{VIP4}/32"), "via", "198.18.0.2"]);
    lan.ip(&["link", "add", "br0", "type", "bridge"]);
    lan.ip(&["link", "set", "br0", "up"]);
    let mut ports = Vec::new();
    for (i, lb) in lbs.iter().enumerate() {
        let (r_dev, r_addr, lb_addr) = (
            format!("r{}", i + 1),
            format!("198.18.{}.1/24", i + 3),
            format!("198.18.{}.2/24", i + 3),
        );
        link(
            End(&router, &r_dev, &[&r_addr]),
            End(lb, "up0", &[&lb_addr]),
        );
        let lan_dev = format!("p{i}");
        link(
            End(lb, "lan0", &[&format!("198.18.10.{}/24", i + 1)]),
            End(&lan, &lan_dev, &[]),
        );
        ports.push(lan_dev);
        route(lb, &["default", "via", &format!("198.18.{}.1", i + 3)]);
        lb.ip(&["addr", "add", &format!("{VIP4}/32"), "dev", "lo"]);
        forwarding(lb);
    }
    for (i, s) in srv.iter().enumerate() {
        let lan_dev = format!("p{}", i + 2);
        link(
            End(s, "s0", &[&format!("198.18.10.{}/24", i + 11)]),
            End(&lan, &lan_dev, &[]),
        );
        ports.push(lan_dev);
        // Replies go through balancer 0; either balancer can translate them.
        route(s, &["default", "via", "198.18.10.1"]);
    }
    for p in &ports {
        lan.ip(&["link", "set", p, "master", "br0"]);
    }
    forwarding(&router);
    router.exec(&["sysctl", "-qw", "net.ipv4.fib_multipath_hash_policy=1"]);
    route(
        &router,
        &[
            &format!("{VIP4}/32"),
            "nexthop",
            "via",
            "198.18.3.2",
            "nexthop",
            "via",
            "198.18.4.2",
        ],
    );

    let servers: Vec<UdpSocket> = srv
        .iter()
        .enumerate()
        .map(|(i, s)| s.udp_bind(&format!("198.18.10.{}:5353", i + 11)))
        .collect();
    for s in &servers {
        big_rcvbuf(s);
    }
    let spec = format!("{VIP4}:53=198.18.10.11:5353,198.18.10.12:5353");
    let balancers: Vec<Udplb> = lbs
        .iter()
        .map(|lb| {
            let mut b = Udplb::start(lb, &["--sched", "maglev", "up0,lan0", &spec]);
            b.wait_for("attached to lan0", Duration::from_secs(5));
            b
        })
        .collect();

    // Flow f: source port 20000 + f. Warm up the neighbour tables first.
    let send_flows = |count: u32, all: bool| -> BTreeMap<u32, usize> {
        client.enter(|| {
            for f in 0..count {
                let s = UdpSocket::bind(("198.18.0.1", 20000 + f as u16)).unwrap();
                s.send_to(&payload(f, 32), format!("{VIP4}:53")).unwrap();
            }
        });
        let mut seen = BTreeMap::new();
        let mut buf = [0u8; 512];
        let deadline = Instant::now() + Duration::from_secs(10);
        while seen.len() < count as usize {
            if !all && Instant::now() > deadline - Duration::from_millis(9500) {
                break; // warm-up: some may wait for ARP, that is its purpose
            }
            assert!(
                Instant::now() < deadline,
                "{} of {count} flows arrived",
                seen.len()
            );
            for (i, s) in servers.iter().enumerate() {
                s.set_nonblocking(true).unwrap();
                while let Ok((n, _)) = s.recv_from(&mut buf) {
                    let f = seq_of(&buf[..n]);
                    assert!(seen.insert(f, i).is_none(), "flow {f} arrived twice");
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        seen
    };
    send_flows(50, false);
    std::thread::sleep(Duration::from_millis(300));
    let first = send_flows(1000, true);
    assert_eq!(
        send_flows(1000, true),
        first,
        "flows changed backend between rounds"
    );
    let on_each: Vec<usize> = (0..2)
        .map(|b| first.values().filter(|&&x| x == b).count())
        .collect();
    assert!(
        on_each.iter().all(|&n| n > 300),
        "backends got {on_each:?} of 1000 flows"
    );

    // Withdraw balancer 1: the router sends everything through balancer 0,
    // and every flow keeps its backend.
    route(&router, &[&format!("{VIP4}/32"), "via", "198.18.3.2"]);
    assert_eq!(
        send_flows(1000, true),
        first,
        "a flow moved when a balancer was withdrawn"
    );

    for (i, lb) in lbs.iter().enumerate() {
        let verdicts = &status(lb)["verdicts"];
        let forwarded = verdicts["forwarded"].as_u64().unwrap_or(0);
        assert!(
            forwarded > 100,
            "balancer {i} carried only {forwarded} datagrams: ECMP did not spread\n{verdicts}"
        );
    }
    for b in balancers {
        let (status, out) = b.stop(Signal::SIGTERM);
        assert!(status.success(), "{out}");
    }
}
