//! A fragmentation needed (ICMPv4 3/4) / packet too big (ICMPv6 2) for a
//! frontend, about a reply udplb rewrote, through BPF_PROG_TEST_RUN
//! (bpf/icmp.h, bpf/flows.h). Anyone can send one naming any client, and
//! the backend told would fragment its replies to that client; so it goes
//! on only to the backend that answered the flow, as a live pin of the flow
//! table says:
//! - delivered to the pinned backend (local and remote, IPv4 and IPv6),
//!   also where the ring would pick another one, byte for byte;
//! - for a remote backend, dropped and counted icmp_no_flow without that
//!   proof: a client no backend answered (a third party naming a client
//!   that has no pin), an idle pin, a pin whose slot went to another
//!   backend, a pin learned for another frontend, and every frontend
//!   without a flow table (round robin, flow_timeout 0);
//! - for a local backend, without a pin, delivered to the ring's backend
//!   for the flow (this host's kernel heeds it only for a socket the quote
//!   names, as for any UDP server; round robin and flow_timeout 0 keep
//!   their path MTU);
//! - the egress program never sends one on.

use udplb_testkit as support;

use libbpf_rs::{MapCore, MapFlags};
use support::forwarding::{client_neighbour, private_topology, register_tx_ports, Net};
use support::packets::{icmp_error, udp, Frame};
use support::runner::{assert_reasons, Case, Fixture, Prog, TC_ACT_UNSPEC, XDP_DROP};
use udplb::abi::{
    self, bytes_of, Flow, UDPLB_REASON_ICMP_NO_FLOW, UDPLB_REASON_ICMP_TO_BACKEND,
    UDPLB_REASON_REPLY_FORWARDED,
};
use udplb::config::{Config, Sched};

const SPECS: &[&str] = &[
    "198.18.100.3:7000=7001,7002,7003", // 0: local, maglev
    "198.18.100.4:53=198.18.1.2:6000,198.18.2.2:6000", // 1: remote, maglev
    "[2001:2:100::5]:53=[2001:2:1::2]:6000,[2001:2:2::2]:6000", // 2: remote v6, maglev
    "[2001:2:100::6]:7000=7011,7012",   // 3: local v6, maglev
    "198.18.100.1:53=198.18.1.2:5353,198.18.2.2:5353", // 4: remote, rr
    "198.18.100.8:7100=7101,7102",      // 5: local, maglev, timeout 0
    "7200=7202",                        // 6: port only, maglev
    "198.18.100.7:7200=7201",           // 7: same port, exact, maglev
];

const ROUTER4: &str = "198.18.0.9";
const ROUTER6: &str = "2001:2::9";
const FRAG_NEEDED4: (u8, u8) = (3, 4);
const TOO_BIG6: (u8, u8) = (2, 0);

/// The private topology (remote backends' replies must arrive where the
/// route to them leads, bk1 or bk2, and leave through a device of the
/// balancer's, to be rewritten and pin), then the datapath.
fn setup() -> (Net, Fixture) {
    let net = private_topology();
    let mut config = Config::from_specs(SPECS).expect("test configuration");
    for i in [0, 1, 2, 3, 5, 6, 7] {
        config.frontends[i].sched = Sched::Maglev;
    }
    config.frontends[5].flow_timeout = 0;
    let fx = Fixture::with_config(&config);
    register_tx_ports(&fx.dp, &net);
    (net, fx)
}

fn ip_of(s: &str) -> std::net::IpAddr {
    s.parse::<std::net::SocketAddr>().unwrap().ip()
}

fn dgram(src: &str, dst: &str) -> Frame {
    udp(src, dst).payload(b"0123456789abcdef").build()
}

/// The backend a request of `client` to `frontend` goes to (the ring's
/// choice while the flow has no pin), as "addr:port".
fn ring_choice(fx: &Fixture, client: &str, frontend: &str) -> String {
    let f = dgram(client, frontend);
    let (_, out) = fx.run(None, &f.bytes);
    let port = u16::from_be_bytes([out[f.l4() + 2], out[f.l4() + 3]]);
    let a: std::net::IpAddr = if f.ipv6 {
        <[u8; 16]>::try_from(&out[f.l3 + 24..f.l3 + 40])
            .unwrap()
            .into()
    } else {
        <[u8; 4]>::try_from(&out[f.l3 + 16..f.l3 + 20])
            .unwrap()
            .into()
    };
    std::net::SocketAddr::new(a, port).to_string()
}

