//! No datagram depends on `net.ipv4.conf.all.accept_local` (issue 26, item
//! 9), ICMP errors included: a remote backend host's port unreachable
//! reaches the connected client as ECONNREFUSED while the balancer has no
//! neighbour entry for the client (flushed before every datagram), and a
//! reply from the same backend between two errors still arrives.
//!
//! The client / balancer / two backend hosts triangle with real sockets,
//! accept_local 0 everywhere on the balancer. XDP checks the error where it
//! arrives (l1, the backend's side) and counts its passive signal; IPv4, it
//! passes it as it came (icmp_to_egress), the kernel resolves the client's
//! neighbour and forwards it, and udplb_egress translates it on l0; IPv6,
//! XDP translates it (icmp_translated) and the kernel forwards it.
//!
//! Before the fix, XDP translated the IPv4 error too and handed it to the
//! kernel with the frontend's address, one of the balancer's own, as its
//! outer source: IPv4 dropped it as a martian and the IPv4 case failed at
//! its first error. (IPv6 lets such packets through.)

use udplb_testkit as support;

use std::io::ErrorKind;
use std::time::Duration;

use nix::sys::signal::Signal;
use support::operate::status;
use support::process::Udplb;
use support::sockets::resolve_neighbour;
use support::topology::*;

/// Rounds per case: a reply, then an error. The reply between two errors
/// keeps the passive signal from taking the backend down (3 errors without
/// a reply would).
const N: u64 = 4;

fn errors_survive_flushed_neighbours(ipv6: bool) {
    let t = triangle();
    accept_local_off(&t.lb);
    icmp_unlimited(&t.srv[0]);
    let Family {
        vip,
        bind,
        backends: [b0, _],
    } = family(ipv6);
    let lb_addr = if ipv6 { "2001:2::2" } else { "198.18.0.2" };
    // The client knows the balancer before the first flush: its own
    // solicitation would otherwise teach the balancer its address.
    resolve_neighbour(&t.client, lb_addr);
    let mut lb = Udplb::start(
        &t.lb,
        &["--health", "none", "l0,l1,l2", &format!("{vip}={b0}")],
    );
    lb.wait_for("attached to l2", Duration::from_secs(20));
    // Connected: only datagrams and errors naming the frontend reach it.
    let client = connected(&t.client, bind, &vip, Duration::from_secs(5));
    let flush = || {
        t.lb.ip(&["neigh", "flush", "all"]);
        t.lb.ip(&["-6", "neigh", "flush", "all"]);
    };
    let verdict = |name: &str| status(&t.lb)["verdicts"][name].as_u64().unwrap_or(0);
    let path = if ipv6 {
        "icmp_translated"
    } else {
        "icmp_to_egress"
    };
    let before = verdict(path);
    let mut buf = [0u8; 256];
    for round in 0..N {
        let server = t.srv[0].udp_bind(b0);
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        flush();
        client.send(&[round as u8; 20]).unwrap();
        let (n, from) = server
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("round {round}: request at the backend: {e}"));
        server.send_to(&buf[..n], from).unwrap();
        let n = client
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("round {round}: reply (flushed neighbours): {e}"));
        assert_eq!(&buf[..n], &[round as u8; 20]);
        drop(server);

        flush();
        client.send(b"anyone there?").unwrap();
        match client.recv(&mut buf) {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => {}
            other => {
                panic!("round {round} (flushed neighbours): expected ECONNREFUSED, got {other:?}")
            }
        }
    }
    // The path under test ran, and each error counted once as a passive
    // signal (in XDP; egress, which translated it, counts nothing).
    assert_eq!(verdict(path) - before, N, "{path}");
    let s = status(&t.lb);
    let passive = &s["frontends"][0]["backends"][0]["passive"];
    assert_eq!(passive["icmp_errors"], N, "{s}");
    assert_eq!(passive["replies"], N, "{s}");
    assert_eq!(s["frontends"][0]["backends"][0]["health"]["state"], "up");
    let (status, out) = lb.stop(Signal::SIGTERM);
    assert!(status.success(), "{out}");
}

#[test]
fn ipv4_error_with_flushed_neighbours() {
    errors_survive_flushed_neighbours(false);
}

#[test]
fn ipv6_error_with_flushed_neighbours() {
    errors_survive_flushed_neighbours(true);
}
