//! No datagram depends on `net.ipv4.conf.all.accept_local` (issue 26, item
//! 9): a remote backend's reply that XDP cannot send on itself, because
//! the balancer has no neighbour entry for the client (yet, or any more),
//! reaches the client from the frontend all the same.
//!
//! The client / balancer / two backend hosts triangle with real sockets;
//! before every datagram the balancer's neighbour tables are flushed, so
//! every request and every reply finds no neighbour (fib_no_neigh) and goes
//! through the kernel. accept_local is 0 everywhere on the balancer.
//!
//! Replies of 3000 bytes, which leave the backend hosts as fragments, take
//! the same path: the kernel forwards the fragments as they came and
//! udplb_egress translates them (bpf/frags.h).
//!
//! Before the fix, XDP handed such a reply to the kernel already
//! translated, with the frontend's address, one of the balancer's own, as
//! its source: IPv4 dropped every one as a martian, and the IPv4 cases
//! failed at their first flushed reply. (IPv6 lets such packets through;
//! its cases show the new path works for it too.)

use udplb_testkit as support;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::operate::status;
use support::process::Udplb;
use support::sockets::{payload, seq_of};
use support::topology::*;

/// Datagrams per case, each after a flush. Each costs two neighbour
/// resolutions (the backend's, then the client's).
const N: u32 = 20;

/// The first datagram one of `servers` receives within `wait`, answered
/// with `answer` of it.
fn echo_one(
    servers: &[UdpSocket],
    wait: Duration,
    answer: impl Fn(&[u8]) -> Vec<u8>,
) -> Option<Vec<u8>> {
    let mut buf = [0u8; 2048];
    let end = Instant::now() + wait;
    while Instant::now() < end {
        for s in servers {
            if let Ok((n, from)) = s.recv_from(&mut buf) {
                s.send_to(&answer(&buf[..n]), from).unwrap();
                return Some(buf[..n].to_vec());
            }
        }
    }
    None
}

/// How the backends answer: the request itself, or (`big`) the request
/// followed by 3000 bytes, which leaves the backend host as fragments.
fn answer(big: bool) -> impl Fn(&[u8]) -> Vec<u8> {
    move |req| {
        let mut a = req.to_vec();
        if big {
            a.extend(std::iter::repeat_n(0xab, 3000));
        }
        a
    }
}