/// `backend` answers `client` through XDP, where such a reply arrives: a
/// remote backend's on the device its route uses (the client's neighbour
/// known, so that XDP sends it on), a local one's on lo. The reply is
/// rewritten (to come from the frontend port `fe_port`), which pins the
/// flow if the frontend has a flow table.
fn answer(fx: &Fixture, net: &Net, backend: &str, client: &str, fe_port: u16) {
    let ip = backend_ip(backend);
    let remote = !ip.starts_with("198.18.100.") && !ip.starts_with("2001:2:100::");
    if remote {
        client_neighbour(ip_of(client));
    }
    let on = match remote {
        false => None,
        true if ip.starts_with("198.18.1.") || ip.starts_with("2001:2:1::") => Some(net.bk1),
        true => Some(net.bk2),
    };
    let f = dgram(backend, client);
    let (verdict, out) = fx.run(on, &f.bytes);
    let sport = u16::from_be_bytes([out[f.l4()], out[f.l4() + 1]]);
    assert_ne!(verdict, XDP_DROP, "the reply of {backend} to {client}");
    assert_eq!(
        sport, fe_port,
        "the reply of {backend} to {client} was not rewritten"
    );
}

fn backend_ip(backend: &str) -> String {
    ip_of(backend).to_string()
}

fn too_big(frontend: &str) -> (&'static str, (u8, u8)) {
    match ip_of(frontend).is_ipv6() {
        true => (ROUTER6, TOO_BIG6),
        false => (ROUTER4, FRAG_NEEDED4),
    }
}

/// A packet too big from the client's side for `frontend` about its reply
/// to `client`, quoting the whole reply.
fn ptb(frontend: &str, client: &str) -> Vec<u8> {
    let (router, kind) = too_big(frontend);
    let quoted = dgram(frontend, client);
    let n = quoted.bytes.len() - quoted.l3;
    icmp_error(router, &backend_ip(frontend), kind, 1280, &quoted, n)
}

/// The packet too big goes on to `backend`: the quoted source becomes it,
/// and a remote backend's address becomes the outer destination.
fn delivered(name: &str, frontend: &str, client: &str, backend: &str) -> Case {
    let (router, kind) = too_big(frontend);
    let quoted = dgram(frontend, client);
    let n = quoted.bytes.len() - quoted.l3;
    let expected = dgram(backend, client);
    let (fe_ip, be_ip) = (backend_ip(frontend), backend_ip(backend));
    let dst = if be_ip.starts_with("198.18.100.") || be_ip.starts_with("2001:2:100::") {
        fe_ip
    } else {
        be_ip
    };
    Case {
        output: icmp_error(router, &dst, kind, 1280, &expected, n),
        reason: Some(UDPLB_REASON_ICMP_TO_BACKEND),
        ..Case::untouched(name, &ptb(frontend, client), 0)
    }
}

fn refused(name: &str, frontend: &str, client: &str) -> Case {
    Case::dropped(name, &ptb(frontend, client), UDPLB_REASON_ICMP_NO_FLOW)
}

/// Without a pin: refused for remote backends, to the ring's backend for
/// the flow for local ones (whose address is the frontend's).
fn unproven(fx: &Fixture, name: &str, frontend: &str, backend: &str, client: &str) -> Case {
    match ip_of(backend) == ip_of(frontend) {
        true => delivered(name, frontend, client, &ring_choice(fx, client, frontend)),
        false => refused(name, frontend, client),
    }
}

/// The backends of the Maglev frontends 0-3, as "addr:port".
fn maglev_frontends() -> Vec<(&'static str, Vec<String>, u16)> {
    vec![
        (
            "198.18.100.3:7000",
            (7001..=7003).map(|p| format!("198.18.100.3:{p}")).collect(),
            7000,
        ),
        (
            "198.18.100.4:53",
            vec!["198.18.1.2:6000".into(), "198.18.2.2:6000".into()],
            53,
        ),
        (
            "[2001:2:100::5]:53",
            vec!["[2001:2:1::2]:6000".into(), "[2001:2:2::2]:6000".into()],
            53,
        ),
        (
            "[2001:2:100::6]:7000",
            vec!["[2001:2:100::6]:7011".into(), "[2001:2:100::6]:7012".into()],
            7000,
        ),
    ]
}

fn client_of(frontend: &str, i: u16) -> String {
    match ip_of(frontend).is_ipv6() {
        true => format!("[2001:2::{}]:{}", 10 + i, 40000 + i),
        false => format!("198.18.0.{}:{}", 10 + i, 40000 + i),
    }
}

#[test]
fn packet_too_big_goes_to_the_backend_that_answered() {
    let (net, fx) = setup();
    let mut cases = Vec::new();
    for (frontend, backends, port) in maglev_frontends() {
        for i in 0..4 {
            let client = client_of(frontend, i);
            // Mostly a backend the ring would not pick: the pin decides,
            // not the hash.
            let ring = ring_choice(&fx, &client, frontend);
            let backend = match i {
                0 => ring,
                _ => backends.iter().find(|b| **b != ring).unwrap().clone(),
            };
            answer(&fx, &net, &backend, &client, port);
            cases.push(delivered(
                &format!("{frontend}: {client} answered by {backend}"),
                frontend,
                &client,
                &backend,
            ));
        }
    }
    fx.check_all(&cases);
}

