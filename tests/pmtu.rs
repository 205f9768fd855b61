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
//!
//! And the other way round: a third party on the client side (another
//! address, itself a client) forges such errors naming the victim's
//! address with ports other than the victim's own (which an off-path party
//! does not know). No backend answered those flows, so no backend is told
//! (icmp_no_flow): the backends' route caches keep no lowered MTU for the
//! victim, whose replies (default sockets, which would fragment after a
//! lowered path MTU) keep arriving whole, 10 of 10.
//!
//! And a local backend of a round-robin frontend (no flow table, so no pin
//! as proof): this host's own kernel must still learn the path MTU to a
//! far client, or its larger replies are lost for good.

use udplb_testkit as support;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::netns::*;
use support::operate::status;
use support::packets::{icmp_error, udp};
use support::process::*;
use support::sockets::{payload, resolve_neighbour, send_raw};
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

/// `dont_fragment`: the backend's socket never fragments (and must size its
/// replies); else it is a default socket, whose kernel fragments replies
/// larger than the path MTU it learnt, and udplb translates the fragments.
fn pmtu_reaches_the_backend_of_the_flow(ipv6: bool, dont_fragment: bool) {
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
    let socket = |i: usize| match dont_fragment {
        true => backend_socket(&t.srv[i], &b[i], ipv6),
        false => {
            let s = t.srv[i].udp_bind(&b[i]);
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            s
        }
    };
    let backends = [socket(0), socket(1)];
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

    let v = if ipv6 { "IPv6" } else { "IPv4" };
    if !dont_fragment {
        // Now the backend's kernel fragments its big replies (the first
        // fragment within the path MTU), and udplb translates every
        // fragment: the client reassembles them from the frontend.
        for seq in 0..10 {
            let reply = payload(seq, BIG);
            backends[i].send_to(&reply, from).unwrap();
            let (n, src) = client
                .recv_from(&mut buf)
                .unwrap_or_else(|e| panic!("fragmented reply {seq}: {e}"));
            assert_eq!((n, src), (BIG, frontend), "fragmented reply {seq}");
            assert_eq!(buf[..n], reply[..], "fragmented reply {seq}");
        }
        // They were fragments (two each), every one translated.
        let s = status(&t.lb);
        let forwarded = s["verdicts"]["reply_forwarded"].as_u64().unwrap_or(0);
        assert!(forwarded >= 21, "{}", s["verdicts"]);
        assert_eq!(s["verdicts"]["fragment"], 0, "{}", s["verdicts"]);
        println!(
            "pmtu ({v}): backend {} learnt mtu {SMALL_MTU} for {far_addr} {learnt:?} after \
             its {BIG}-byte reply; then 10/10 fragmented {BIG}-byte replies reached the \
             client from the frontend",
            b[i]
        );
        let (st, out) = u.stop(Signal::SIGTERM);
        assert!(st.success(), "{out}");
        return;
    }
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
        "pmtu ({v}): backend {} learnt mtu {SMALL_MTU} for {far_addr} {learnt:?} after its \
         {BIG}-byte reply; a {fits}-byte reply then reached the client",
        b[i]
    );
    let (st, out) = u.stop(Signal::SIGTERM);
    assert!(st.success(), "{out}");
}

#[test]
fn fragmentation_needed_reaches_the_remote_backend_ipv4() {
    pmtu_reaches_the_backend_of_the_flow(false, true);
}

#[test]
fn packet_too_big_reaches_the_remote_backend_ipv6() {
    pmtu_reaches_the_backend_of_the_flow(true, true);
}

#[test]
fn fragmented_replies_after_a_pmtu_drop_reach_the_client_ipv4() {
    pmtu_reaches_the_backend_of_the_flow(false, false);
}

#[test]
fn fragmented_replies_after_a_pmtu_drop_reach_the_client_ipv6() {
    pmtu_reaches_the_backend_of_the_flow(true, false);
}

