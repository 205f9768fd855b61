//! Remote backends with accept_local off (the default) on the client /
//! balancer / two backend hosts triangle: what XDP cannot send on itself
//! goes to the kernel as it came and leaves translated (issue 26, item 9;
//! written as a review of cd3df68):
//!
//! - a remote backend's ICMP port unreachable reaches its connected client
//!   as ECONNREFUSED (README "ICMP errors"). IPv4: XDP checks and counts
//!   the error and passes it as it came (icmp_to_egress), egress translates
//!   it as the kernel forwards it. (Failed before: XDP passed it translated,
//!   with the frontend's address, one of this host's, as its outer source,
//!   a martian with accept_local off.)
//! - a reply routed out of a device udplb does not run on (x0) reaches
//!   the client from the frontend (IPv6; IPv4 would need accept_local
//!   there): XDP hands it to the kernel translated, as no egress program of
//!   udplb's is on x0. (Failed after cd3df68, which passed it untranslated
//!   and so from the backend's address; passes since XDP tells such a
//!   route apart, forward.h's `foreign`.)
//! - replies the balancer itself fragments (DF clear, client link MTU
//!   1280) arrive whole from the frontend, checksums good: egress
//!   translates and remembers the first fragment, then the later ones.
//!   (Failed before cd3df68: IPv4 martians.)
use udplb_testkit as support;

use std::io::ErrorKind;
use std::time::Duration;

use nix::sys::signal::Signal;
use support::process::Udplb;
use support::topology::*;

/// Nothing listens on the backend port: the backend host answers with a
/// port unreachable, which XDP on l1 translates toward the client.
fn dead_remote_backend_refuses(ipv6: bool) {
    let t = triangle();
    accept_local_off(&t.lb);
    for ns in &t.srv {
        icmp_unlimited(ns);
    }
    let Family {
        vip,
        bind,
        backends: [b0, _],
    } = family(ipv6);
    let mut lb = Udplb::start(
        &t.lb,
        &["--health", "none", "l0,l1,l2", &format!("{vip}={b0}")],
    );
    lb.wait_for("attached to l2", Duration::from_secs(20));
    let c = connected(&t.client, bind, &vip, Duration::from_secs(3));
    c.send(b"anyone there?").unwrap();
    let r = c.recv(&mut [0u8; 64]);
    let (status, out) = lb.stop(Signal::SIGTERM);
    assert!(status.success(), "{out}");
    match r {
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => {}
        other => panic!("expected ECONNREFUSED, got {other:?}"),
    }
}

#[test]
fn dead_remote_backend_refuses_ipv4() {
    dead_remote_backend_refuses(false);
}

#[test]
fn dead_remote_backend_refuses_ipv6() {
    dead_remote_backend_refuses(true);
}

/// Replies the balancer itself fragments (DF clear, client link MTU 1280).
fn host_fragments(size: usize, tx_csum: bool) {
    use nix::libc;
    use std::os::fd::AsRawFd;
    let t = triangle();
    set_offload(&t.client, &["c0"], tx_csum);
    for s in &t.srv {
        set_offload(s, &["s0"], tx_csum);
    }
    t.lb.ip(&["link", "set", "l0", "mtu", "1280"]);
    t.client.ip(&["link", "set", "c0", "mtu", "1280"]);
    let vip = format!("{VIP4}:53");
    let b0 = "198.18.1.2:5353";
    let server = t.srv[0].udp_bind(b0);
    let v: libc::c_int = libc::IP_PMTUDISC_DONT;
    // SAFETY: an int option, passed by pointer and size, on a socket we own.
    let rc = unsafe {
        libc::setsockopt(
            server.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            &v as *const _ as *const libc::c_void,
            std::mem::size_of_val(&v) as u32,
        )
    };
    assert_eq!(rc, 0);
    let mut lb = Udplb::start(
        &t.lb,
        &["--health", "none", "l0,l1,l2", &format!("{vip}={b0}")],
    );
    lb.wait_for("attached to l2", Duration::from_secs(20));
    let client = connected(&t.client, "0.0.0.0:0", &vip, Duration::from_secs(3));
    let mut buf = vec![0u8; 70000];
    for i in 0..5u8 {
        if i % 2 == 0 {
            t.lb.ip(&["neigh", "flush", "all"]);
        }
        client.send(&[i; 10]).unwrap();
        let (n, from) = server.recv_from(&mut buf).unwrap();
        assert_eq!(n, 10);
        server.send_to(&vec![i; size], from).unwrap();
        let n = client
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("reply {i}: {e}"));
        assert_eq!(&buf[..n], &vec![i; size][..]);
    }
    // The path under test ran: the replies were too big for l0 in XDP.
    let s = support::operate::status(&t.lb);
    assert!(
        s["verdicts"]["fib_frag_needed"].as_u64().unwrap() >= 5,
        "{s}"
    );
    assert_eq!(t.client.snmp("Udp", "InCsumErrors"), 0);
    let (status, out) = lb.stop(Signal::SIGTERM);
    assert!(status.success(), "{out}");
}

#[test]
fn host_fragments_1400() {
    host_fragments(1400, false);
}

#[test]
fn host_fragments_1400_offload() {
    host_fragments(1400, true);
}

#[test]
fn host_fragments_3000() {
    host_fragments(3000, false);
}

/// Replies routed out of a device udplb does not run on (x0).
fn out_of_another_device(ipv6: bool) {
    use support::topology::{link, End};
    let t = triangle();
    link(
        End(&t.client, "cx", &["198.18.9.1/24", "2001:2:9::1/64"]),
        End(&t.lb, "x0", &["198.18.9.2/24", "2001:2:9::2/64"]),
    );
    t.client.exec(&[
        "sysctl",
        "-qw",
        "net.ipv4.conf.all.rp_filter=0",
        "net.ipv4.conf.cx.rp_filter=0",
    ]);
    let (vip, bind, b0, client_addr) = if ipv6 {
        (
            format!("[{VIP6}]:53"),
            "[2001:2::1]:0",
            "[2001:2:1::2]:5353",
            "2001:2::1/128",
        )
    } else {
        (
            format!("{VIP4}:53"),
            "198.18.0.1:0",
            "198.18.1.2:5353",
            "198.18.0.1/32",
        )
    };
    let via = if ipv6 { "2001:2:9::1" } else { "198.18.9.1" };
    route(&t.lb, &[client_addr, "via", via, "dev", "x0"]);
    let server = t.srv[0].udp_bind(b0);
    let mut lb = Udplb::start(
        &t.lb,
        &["--health", "none", "l0,l1,l2", &format!("{vip}={b0}")],
    );
    lb.wait_for("attached to l2", Duration::from_secs(20));
    let client = connected(&t.client, bind, &vip, Duration::from_secs(3));
    let mut buf = [0u8; 2048];
    client.send(b"hello").unwrap();
    let (n, from) = server.recv_from(&mut buf).unwrap();
    server.send_to(&buf[..n], from).unwrap();
    let r = client.recv(&mut buf);
    let (status, out) = lb.stop(Signal::SIGTERM);
    assert!(status.success(), "{out}");
    r.expect("the reply, from the frontend (a connected socket drops it from the backend)");
}

#[test]
fn out_of_another_device_ipv6() {
    out_of_another_device(true);
}
