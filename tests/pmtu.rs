//! Path MTU discovery through udplb, end to end with real sockets: a remote
//! backend's reply larger than a link on the client's side draws a
//! fragmentation needed (IPv4) / packet too big (IPv6) from the router in
//! front of that link, addressed to the frontend (the reply's source); XDP
//! sends it on to the backend that sent the reply (bpf/icmp.h,
//! icmp_to_backend); the backend host's route cache then holds the reduced
//! path MTU (`ip route get` shows `mtu 1280`), its socket (IP_PMTUDISC_DO:
//! never fragmented, which a reply from a remote backend must not be)
//! refuses the big reply with EMSGSIZE, and a reply sized to the path MTU
//! reaches the client from the frontend.
//!
//!   far client (198.18.3.2) --mtu 1280-- router (the triangle's client
//!   namespace, 198.18.3.1 | 198.18.0.1) -- balancer -- srv0, srv1
//!
//! The frontend is Maglev with two backends, so the error must reach the
//! backend of the flow, not just any.

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::netns::*;
use support::operate::status;
use support::process::*;
use support::sockets::resolve_neighbour;
use support::topology::*;

const SMALL_MTU: u32 = 1280;
const BIG: usize = 1400;

/// The triangle with a far client behind its client namespace (now a
/// router) over a link of MTU 1280.
fn topology() -> (Triangle, Netns) {
    let t = triangle();
    let far = Netns::new("rf");
    link(
        End(&t.client, "c1", &["198.18.3.1/24", "2001:2:3::1/64"]),
        End(&far, "f0", &["198.18.3.2/24", "2001:2:3::2/64"]),
    );
    for (ns, dev) in [(&t.client, "c1"), (&far, "f0")] {
        ns.ip(&["link", "set", dev, "mtu", &SMALL_MTU.to_string()]);
    }
    forwarding(&t.client);
    route(&far, &["default", "via", "198.18.3.1"]);
    route(&far, &["default", "via", "2001:2:3::1"]);
    route(&t.lb, &["198.18.3.0/24", "via", "198.18.0.1"]);
    route(&t.lb, &["2001:2:3::/64", "via", "2001:2::1"]);
    (t, far)
}

/// A backend socket on `addr` in `ns` that never fragments.
fn backend_socket(ns: &Netns, addr: &str, ipv6: bool) -> UdpSocket {
    use nix::libc;
    use std::os::fd::AsRawFd;
    let s = ns.udp_bind(addr);
    // IP_MTU_DISCOVER / IPV6_MTU_DISCOVER, which nix does not name.
    let (level, name, value) = match ipv6 {
        true => (
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU_DISCOVER,
            libc::IPV6_PMTUDISC_DO,
        ),
        false => (
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_DO,
        ),
    };
    // SAFETY: an int option, passed by pointer and size, on a socket we own.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    s
}

