//! Direct server return on one segment (mode l2), with real clients and
//! servers: dig asks the frontend, udplb sends each query on with the
//! backend's MAC, and dnsmasq on the backend answers the client itself
//! from the frontend's address, which dig insists on. The balancer has no
//! neighbour entry for the backends at the start: the first queries
//! are dropped until the daemon has the kernel resolve them.
//!
//! A bridge in a namespace of its own joins client, balancer and two
//! backends. The backends own the frontend's addresses on lo and keep
//! quiet about them on the segment (arp_ignore / arp_announce), as the
//! README's setup says; the client routes the frontend's addresses via the
//! balancer, as a router in front of it would.

use udplb_testkit as support;

use support::netns::{sh, Netns};
use support::operate::status;
use support::process::Udplb;
use support::servers::{dig_svc, dnsmasq, wait_bound};

const VIP4: &str = "198.18.100.1";
const VIP6: &str = "2001:2:100::1";
/// The README's setup of an l2 backend (it includes the file verbatim).
const SETUP: &str = include_str!("../scripts/dsr/backend-l2.sh");
const SRV4: [&str; 2] = ["198.18.0.10", "198.18.0.11"];
const SRV6: [&str; 2] = ["2001:2::10", "2001:2::11"];
/// What each backend's dnsmasq answers for svc.test.
const ANSWERS: [&str; 2] = ["198.19.0.10", "198.19.0.11"];

struct Segment {
    _sw: Netns,
    client: Netns,
    lb: Netns,
    srv: [Netns; 2],
}

/// One port of the segment's bridge: a veth from `ns` (device `dev`,
/// addressed) into the bridge's namespace.
fn port(sw: &Netns, ns: &Netns, dev: &str, addrs: &[&str]) {
    let peer = format!("p-{}", &ns.name[ns.name.len().saturating_sub(6)..]);
    sh(&[
        "ip", "link", "add", dev, "netns", &ns.name, "type", "veth", "peer", "name", &peer,
        "netns", &sw.name,
    ]);
    sw.ip(&["link", "set", &peer, "master", "br0"]);
    sw.ip(&["link", "set", &peer, "up"]);
    sw.exec(&["ethtool", "-K", &peer, "gro", "on"]);
    for a in addrs {
        match a.contains(':') {
            true => ns.ip(&["-6", "addr", "add", a, "dev", dev, "nodad"]),
            false => ns.ip(&["addr", "add", a, "dev", dev]),
        };
    }
    ns.ip(&["link", "set", dev, "up"]);
    ns.exec(&["ethtool", "-K", dev, "gro", "on"]);
}

fn segment() -> Segment {
    let s = Segment {
        _sw: Netns::new("dsw"),
        client: Netns::new("dc"),
        lb: Netns::new("dl"),
        srv: [Netns::new("ds0"), Netns::new("ds1")],
    };
    let sw = &s._sw;
    sw.ip(&["link", "add", "br0", "type", "bridge"]);
    sw.ip(&["link", "set", "br0", "up"]);
    port(sw, &s.client, "c0", &["198.18.0.1/24", "2001:2::1/64"]);
    port(sw, &s.lb, "l0", &["198.18.0.2/24", "2001:2::2/64"]);
    for (i, srv) in s.srv.iter().enumerate() {
        let (a4, a6) = (format!("{}/24", SRV4[i]), format!("{}/64", SRV6[i]));
        port(sw, srv, "s0", &[&a4, &a6]);
        // The README's backend setup for l2, verbatim.
        srv.exec(&["sh", "-ec", SETUP]);
    }
    // A DSR balancer routes: XDP's FIB lookup needs forwarding on.
    s.lb.exec(&[
        "sysctl",
        "-qw",
        "net.ipv4.ip_forward=1",
        "net.ipv6.conf.all.forwarding=1",
    ]);
    // dig opens a new socket on the same port for each try, connected as
    // the last, and closes the old one only after sending; with early
    // demux an IPv6 answer arriving between goes to the old socket and is
    // lost with it. The first try to each backend is dropped by design
    // (unresolved), so its answer meets that race: not the balancer's.
    s.client
        .exec(&["sysctl", "-qw", "net.ipv4.udp_early_demux=0"]);
    s.client
        .ip(&["route", "add", &format!("{VIP4}/32"), "via", "198.18.0.2"]);
    s.client.ip(&[
        "-6",
        "route",
        "add",
        &format!("{VIP6}/128"),
        "via",
        "2001:2::2",
    ]);
    s
}

