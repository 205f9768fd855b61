//! udplb on a real NIC driver: native XDP on virtio_net (issue 26, item 5),
//! the first driver besides veth and lo.
//!
//! Needs four virtio_net NICs wired in two pairs, as the VM of `make
//! test-kernels` has them (scripts/kernels/run.sh: qemu tap devices with
//! several queues and checksum offload, on two bridges in a namespace of
//! the host): UDPLB_VIRTIO_NICS="lbc,lbs,client,server" names them, the
//! balancer's client-side and server-side NICs and their peers. Without it
//! the tests are ignored by `cargo test` (and so counted by `make test`'s
//! summary), never passed.
//!
//! client (198.18.0.1) --[virtio]-- balancer (198.18.0.2 | 198.18.1.1)
//! --[virtio]-- server (198.18.1.2); IPv6 alike. Each NIC goes into a
//! namespace of its own made here (and back to the guest's when it is
//! removed). udplb runs native XDP on both balancer NICs; requests and
//! replies cross from one virtio NIC to the other by XDP_REDIRECT, with the
//! senders' checksum offload on and off: exact payloads at the server from
//! the client's address, every reply at a connected client from the
//! frontend, no checksum error anywhere, nothing forwarded by the
//! balancer's own stack.

use udplb_testkit as support;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::netns::{sh, Netns};
use support::operate::status;
use support::process::Udplb;
use support::sockets::{big_rcvbuf, payload, recv_exactly, seq_of};
use support::topology::{forwarding, route, set_offload};

const VIP4: &str = "198.18.100.1";
const VIP6: &str = "2001:2:100::1";
/// Datagrams per offload setting and family.
const N: u32 = 100;

/// The NICs named by UDPLB_VIRTIO_NICS, each checked to be driven by
/// virtio_net.
fn nics() -> [String; 4] {
    let list = std::env::var("UDPLB_VIRTIO_NICS").unwrap_or_else(|_| {
        panic!("UDPLB_VIRTIO_NICS is not set: these tests run in the VM of `make test-kernels`")
    });
    let names: Vec<String> = list.split(',').map(str::to_string).collect();
    let names: [String; 4] = names
        .try_into()
        .unwrap_or_else(|n| panic!("UDPLB_VIRTIO_NICS needs four NICs, got {n:?}"));
    for n in &names {
        let driver = std::fs::read_link(format!("/sys/class/net/{n}/device/driver"))
            .unwrap_or_else(|e| panic!("{n}: no device driver ({e})"));
        assert!(
            driver.ends_with("virtio_net"),
            "{n} is driven by {driver:?}, not virtio_net"
        );
    }
    names
}

struct Wire {
    lb: Netns,
    client: Netns,
    server: Netns,
    lbc: String,
    lbs: String,
    c: String,
    s: String,
}

/// Moves `dev` into `ns`, addresses it and brings it up.
fn take(ns: &Netns, dev: &str, addrs: &[&str]) {
    sh(&["ip", "link", "set", dev, "netns", &ns.name]);
    for a in addrs {
        if a.contains(':') {
            ns.ip(&["-6", "addr", "add", a, "dev", dev, "nodad"]);
        } else {
            ns.ip(&["addr", "add", a, "dev", dev]);
        }
    }
    ns.ip(&["link", "set", dev, "up"]);
}

fn wire() -> Wire {
    let [lbc, lbs, c, s] = nics();
    let w = Wire {
        lb: Netns::new("vl"),
        client: Netns::new("vc"),
        server: Netns::new("vs"),
        lbc,
        lbs,
        c,
        s,
    };
    take(&w.lb, &w.lbc, &["198.18.0.2/24", "2001:2::2/64"]);
    take(&w.lb, &w.lbs, &["198.18.1.1/24", "2001:2:1::1/64"]);
    take(&w.client, &w.c, &["198.18.0.1/24", "2001:2::1/64"]);
    take(&w.server, &w.s, &["198.18.1.2/24", "2001:2:1::2/64"]);
    w.lb.ip(&["addr", "add", &format!("{VIP4}/32"), "dev", "lo"]);
    w.lb.ip(&["-6", "addr", "add", &format!("{VIP6}/128"), "dev", "lo"]);
    forwarding(&w.lb);
    route(&w.client, &[&format!("{VIP4}/32"), "via", "198.18.0.2"]);
    route(&w.client, &[&format!("{VIP6}/128"), "via", "2001:2::2"]);
    route(&w.server, &["default", "via", "198.18.1.1"]);
    route(&w.server, &["default", "via", "2001:2:1::1"]);
    w
}