/// `ip route get` from `ns` to `to` until it shows `mtu N` (bounded);
/// returns N, or None after `timeout`.
fn learnt_mtu(ns: &Netns, to: &str, timeout: Duration) -> Option<u32> {
    let deadline = Instant::now() + timeout;
    loop {
        let out = ns.ip(&["route", "get", to]);
        let mtu = out
            .split_whitespace()
            .skip_while(|w| *w != "mtu")
            .nth(1)
            .and_then(|m| m.parse().ok());
        if mtu.is_some() || Instant::now() > deadline {
            return mtu;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn pmtu_reaches_the_backend_of_the_flow(ipv6: bool) {
    let (t, far) = topology();
    let (vip, far_addr, bind, hdrs) = if ipv6 {
        (format!("[{VIP6}]:53"), "2001:2:3::2", "[::]:0", 48)
    } else {
        (format!("{VIP4}:53"), "198.18.3.2", "0.0.0.0:0", 28)
    };
    let b: Vec<String> = (1..=2)
        .map(|i| match ipv6 {
            true => format!("[2001:2:{i}::2]:5353"),
            false => format!("198.18.{i}.2:5353"),
        })
        .collect();
    // Neighbours first: the first datagrams must not wait for ARP/NDP.
    let a = |v4: String, v6: String| if ipv6 { v6 } else { v4 };
    resolve_neighbour(&far, &a("198.18.3.1".into(), "2001:2:3::1".into()));
    resolve_neighbour(&t.client, &a("198.18.0.2".into(), "2001:2::2".into()));
    resolve_neighbour(&t.client, far_addr);
    resolve_neighbour(&t.lb, &a("198.18.0.1".into(), "2001:2::1".into()));
    for i in 1..=2 {
        let (lb_side, srv) = (
            a(format!("198.18.{i}.1"), format!("2001:2:{i}::1")),
            a(format!("198.18.{i}.2"), format!("2001:2:{i}::2")),
        );
        resolve_neighbour(&t.lb, &srv);
        resolve_neighbour(&t.srv[i - 1], &lb_side);
    }
    let backends = [
        backend_socket(&t.srv[0], &b[0], ipv6),
        backend_socket(&t.srv[1], &b[1], ipv6),
    ];
    let mut u = Udplb::start(
        &t.lb,
        &[
            "--sched",
            "maglev",
            "l0,l1,l2",
            &format!("{vip}={},{}", b[0], b[1]),
        ],
    );
    u.wait_for("attached to l2", Duration::from_secs(5));

    let frontend: SocketAddr = vip.parse().unwrap();
    let client = far.enter(|| UdpSocket::bind(bind).unwrap());
    client
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    client.send_to(b"big one, please", frontend).unwrap();
    // The flow's backend (Maglev) gets the request.
    let mut buf = vec![0u8; 2048];
    let (i, from) = (0..20)
        .find_map(|_| {
            (0..2).find_map(|i| backends[i].recv_from(&mut buf).ok().map(|(_, f)| (i, f)))
        })
        .expect("the request reached a backend");
    assert_eq!(from.ip().to_string(), far_addr, "no SNAT: the client's own");
    let (srv, other) = (&t.srv[i], &t.srv[1 - i]);
    assert_eq!(learnt_mtu(srv, far_addr, Duration::ZERO), None, "fresh");

    // A reply too big for the far link: the router answers the frontend,
    // udplb sends it on to the backend, whose kernel learns.
    backends[i].send_to(&vec![b'x'; BIG], from).unwrap();
    let started = Instant::now();
    let mtu = learnt_mtu(srv, far_addr, Duration::from_secs(3));
    let learnt = started.elapsed();
    let s = status(&t.lb);
    assert_eq!(
        mtu,
        Some(SMALL_MTU),
        "the backend host did not learn the path MTU; verdicts {}",
        s["verdicts"]
    );
    assert_eq!(s["verdicts"]["icmp_to_backend"], 1, "{}", s["verdicts"]);
    assert_eq!(
        learnt_mtu(other, far_addr, Duration::ZERO),
        None,
        "the other backend got it"
    );
    assert!(
        client.recv_from(&mut buf).is_err(),
        "the too-big reply arrived"
    );

    // Now the backend's socket knows: the big reply is refused, one sized
    // to the path MTU arrives, from the frontend.
    let err = backends[i].send_to(&vec![b'x'; BIG], from).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(nix::libc::EMSGSIZE), "{err}");
    let fits = SMALL_MTU as usize - hdrs;
    backends[i].send_to(&vec![b'y'; fits], from).unwrap();
    let (n, src) = client.recv_from(&mut buf).expect("the reply that fits");
    assert_eq!((n, src), (fits, frontend));
    assert!(buf[..n].iter().all(|&c| c == b'y'));
    println!(
        "pmtu ({}): backend {} learnt mtu {SMALL_MTU} for {far_addr} {learnt:?} after its \
         {BIG}-byte reply; a {fits}-byte reply then reached the client",
        if ipv6 { "IPv6" } else { "IPv4" },
        b[i]
    );
    let (st, out) = u.stop(Signal::SIGTERM);
    assert!(st.success(), "{out}");
}

#[test]
fn fragmentation_needed_reaches_the_remote_backend_ipv4() {
    pmtu_reaches_the_backend_of_the_flow(false);
}

#[test]
fn packet_too_big_reaches_the_remote_backend_ipv6() {
    pmtu_reaches_the_backend_of_the_flow(true);
}