/// A local backend of a round-robin frontend (the default scheduler)
/// answers a far client with replies larger than the 1280-byte link in
/// front of it. The router's error goes to the frontend's address; whichever
/// local backend it is given to, this host's kernel caches the path MTU
/// for the client (per destination, not per socket), so after the first
/// reply the others arrive, fragmented by the kernel. Round robin has no
/// flow table, so no pin proves which backend answered, but for local
/// backends the answer is the same host: dropping the error (icmp_no_flow)
/// leaves every larger reply lost for good (Linux sets DF on UDP by
/// default), where a host without udplb learns the path MTU.
fn local_backend_of_round_robin_learns_the_path_mtu(ipv6: bool) {
    let (t, far) = topology();
    let (vip, far_addr, bind, router, lb_side) = match ipv6 {
        true => (
            format!("[{VIP6}]:53"),
            "2001:2:3::2",
            "[::]:0",
            "2001:2:3::1",
            "2001:2::1",
        ),
        false => (
            format!("{VIP4}:53"),
            "198.18.3.2",
            "0.0.0.0:0",
            "198.18.3.1",
            "198.18.0.1",
        ),
    };
    resolve_neighbour(&far, router);
    resolve_neighbour(&t.client, if ipv6 { "2001:2::2" } else { "198.18.0.2" });
    resolve_neighbour(&t.client, far_addr);
    resolve_neighbour(&t.lb, lb_side);
    let frontend: SocketAddr = vip.parse().unwrap();
    // Bound to the frontend's address: its replies leave from it (port
    // 5301, which udplb turns into 53), as a backend's replies must.
    let backend_addr = SocketAddr::new(frontend.ip(), 5301);
    let backend = t.lb.udp_bind(&backend_addr.to_string());
    backend
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut u = Udplb::start(&t.lb, &["l0", &format!("{vip}=5301")]);
    u.wait_for("attached to l0", Duration::from_secs(5));
    let client = far.enter(|| UdpSocket::bind(bind).unwrap());
    client
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let mut arrived = 0;
    for seq in 0..5 {
        client.send_to(&payload(seq, 20), frontend).unwrap();
        let (_, from) = backend.recv_from(&mut buf).expect("the request");
        let reply = payload(seq, BIG);
        backend.send_to(&reply, from).unwrap();
        if let Ok((n, src)) = client.recv_from(&mut buf) {
            assert_eq!(src, frontend, "reply {seq}");
            arrived += u32::from(buf[..n] == reply[..]);
        }
    }
    let s = status(&t.lb);
    println!(
        "local backend, round robin ({}): {arrived}/5 {BIG}-byte replies reached {far_addr}; \
         verdicts {}",
        if ipv6 { "IPv6" } else { "IPv4" },
        s["verdicts"]
    );
    // The first reply may be lost: it is the one that draws the error.
    assert!(
        arrived >= 4,
        "{arrived}/5 replies larger than the path MTU arrived: the host never learnt it \
         (icmp_no_flow {})",
        s["verdicts"]["icmp_no_flow"]
    );
    let (st, out) = u.stop(Signal::SIGTERM);
    assert!(st.success(), "{out}");
}

#[test]
fn local_backend_of_round_robin_learns_the_path_mtu_ipv4() {
    local_backend_of_round_robin_learns_the_path_mtu(false);
}

#[test]
fn local_backend_of_round_robin_learns_the_path_mtu_ipv6() {
    local_backend_of_round_robin_learns_the_path_mtu(true);
}

/// `n` requests from `client` (connected to the frontend), each answered
/// with `size` bytes by whichever backend gets it; the replies that reach
/// the client whole, from the frontend.
fn answered(client: &UdpSocket, backends: &[UdpSocket], n: u32, size: usize) -> u32 {
    let mut buf = vec![0u8; 2048];
    let mut got = 0;
    for seq in 0..n {
        client.send(&payload(seq, 20)).unwrap();
        let (i, from) = (0..20)
            .find_map(|_| {
                (0..backends.len())
                    .find_map(|i| backends[i].recv_from(&mut buf).ok().map(|(_, f)| (i, f)))
            })
            .expect("the request reached a backend");
        let reply = payload(seq, size);
        backends[i].send_to(&reply, from).unwrap();
        if let Ok(k) = client.recv(&mut buf) {
            got += u32::from(buf[..k] == reply[..]);
        }
    }
    got
}

