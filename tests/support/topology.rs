//! Topologies of several namespaces for the tests of remote backends:
//! veth links with addresses, routes, forwarding, and the client /
//! balancer / two backend hosts triangle.

use super::netns::{set_tx_csum, sh, Netns};

/// One end of a link: namespace, device name, addresses (with prefix).
pub struct End<'a>(pub &'a Netns, pub &'a str, pub &'a [&'a str]);

/// A veth between two namespaces, addressed and up, GRO on at both ends:
/// a veth only takes XDP_REDIRECT frames when its peer has NAPI on.
pub fn link(a: End, b: End) {
    sh(&[
        "ip", "link", "add", a.1, "netns", &a.0.name, "type", "veth", "peer", "name", b.1, "netns",
        &b.0.name,
    ]);
    for End(ns, dev, addrs) in [a, b] {
        for addr in addrs {
            if addr.contains(':') {
                ns.ip(&["-6", "addr", "add", addr, "dev", dev, "nodad"]);
            } else {
                ns.ip(&["addr", "add", addr, "dev", dev]);
            }
        }
        ns.ip(&["link", "set", dev, "up"]);
        ns.exec(&["ethtool", "-K", dev, "gro", "on"]);
    }
}

pub fn route(ns: &Netns, args: &[&str]) {
    let v6 = args.iter().any(|a| a.contains(':'));
    let mut full = vec![if v6 { "-6" } else { "-4" }, "route", "replace"];
    full.extend_from_slice(args);
    ns.ip(&full);
}

pub fn forwarding(ns: &Netns) {
    ns.exec(&[
        "sysctl",
        "-qw",
        "net.ipv4.ip_forward=1",
        "net.ipv6.conf.all.forwarding=1",
    ]);
}

pub fn set_offload(ns: &Netns, devs: &[&str], on: bool) {
    for dev in devs {
        set_tx_csum(ns, dev, on);
    }
}

pub struct Triangle {
    pub client: Netns,
    pub lb: Netns,
    pub srv: [Netns; 2],
}

pub const VIP4: &str = "198.18.100.1";
pub const VIP6: &str = "2001:2:100::1";

/// A configuration file for udplb on the triangle's balancer: one frontend
/// VIP4:53 over `backends` (remote, "198.18.1.2:53"), with the TOML of its
/// `[frontend.health]` section (and any sub-sections) after it.
pub fn triangle_file(backends: &[&str], health: &str) -> super::process::TempFile {
    let list: Vec<String> = backends.iter().map(|b| format!("\"{b}\"")).collect();
    super::process::TempFile::new(
        "lb.toml",
        &format!(
            "interface = \"l0,l1,l2\"\n[[frontend]]\nlisten = \"{VIP4}:53\"\n\
             backends = [{}]\n[frontend.health]\n{health}",
            list.join(", ")
        ),
    )
}

/// client (198.18.0.1) -- lb (198.18.0.2 | 198.18.1.1 | 198.18.2.1) --
/// srv0 (198.18.1.2), srv1 (198.18.2.2); IPv6 alike under 2001:2::/48. The
/// frontend addresses live on the balancer's lo; the backend hosts use the
/// balancer as their gateway, as with IPVS NAT mode. No route leaves.
pub fn triangle() -> Triangle {
    let t = Triangle {
        client: Netns::new("rc"),
        lb: Netns::new("rl"),
        srv: [Netns::new("rs0"), Netns::new("rs1")],
    };
    link(
        End(&t.client, "c0", &["198.18.0.1/24", "2001:2::1/64"]),
        End(&t.lb, "l0", &["198.18.0.2/24", "2001:2::2/64"]),
    );
    for (i, srv) in t.srv.iter().enumerate() {
        let (lb_dev, lb4, lb6) = (
            format!("l{}", i + 1),
            format!("198.18.{}.1/24", i + 1),
            format!("2001:2:{}::1/64", i + 1),
        );
        let (s4, s6) = (
            format!("198.18.{}.2/24", i + 1),
            format!("2001:2:{}::2/64", i + 1),
        );
        link(
            End(&t.lb, &lb_dev, &[&lb4, &lb6]),
            End(srv, "s0", &[&s4, &s6]),
        );
        route(srv, &["default", "via", &format!("198.18.{}.1", i + 1)]);
        route(srv, &["default", "via", &format!("2001:2:{}::1", i + 1)]);
    }
    t.lb.ip(&["addr", "add", &format!("{VIP4}/32"), "dev", "lo"]);
    t.lb.ip(&["-6", "addr", "add", &format!("{VIP6}/128"), "dev", "lo"]);
    forwarding(&t.lb);
    route(&t.client, &[&format!("{VIP4}/32"), "via", "198.18.0.2"]);
    route(&t.client, &[&format!("{VIP6}/128"), "via", "2001:2::2"]);
    t
}

/// The triangle's addresses for one family: the frontend (VIP4:53 or
/// [VIP6]:53), the client's wildcard address to bind, and the two
/// backends on port 5353.
pub struct Family {
    pub vip: String,
    pub bind: &'static str,
    pub backends: [&'static str; 2],
}

pub fn family(ipv6: bool) -> Family {
    match ipv6 {
        true => Family {
            vip: format!("[{VIP6}]:53"),
            bind: "[::]:0",
            backends: ["[2001:2:1::2]:5353", "[2001:2:2::2]:5353"],
        },
        false => Family {
            vip: format!("{VIP4}:53"),
            bind: "0.0.0.0:0",
            backends: ["198.18.1.2:5353", "198.18.2.2:5353"],
        },
    }
}

/// A UDP socket of `ns` bound to `bind` and connected to `to`, so that it
/// takes only datagrams and ICMP errors from there; reads wait `timeout`.
pub fn connected(
    ns: &Netns,
    bind: &str,
    to: &str,
    timeout: std::time::Duration,
) -> std::net::UdpSocket {
    let to: std::net::SocketAddr = to.parse().expect("socket address");
    ns.enter(|| {
        let c = std::net::UdpSocket::bind(bind).unwrap();
        c.connect(to).unwrap();
        c.set_read_timeout(Some(timeout)).unwrap();
        c
    })
}

/// net.ipv4.conf.*.accept_local off on the triangle's balancer, everywhere
/// it is read (the "all" value or the device's): nothing udplb sends may
/// depend on it.
pub fn accept_local_off(lb: &Netns) {
    let mut knobs = vec!["net.ipv4.conf.all.accept_local=0".to_string()];
    for dev in ["default", "lo", "l0", "l1", "l2"] {
        knobs.push(format!("net.ipv4.conf.{dev}.accept_local=0"));
    }
    let mut args = vec!["sysctl", "-qw"];
    args.extend(knobs.iter().map(String::as_str));
    lb.exec(&args);
}

/// No ICMP rate limit in `ns`: a test's own error must not lose to the
/// per-host limit that its neighbour probes and earlier errors used up.
pub fn icmp_unlimited(ns: &Netns) {
    ns.exec(&[
        "sysctl",
        "-qw",
        "net.ipv4.icmp_ratelimit=0",
        "net.ipv6.icmp.ratelimit=0",
    ]);
}