#[test]
fn dig_gets_every_answer_from_the_frontend_address_itself() {
    let s = segment();
    let _dns: Vec<_> = (0..2)
        .map(|i| dnsmasq(&s.srv[i], 53, "svc.test", ANSWERS[i]))
        .collect();
    for srv in &s.srv {
        wait_bound(srv, 53);
    }
    let fe4 = format!("{VIP4}:53={}:53,{}:53", SRV4[0], SRV4[1]);
    let fe6 = format!("[{VIP6}]:53=[{}]:53,[{}]:53", SRV6[0], SRV6[1]);
    let lb = Udplb::start(
        &s.lb,
        &["--sched", "maglev", "--mode", "l2", "l0", &fe4, &fe6],
    );
    assert!(
        lb.line_with(&format!("{VIP4}:53 ->"))
            .contains("(maglev, l2)"),
        "the start line names the mode"
    );

    // Different source ports: Maglev spreads the flows over both backends.
    let mut seen = [0usize; 2];
    for (server, family) in [(VIP4, "IPv4"), (VIP6, "IPv6")] {
        for sport in 40000..40016u16 {
            let (answer, said) = dig_svc(&s.client, server, sport, 1);
            let i = ANSWERS.iter().position(|a| *a == answer).unwrap_or_else(|| {
                let neigh = s.lb.ip(&["neigh", "show", "dev", "l0"]);
                let verdicts = status(&s.lb)["verdicts"].to_string();
                panic!("{family} query from port {sport}: dig said {answer:?} {said:?}; {neigh}; {verdicts}")
            });
            seen[i] += 1;
        }
    }
    assert!(
        seen.iter().all(|&n| n > 0),
        "both backends answered: {seen:?}"
    );

    // The balancer never saw a reply, and sent every query it counted.
    let st = status(&s.lb);
    let verdicts = &st["verdicts"];
    let sent = verdicts["dsr_sent"].as_u64().unwrap();
    let unsent = verdicts["dsr_unsent"].as_u64().unwrap();
    assert!(sent >= 32, "dsr_sent {sent}");
    // The first query of each family found no neighbour entry for its
    // backend (nobody had talked to it): dropped, then resolved.
    // At most dig's three tries per backend and family before that.
    assert!((1..=12).contains(&unsent), "dsr_unsent {unsent}");
    for fe in st["frontends"].as_array().unwrap() {
        assert_eq!(fe["mode"], "l2");
        assert_eq!(fe["replies"]["packets"], 0, "no reply passes the balancer");
    }
    let neigh = s.lb.ip(&["neigh", "show", "dev", "l0"]);
    for a in SRV4.iter().chain(SRV6.iter()) {
        assert!(neigh.contains(a), "no neighbour entry for {a}: {neigh}");
    }
}

#[test]
fn the_readme_shows_each_backend_setup_verbatim() {
    let readme = include_str!("../README.md");
    for (name, text) in [
        ("l2", SETUP),
        ("ipip", include_str!("../scripts/dsr/backend-ipip.sh")),
        ("gue", include_str!("../scripts/dsr/backend-gue.sh")),
    ] {
        assert!(
            readme.contains(&format!("```sh\n{text}```")),
            "README.md must include scripts/dsr/backend-{name}.sh verbatim"
        );
    }
}