fn replies_survive_flushed_neighbours(ipv6: bool, tx_csum: bool, mode: &str, big: bool) {
    let t = triangle();
    set_offload(&t.client, &["c0"], tx_csum);
    for s in &t.srv {
        set_offload(s, &["s0"], tx_csum);
    }
    accept_local_off(&t.lb);

    let Family {
        vip,
        bind,
        backends: [b0, b1],
    } = family(ipv6);
    let servers: Vec<UdpSocket> = [(&t.srv[0], b0), (&t.srv[1], b1)]
        .into_iter()
        .map(|(ns, a)| {
            let s = ns.udp_bind(a);
            s.set_nonblocking(true).unwrap();
            s
        })
        .collect();
    let mut lb = Udplb::start(
        &t.lb,
        &["--xdp-mode", mode, "l0,l1,l2", &format!("{vip}={b0},{b1}")],
    );
    lb.wait_for("attached to l2", Duration::from_secs(20));
    // Connected: only datagrams from the frontend reach it.
    let client = connected(&t.client, bind, &vip, Duration::from_secs(5));
    let forwarded = || {
        if ipv6 {
            t.lb.snmp6("Ip6OutForwDatagrams")
        } else {
            t.lb.snmp("Ip", "ForwDatagrams")
        }
    };
    let counts = || {
        let s = status(&t.lb);
        let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
        (
            n(&s["verdicts"]["fib_no_neigh"]),
            n(&s["frontends"][0]["replies"]["packets"]),
            n(&s["egress_verdicts"]["reply_forwarded"]),
        )
    };

    // Seq 0 warms up: the client resolves the balancer's address, and the
    // balancer learns the client's from that very solicitation, so its
    // reply may or may not find a neighbour. Counting starts after it.
    let mut buf = [0u8; 4096];
    let mut before = (0, (0, 0, 0));
    for seq in 0..=N {
        if seq == 1 {
            before = (forwarded(), counts());
        }
        t.lb.ip(&["neigh", "flush", "all"]);
        t.lb.ip(&["-6", "neigh", "flush", "all"]);
        let sent = payload(seq, 40 + seq as usize * 37);
        client.send(&sent).unwrap();
        let at_backend = echo_one(&servers, Duration::from_secs(5), answer(big))
            .unwrap_or_else(|| panic!("datagram {seq} reached no backend"));
        assert_eq!(at_backend, sent, "datagram {seq} at the backend");
        let n = client
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("reply {seq} of {N} (flushed neighbours): {e}"));
        assert_eq!(seq_of(&buf[..n]), seq);
        assert_eq!(&buf[..n], answer(big)(&sent), "reply {seq}");
    }
    if big {
        // Each reply's fragments passed and were counted one by one; the
        // client got every datagram whole, from the frontend.
        let (_, replies, _) = counts();
        assert!(
            replies >= 3 * u64::from(N),
            "reply fragments counted: {replies}"
        );
        let (status, out) = lb.stop(Signal::SIGTERM);
        assert!(status.success(), "{out}");
        return;
    }

    // The path under test ran: requests and replies found no neighbour
    // (XDP counted why) and went through the kernel, and each reply was
    // counted once (by egress where it translated it, under its verdict
    // there). Here that is every one of them (2N, N by egress); in an
    // emulated VM (make test-kernels) a neighbour timer that fires between
    // a flush and its datagram can give one back to XDP, so most, not all,
    // must have gone the kernel's way.
    let (forwarded, (no_neigh, replies, by_egress)) = (forwarded() - before.0, counts());
    let n = u64::from(N);
    let (no_neigh, by_egress) = (no_neigh - before.1 .0, by_egress - before.1 .2);
    let seen = format!("forwarded {forwarded}, fib_no_neigh {no_neigh}, by egress {by_egress}");
    assert!(
        forwarded >= 2 * n - n / 2,
        "datagrams the kernel forwarded: {seen}"
    );
    assert!(no_neigh >= 2 * n - n / 2, "fib_no_neigh verdicts: {seen}");
    assert!(
        by_egress >= n - n / 4,
        "replies translated by egress: {seen}"
    );
    assert_eq!(
        replies - before.1 .1,
        n,
        "replies counted, once each: {seen}"
    );
    for (name, ns) in [
        ("client", &t.client),
        ("balancer", &t.lb),
        ("backend 0", &t.srv[0]),
        ("backend 1", &t.srv[1]),
    ] {
        let errors = if ipv6 {
            ns.snmp6("Udp6InCsumErrors")
        } else {
            ns.snmp("Udp", "InCsumErrors")
        };
        assert_eq!(errors, 0, "{name}: bad UDP checksums");
    }
    let (status, out) = lb.stop(Signal::SIGTERM);
    assert!(status.success(), "{out}");
}

#[test]
fn ipv4_native_offload_on() {
    replies_survive_flushed_neighbours(false, true, "native", false);
}

#[test]
fn ipv4_native_offload_off() {
    replies_survive_flushed_neighbours(false, false, "native", false);
}

#[test]
fn ipv4_generic_offload_off() {
    replies_survive_flushed_neighbours(false, false, "generic", false);
}

#[test]
fn ipv6_native_offload_on() {
    replies_survive_flushed_neighbours(true, true, "native", false);
}

#[test]
fn ipv6_native_offload_off() {
    replies_survive_flushed_neighbours(true, false, "native", false);
}

#[test]
fn ipv4_fragmented_replies() {
    replies_survive_flushed_neighbours(false, true, "native", true);
}

#[test]
fn ipv6_fragmented_replies() {
    replies_survive_flushed_neighbours(true, false, "native", true);
}