fn forged_packet_too_big_changes_nothing_for_the_victim(ipv6: bool) {
    let t = triangle();
    // IPv6: a 1000-byte reply fits the minimum MTU (1280) that a forged
    // packet too big can claim; 1400 bytes do not.
    let (vip, victim, forger, lb, kind, mtu, size) = match ipv6 {
        true => (
            VIP6,
            "2001:2::1",
            "2001:2::3",
            "2001:2::2",
            (2, 0),
            1280,
            1400,
        ),
        false => (
            VIP4,
            "198.18.0.1",
            "198.18.0.3",
            "198.18.0.2",
            (3, 4),
            552,
            1000,
        ),
    };
    let prefix = if ipv6 { 64 } else { 24 };
    let mut add = vec!["addr", "add"];
    let forger_net = format!("{forger}/{prefix}");
    add.extend([forger_net.as_str(), "dev", "c0"]);
    if ipv6 {
        add.insert(0, "-6");
        add.push("nodad");
    }
    t.client.ip(&add);
    let sock = |a: &str, port: u16| SocketAddr::new(a.parse().unwrap(), port);
    let b: Vec<SocketAddr> = (1..=2)
        .map(|i| match ipv6 {
            true => sock(&format!("2001:2:{i}::2"), 5353),
            false => sock(&format!("198.18.{i}.2"), 5353),
        })
        .collect();
    resolve_neighbour(&t.client, lb);
    for i in 1..=2 {
        let (lb_side, srv) = match ipv6 {
            true => (format!("2001:2:{i}::1"), format!("2001:2:{i}::2")),
            false => (format!("198.18.{i}.1"), format!("198.18.{i}.2")),
        };
        resolve_neighbour(&t.lb, &srv);
        resolve_neighbour(&t.srv[i - 1], &lb_side);
    }
    resolve_neighbour(&t.lb, victim);
    resolve_neighbour(&t.lb, forger);
    // Default sockets: after a lowered path MTU their kernel fragments.
    let backends: Vec<UdpSocket> = (0..2)
        .map(|i| {
            let s = t.srv[i].udp_bind(&b[i].to_string());
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            s
        })
        .collect();
    let frontend = sock(vip, 53);
    let mut u = Udplb::start(
        &t.lb,
        &[
            "--sched",
            "maglev",
            "l0,l1,l2",
            &format!("{frontend}={},{}", b[0], b[1]),
        ],
    );
    u.wait_for("attached to l2", Duration::from_secs(5));
    let client = |a: &str| {
        let bind = sock(a, 0);
        t.client.enter(move || {
            let c = UdpSocket::bind(bind).unwrap();
            c.set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            c.connect(frontend).unwrap();
            c
        })
    };
    let (v, f) = (client(victim), client(forger));
    assert_eq!(answered(&v, &backends, 10, size), 10, "before: the victim");
    assert_eq!(answered(&f, &backends, 1, size), 1, "before: the forger");

    // The forger names the victim's address from 16 other ports, enough
    // to reach both backends by the flow hash.
    let own = v.local_addr().unwrap().port();
    let ports: Vec<u16> = (40000..).filter(|p| *p != own).take(16).collect();
    for port in &ports {
        let quoted = udp(&frontend.to_string(), &sock(victim, *port).to_string())
            .payload(&vec![b'x'; size])
            .build();
        let forged = icmp_error(forger, vip, kind, mtu, &quoted, 64);
        send_raw(&t.client, &forged, vip, ipv6);
    }
    std::thread::sleep(Duration::from_millis(300));
    for srv in &t.srv {
        assert_eq!(
            learnt_mtu(srv, victim, Duration::ZERO),
            None,
            "a backend host learnt a path MTU for the victim from the forger"
        );
    }
    assert_eq!(answered(&v, &backends, 10, size), 10, "after: the victim");
    let s = status(&t.lb);
    assert_eq!(
        s["verdicts"]["icmp_no_flow"],
        ports.len(),
        "{}",
        s["verdicts"]
    );
    assert_eq!(s["verdicts"]["icmp_to_backend"], 0, "{}", s["verdicts"]);
    println!(
        "forged {} ({}): {} errors naming {victim} from {forger} dropped; the victim got \
         10/10 replies of {size} B after them",
        if ipv6 {
            "packet too big"
        } else {
            "fragmentation needed"
        },
        if ipv6 { "IPv6" } else { "IPv4" },
        ports.len()
    );
    let (st, out) = u.stop(Signal::SIGTERM);
    assert!(st.success(), "{out}");
}

#[test]
fn forged_fragmentation_needed_changes_nothing_for_the_victim_ipv4() {
    forged_packet_too_big_changes_nothing_for_the_victim(false);
}

#[test]
fn forged_packet_too_big_changes_nothing_for_the_victim_ipv6() {
    forged_packet_too_big_changes_nothing_for_the_victim(true);
}
