//! Real UDP traffic for the namespace tests: payloads that carry a sequence
//! number, bounded receives, socket buffers, neighbour resolution, forged
//! IP packets sent as they are. Every loop that sends is bounded in count,
//! every receive in time.

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::sys::socket::{
    bind, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, SockaddrStorage,
};

use super::netns::Netns;

/// A datagram payload that carries its sequence number and is unique.
pub fn payload(seq: u32, len: usize) -> Vec<u8> {
    let mut p = format!("udplb-test {seq:08} ").into_bytes();
    let mut x = seq.wrapping_mul(2654435761) | 1;
    while p.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p.push(x as u8);
    }
    p.truncate(len.max(20));
    p
}

/// The sequence number a [`payload`] carries.
pub fn seq_of(p: &[u8]) -> u32 {
    std::str::from_utf8(&p[11..19])
        .expect("payload header")
        .parse()
        .expect("payload seq")
}

/// Receives exactly `n` datagrams on `sock` (2 s timeout each), then checks
/// that nothing more arrives within 200 ms.
pub fn recv_exactly(sock: &UdpSocket, n: usize) -> Vec<(Vec<u8>, SocketAddr)> {
    let mut got = Vec::with_capacity(n);
    let mut buf = vec![0u8; 65536];
    for i in 0..n {
        let (len, from) = sock.recv_from(&mut buf).unwrap_or_else(|e| {
            panic!("{:?}: datagram {i} of {n} missing: {e}", sock.local_addr())
        });
        got.push((buf[..len].to_vec(), from));
    }
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    if let Ok((len, _)) = sock.recv_from(&mut buf) {
        panic!(
            "{:?}: more than {n} datagrams (extra of {len} bytes)",
            sock.local_addr()
        );
    }
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    got
}

/// A socket buffer big enough for every datagram a test sends before it
/// reads (SO_RCVBUFFORCE: rmem_max is read-only inside a namespace).
pub fn big_rcvbuf(sock: &UdpSocket) {
    nix::sys::socket::setsockopt(sock, nix::sys::socket::sockopt::RcvBufForce, &(8 << 20))
        .expect("SO_RCVBUFFORCE");
}

/// Makes sure `from` has a neighbour entry for `to` before a burst, so the
/// first datagrams are not dropped while ARP/NDP resolves.
pub fn resolve_neighbour(from: &Netns, to: &str) {
    let target: SocketAddr = format!(
        "{}:9",
        if to.contains(':') {
            format!("[{to}]")
        } else {
            to.to_string()
        }
    )
    .parse()
    .unwrap();
    let bind = if to.contains(':') {
        "[::]:0"
    } else {
        "0.0.0.0:0"
    };
    let s = from.udp_bind(bind);
    let deadline = Instant::now() + super::slow(Duration::from_secs(5));
    loop {
        let _ = s.send_to(b"neighbour probe", target);
        std::thread::sleep(Duration::from_millis(50));
        let out = from.ip(&["neigh", "show", "to", to]);
        if out.contains("lladdr") && !out.contains("INCOMPLETE") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no neighbour entry for {to}: {out}"
        );
    }
}

/// A UDP socket bound to `addr` even where `addr` is not local: the
/// attacker's tool for a forged source (IP_FREEBIND to bind; IPv4 also
/// needs IP_TRANSPARENT to route from a foreign source; root in its
/// namespace). Make it inside the namespace that sends (`Netns::enter`).
pub fn forged_socket(addr: SocketAddr) -> UdpSocket {
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let fd: OwnedFd = socket(family, SockType::Datagram, SockFlag::empty(), None).unwrap();
    setsockopt(&fd, sockopt::IpFreebind, &true).unwrap();
    // Root may share what udplb holds with SO_REUSEPORT (its guards of
    // probe answers); an unprivileged user may not.
    setsockopt(&fd, sockopt::ReusePort, &true).unwrap();
    if family == AddressFamily::Inet {
        setsockopt(&fd, sockopt::IpTransparent, &true).unwrap();
    }
    bind(fd.as_raw_fd(), &SockaddrStorage::from(addr))
        .unwrap_or_else(|e| panic!("bind {addr} (freebind): {e}"));
    UdpSocket::from(fd)
}

/// Sends an IP packet (`frame` without its Ethernet header) from `ns` as
/// it is, source address included, through a raw socket: what a forger
/// on that host can send.
pub fn send_raw(ns: &Netns, frame: &[u8], dst: &str, ipv6: bool) {
    let ip = frame[14..].to_vec();
    let dst: std::net::IpAddr = dst.parse().unwrap();
    ns.enter(move || {
        send_ip(&raw_socket(ipv6), &ip, dst).expect("send a forged packet");
    });
}

/// A raw IP socket (IPPROTO_RAW: the caller writes the IP header, source
/// address included). Make it inside the namespace that sends
/// (`Netns::enter`).
pub fn raw_socket(ipv6: bool) -> OwnedFd {
    use nix::sys::socket::SockProtocol;
    let family = if ipv6 {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    socket(family, SockType::Raw, SockFlag::empty(), SockProtocol::Raw).expect("raw socket")
}

/// Sends the IP packet `ip` (from its IP header on) through `fd`, a
/// [`raw_socket`], towards `dst`: the bytes sent.
pub fn send_ip(fd: &OwnedFd, ip: &[u8], dst: std::net::IpAddr) -> nix::Result<usize> {
    let to = SockaddrStorage::from(SocketAddr::new(dst, 0));
    nix::sys::socket::sendto(fd.as_raw_fd(), ip, &to, nix::sys::socket::MsgFlags::empty())
}

/// `n` non-blocking client sockets bound in `ns` to `addr` on ports
/// `first`.. (one flow each).
pub fn clients_on(ns: &Netns, addr: &str, first: u16, n: u16) -> Vec<UdpSocket> {
    (first..first + n)
        .map(|p| {
            let s = ns.udp_bind(&format!("{addr}:{p}"));
            s.set_nonblocking(true).unwrap();
            s
        })
        .collect()
}

/// One datagram per client socket to `frontend`, sent from a thread on
/// `cpu`; the backend port each flow's answer names (backends that answer
/// with their own port: servers::Reply::Port), by socket index. Each
/// answer must come from the frontend's port; every socket must get one
/// within 5 s.
pub fn round_to(socks: &[UdpSocket], frontend: &str, cpu: Option<usize>) -> BTreeMap<usize, u16> {
    let port: u16 = frontend
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("ADDR:PORT");
    std::thread::scope(|sc| {
        sc.spawn(|| {
            if let Some(c) = cpu {
                let _ = super::cpu::pin_to_cpu(c);
            }
            for s in socks {
                s.send_to(b"flow", frontend).expect("send");
            }
            let mut seen = BTreeMap::new();
            let mut buf = [0u8; 64];
            let deadline = Instant::now() + Duration::from_secs(5);
            while seen.len() < socks.len() && Instant::now() < deadline {
                for (i, s) in socks.iter().enumerate() {
                    while let Ok((n, from)) = s.recv_from(&mut buf) {
                        assert_eq!(from.port(), port, "answers come from the frontend");
                        assert_eq!(n, 2);
                        seen.insert(i, u16::from_be_bytes([buf[0], buf[1]]));
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            assert_eq!(seen.len(), socks.len(), "flows answered");
            seen
        })
        .join()
        .expect("client thread")
    })
}