fn round_trips(w: &Wire, ipv6: bool, offload: bool) {
    set_offload(&w.client, &[&w.c], offload);
    set_offload(&w.server, &[&w.s], offload);
    let (vip, bind, backend) = if ipv6 {
        (format!("[{VIP6}]:53"), "[::]:0", "[2001:2:1::2]:5353")
    } else {
        (format!("{VIP4}:53"), "0.0.0.0:0", "198.18.1.2:5353")
    };
    let what = format!(
        "{} with checksum offload {}",
        if ipv6 { "IPv6" } else { "IPv4" },
        if offload { "on" } else { "off" }
    );
    let server = w.server.udp_bind(backend);
    big_rcvbuf(&server);
    let frontend: SocketAddr = vip.parse().unwrap();
    let client = w.client.enter(|| {
        let c = UdpSocket::bind(bind).unwrap();
        big_rcvbuf(&c);
        // Connected: only datagrams from the frontend reach it.
        c.connect(frontend).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c
    });
    let mut buf = vec![0u8; 65536];

    // Warm up until a reply comes back: neighbours resolve on the way, so
    // the measured datagrams all take XDP's path.
    let deadline = Instant::now() + Duration::from_secs(30);
    server
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    client
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    loop {
        assert!(
            Instant::now() < deadline,
            "{what}: no warm-up reply in 30 s"
        );
        client.send(b"warm-up").unwrap();
        while let Ok((n, from)) = server.recv_from(&mut buf) {
            server.send_to(&buf[..n], from).unwrap();
        }
        if client.recv(&mut buf).is_ok() {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    client.set_nonblocking(true).unwrap();
    while client.recv(&mut buf).is_ok() {}
    client.set_nonblocking(false).unwrap();
    server
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();

    let verdict = |name: &str| status(&w.lb)["verdicts"][name].as_u64().unwrap_or(0);
    let (fwd0, rep0) = (verdict("forwarded"), verdict("reply_forwarded"));
    let stack0 = (
        w.lb.snmp("Ip", "ForwDatagrams"),
        w.lb.snmp6("Ip6OutForwDatagrams"),
    );
    let len = |seq: u32| 20 + (seq as usize * 53) % 1400;
    for seq in 0..N {
        client.send(&payload(seq, len(seq))).unwrap();
    }
    let client_addr = w.client.enter(|| client.local_addr().unwrap());
    for (data, from) in recv_exactly(&server, N as usize) {
        let seq = seq_of(&data);
        assert_eq!(data, payload(seq, len(seq)), "{what}: payload of {seq}");
        assert_eq!(from.ip(), client_addr.ip(), "{what}: the client's address");
        server.send_to(&data, from).unwrap();
    }
    for got in 0..N {
        let n = client
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("{what}: reply {got} of {N}: {e}"));
        let seq = seq_of(&buf[..n]);
        assert_eq!(&buf[..n], payload(seq, len(seq)), "{what}: reply {seq}");
    }
    for (name, ns) in [
        ("client", &w.client),
        ("balancer", &w.lb),
        ("server", &w.server),
    ] {
        assert_eq!(ns.snmp("Udp", "InCsumErrors"), 0, "{what}: {name}");
        assert_eq!(ns.snmp6("Udp6InCsumErrors"), 0, "{what}: {name}");
    }
    // Both ways by XDP_REDIRECT from one virtio NIC to the other.
    assert!(
        verdict("forwarded") - fwd0 >= u64::from(N),
        "{what}: requests redirected"
    );
    assert!(
        verdict("reply_forwarded") - rep0 >= u64::from(N),
        "{what}: replies redirected"
    );
    let stack = (
        w.lb.snmp("Ip", "ForwDatagrams"),
        w.lb.snmp6("Ip6OutForwDatagrams"),
    );
    assert_eq!(
        stack, stack0,
        "{what}: the balancer's own stack forwarded datagrams"
    );
}

#[test]
#[ignore = "needs four virtio_net NICs: `make test-kernels` runs it in a VM"]
fn remote_backend_through_two_virtio_nics_in_native_xdp() {
    let w = wire();
    let mut lb = Udplb::start(
        &w.lb,
        &[
            "--xdp-mode",
            "native",
            &format!("{},{}", w.lbc, w.lbs),
            &format!("{VIP4}:53=198.18.1.2:5353"),
            &format!("[{VIP6}]:53=[2001:2:1::2]:5353"),
        ],
    );
    let line = lb.wait_for(&format!("attached to {}", w.lbs), Duration::from_secs(60));
    assert!(line.contains("native XDP"), "{line}");
    for ipv6 in [false, true] {
        for offload in [true, false] {
            round_trips(&w, ipv6, offload);
        }
    }
    let (st, out) = lb.stop(Signal::SIGTERM);
    assert!(st.success(), "{out}");
}