#[test]
fn packet_too_big_without_a_pin_is_dropped_and_counted() {
    let (net, fx) = setup();
    let mut cases = Vec::new();
    for (frontend, backends, port) in maglev_frontends() {
        let victim = client_of(frontend, 0);
        // A client no backend has answered: whoever sends it, no proof.
        let b0 = &backends[0];
        cases.push(unproven(
            &fx,
            &format!("{frontend}: {victim}, never answered"),
            frontend,
            b0,
            &victim,
        ));
        // Another client was answered; naming the victim (another port of
        // the same address, or another address) still proves nothing.
        let other = client_of(frontend, 1);
        answer(&fx, &net, &backends[0], &other, port);
        let (other_ip, victim_port) = (ip_of(&other), 40000);
        let same_addr = std::net::SocketAddr::new(other_ip, victim_port).to_string();
        cases.push(unproven(
            &fx,
            &format!("{frontend}: {same_addr}, only {other} answered"),
            frontend,
            b0,
            &same_addr,
        ));
        cases.push(unproven(
            &fx,
            &format!("{frontend}: {victim}, only {other} answered"),
            frontend,
            b0,
            &victim,
        ));
        cases.push(delivered(
            &format!("{frontend}: {other} itself"),
            frontend,
            &other,
            &backends[0],
        ));
    }
    // No flow table, no proof: round robin over remote backends, though
    // they answered the client; Maglev with timeout 0 over local ones goes
    // by the ring.
    let c = "198.18.0.10:40000";
    answer(&fx, &net, "198.18.1.2:5353", c, 53);
    answer(&fx, &net, "198.18.2.2:5353", c, 53);
    cases.push(refused("round robin, remote", "198.18.100.1:53", c));
    answer(&fx, &net, "198.18.100.8:7101", c, 7100);
    let fe = "198.18.100.8:7100";
    cases.push(unproven(
        &fx,
        "flow_timeout 0, local",
        fe,
        "198.18.100.8:7101",
        c,
    ));
    // A pin learned for the port-only frontend (its backend answered from
    // 198.18.100.7) proves nothing about the exact frontend on that port:
    // its local backends go by the ring.
    answer(&fx, &net, "198.18.100.7:7202", c, 7200);
    let fe = "198.18.100.7:7200";
    cases.push(unproven(
        &fx,
        "another frontend's pin",
        fe,
        "198.18.100.7:7201",
        c,
    ));
    // The egress program never sends one on (it could not route it).
    cases.push(Case {
        prog: Prog::Egress,
        verdict: TC_ACT_UNSPEC,
        reason: None,
        ..Case::untouched("egress", &ptb("198.18.100.3:7000", c), 0)
    });
    fx.check_all(&cases);
}

#[test]
fn an_idle_pin_or_one_whose_slot_changed_hands_proves_nothing() {
    let (net, fx) = setup();
    // A remote backend: a local one would be told without a pin anyway.
    let (frontend, backend, c) = ("198.18.100.4:53", "198.18.1.2:6000", "198.18.0.10:40000");
    answer(&fx, &net, backend, c, 53);
    fx.check_all(&[delivered("fresh", frontend, c, backend)]);
    let map = fx.dp.flows_map();
    let key = map.keys().next().expect("one pin");
    assert_eq!(map.keys().count(), 1);
    let pin: Flow = abi::from_bytes(&map.lookup(&key, MapFlags::ANY).unwrap().unwrap()).unwrap();
    let hz = fx.dp.clock().unwrap().hz;
    assert!(hz > 0, "CONFIG_HZ unknown");
    let idle = Flow {
        last_seen: pin.last_seen - 61 * hz,
        ..pin
    };
    let reassigned = Flow {
        ident: pin.ident ^ 1,
        ..pin
    };
    for (what, v) in [
        ("idle past the timeout", idle),
        ("slot reassigned", reassigned),
    ] {
        map.update(&key, bytes_of(&v), MapFlags::ANY).unwrap();
        fx.check_all(&[refused(what, frontend, c)]);
    }
    map.update(&key, bytes_of(&pin), MapFlags::ANY).unwrap();
    fx.check_all(&[delivered("fresh again", frontend, c, backend)]);
    assert_reasons(
        &fx,
        &[
            // The remote reply, rewritten and sent on (it pinned).
            (UDPLB_REASON_REPLY_FORWARDED, 1),
            (UDPLB_REASON_ICMP_TO_BACKEND, 2),
            (UDPLB_REASON_ICMP_NO_FLOW, 2),
        ],
    );
}
