//! Direct server return in the XDP datapath (bpf/dsr.h) through
//! BPF_PROG_TEST_RUN: requests encapsulated (ipip, gue; IPv4 and IPv6,
//! and across families) or readdressed (l2) and redirected to their
//! backend's next hop, the client's packet untouched inside; outer
//! checksums; what cannot be sent dropped and counted; at the route's MTU
//! less the encapsulation's overhead a request is sent, one byte more gets
//! the path's MTU back in ICMP.
//!
//! Each test moves its thread into a private network namespace holding the
//! topology of tests/support/forwarding.rs (srv1 behind bk1, srv2 behind
//! bk2). Expected frames are built from scratch (tests/support/dsr.rs).
//! Needs root: run `sudo make test`.

use std::net::IpAddr;

use udplb_testkit as support;

use support::dsr::{encapsulated, outer_udp_verifies, readdressed, request_hash, too_big};
use support::forwarding::*;
use support::packets::{udp, Csum as Field, Frame, TPID_8021Q};
use support::runner::{assert_reasons, Case, Fixture, Hit, Prog, XDP_REDIRECT, XDP_TX};
use udplb::abi::{
    UDPLB_FLOW_HIT, UDPLB_FLOW_MISS, UDPLB_FLOW_PIN_CREATED, UDPLB_REASON_DSR_SENT,
    UDPLB_REASON_DSR_TOO_BIG, UDPLB_REASON_DSR_UNSENT, UDPLB_REASON_FRAGMENT,
};
use udplb::config::{parse_frontend, Config, Defaults, Mode, Sched, Tunnel, Tunnels};

const T4: &str = "198.18.200.0/24";
const T6: &str = "2001:2:200::/112";

/// (frontend, mode); each backend on the frontend's port, as DSR needs.
const FRONTENDS: &[(&str, &str)] = &[
    ("198.18.100.1:53=198.18.1.2:53,198.18.2.2:53", "ipip"),
    ("[2001:2:100::1]:53=[2001:2:1::2]:53", "gue:6080"),
    ("198.18.100.1:54=[2001:2:1::2]:54", "ipip"),
    ("[2001:2:100::1]:54=198.18.2.2:54", "gue:6080"),
    ("198.18.100.1:55=198.18.1.2:55", "l2"),
    ("[2001:2:100::1]:55=[2001:2:2::2]:55", "l2"),
    ("198.18.100.1:56=198.18.1.2:56", "gue:6080"),
    ("[2001:2:100::1]:56=[2001:2:1::2]:56", "ipip"),
    ("198.18.100.1:57=[2001:2:2::2]:57", "gue:6080"),
    // Maglev, with the flow table (MAGLEV).
    ("198.18.100.1:58=198.18.1.2:58,198.18.2.2:58", "ipip"),
];
const MAGLEV: usize = 9;

fn config() -> Config {
    let frontends = FRONTENDS
        .iter()
        .enumerate()
        .map(|(i, (spec, mode))| {
            let defaults = Defaults {
                sched: if i == MAGLEV {
                    Sched::Maglev
                } else {
                    Sched::Rr
                },
                table_size: 251,
                mode: Mode::parse(mode).unwrap(),
                tunnels: Tunnels::parse(&[T4, T6]).unwrap(),
                ..Defaults::default()
            };
            parse_frontend(spec, defaults).unwrap()
        })
        .collect();
    Config::new(frontends).expect("the DSR test configuration")
}

fn fixture() -> (Fixture, Net) {
    let fx = Fixture::with_config(&config());
    let net = private_topology();
    register_tx_ports(&fx.dp, &net);
    (fx, net)
}

fn mode(fe: usize) -> Mode {
    Mode::parse(FRONTENDS[fe].1).unwrap()
}

fn backend(fe: usize, b: usize) -> IpAddr {
    let backends = FRONTENDS[fe].0.split_once('=').unwrap().1;
    let spec = backends.split(',').nth(b).unwrap();
    sock(spec).ip()
}

/// The next hop of a backend: srv1 behind bk1 or srv2 behind bk2.
fn leg(backend: IpAddr) -> ([u8; 6], [u8; 6]) {
    match backend.to_string().as_str() {
        "198.18.1.2" | "2001:2:1::2" => (MAC_BK1, MAC_SRV1),
        _ => (MAC_BK2, MAC_SRV2),
    }
}

/// Request `f` of frontend `fe` sent to its backend `b`, as expected.
fn sent(name: &str, f: &Frame, at: (usize, usize), on: u32) -> Case {
    sent_as(name, f, f, at, on)
}

/// Request `input` sent as `f` is (its checksum completed).
fn sent_as(name: &str, input: &Frame, f: &Frame, (fe, b): (usize, usize), on: u32) -> Case {
    let be = backend(fe, b);
    let output = match mode(fe) {
        Mode::L2 => readdressed(f, leg(be)),
        m => {
            let tunnel = Tunnel::parse(if be.is_ipv4() { T4 } else { T6 }).unwrap();
            encapsulated(f, m, tunnel, be, request_hash(f, 0), leg(be))
        }
    };
    Case {
        name: name.into(),
        prog: Prog::Xdp,
        input: input.bytes.clone(),
        ingress_ifindex: Some(on),
        verdict: XDP_REDIRECT,
        output,
        reason: Some(UDPLB_REASON_DSR_SENT),
        hit: Hit::Backend(fe, b),
        passive: None,
    }
}

fn dropped(name: &str, f: &Frame, reason: u32, on: u32) -> Case {
    Case::dropped(name, &f.bytes, reason).on(on)
}

#[test]
fn requests_are_encapsulated_or_readdressed_to_their_backend() {
    let (fx, net) = fixture();
    let c4 = "198.18.0.1:40000";
    let c6 = "[2001:2::1]:40000";
    let q = |c: &str, fe: &str, p: &[u8]| udp(c, fe).payload(p).build();
    let v4 = [
        q(c4, "198.18.100.1:53", b"one"),
        q(c4, "198.18.100.1:53", b"two"),
    ];
    let cases = [
        sent("ipip IPv4 in IPv4 -> srv1", &v4[0], (0, 0), net.ingress),
        sent(
            "ipip IPv4 in IPv4, round robin -> srv2",
            &v4[1],
            (0, 1),
            net.ingress,
        ),
        sent(
            "gue IPv6 in IPv6",
            &q(c6, "[2001:2:100::1]:53", &[6; 300]),
            (1, 0),
            net.ingress,
        ),
        sent(
            "ipip IPv4 in IPv6",
            &q(c4, "198.18.100.1:54", b"46"),
            (2, 0),
            net.ingress,
        ),
        sent(
            "gue IPv6 in IPv4",
            &q(c6, "[2001:2:100::1]:54", b"64"),
            (3, 0),
            net.ingress,
        ),
        sent(
            "l2 IPv4",
            &q(c4, "198.18.100.1:55", b"l2"),
            (4, 0),
            net.ingress,
        ),
        sent(
            "l2 IPv6",
            &q(c6, "[2001:2:100::1]:55", b"l2 six"),
            (5, 0),
            net.ingress,
        ),
        sent(
            "gue IPv4 in IPv4",
            &q(c4, "198.18.100.1:56", &[4; 999]),
            (6, 0),
            net.ingress,
        ),
        sent(
            "ipip IPv6 in IPv6",
            &q(c6, "[2001:2:100::1]:56", b"66"),
            (7, 0),
            net.ingress,
        ),
        sent(
            "gue IPv4 in IPv6",
            &q(c4, "198.18.100.1:57", b"4 in 6"),
            (8, 0),
            net.ingress,
        ),
        // The lookup starts from whichever device it came in on.
        sent("ipip arriving on bk2", &v4[0], (0, 0), net.bk2),
        // Another client: another hash in the outer source.
        sent(
            "ipip, another client",
            &q("198.18.0.7:1234", "198.18.100.1:53", b"x"),
            (0, 1),
            net.ingress,
        ),
        sent(
            "IPv4 with options",
            &udp(c4, "198.18.100.1:56").ihl(7).payload(b"o").build(),
            (6, 0),
            net.ingress,
        ),
        sent(
            "IPv4 without DF",
            &without_df(&q(c4, "198.18.100.1:56", b"df")),
            (6, 0),
            net.ingress,
        ),
    ];
    fx.check_all(&cases);
    assert_reasons(&fx, &[(UDPLB_REASON_DSR_SENT, cases.len() as u64)]);
}

#[test]
fn the_outer_udp_checksum_of_gue_over_ipv6_covers_the_inner_packet() {
    let (fx, net) = fixture();
    let c4 = "198.18.0.1:40000";
    let c6 = "[2001:2::1]:40000";
    let six = udp(c6, "[2001:2:100::1]:53").payload(&[0x5a; 777]).build();
    let four = udp(c4, "198.18.100.1:57").payload(&[0x44; 555]).build();
    let none = udp(c4, "198.18.100.1:57")
        .payload(b"no checksum")
        .csum(Field::Fixed(0))
        .build();
    let cases = [
        ("valid IPv6", six.clone(), (1, 0)),
        (
            "partial IPv6 (a sender with offload)",
            partial(&six),
            (1, 0),
        ),
        ("valid IPv4 in IPv6", four.clone(), (8, 0)),
        ("partial IPv4 in IPv6", partial(&four), (8, 0)),
        ("IPv4 without a checksum, in IPv6", none, (8, 0)),
    ];
    for (name, f, at) in &cases {
        let case = sent(name, f, *at, net.ingress);
        let (verdict, out) = fx.run(Some(net.ingress), &case.input);
        assert_eq!(verdict, XDP_REDIRECT, "{name}");
        assert!(
            outer_udp_verifies(&out),
            "{name}: the outer UDP checksum does not verify"
        );
        if !name.starts_with("partial") {
            fx.check(&case).unwrap_or_else(|e| panic!("{e}"));
        }
    }
    // A corrupt inner checksum leaves the outer one wrong: the backend drops
    // the datagram, as it would have dropped it unencapsulated.
    let (verdict, out) = fx.run(Some(net.ingress), &corrupt(&six).bytes);
    assert_eq!(verdict, XDP_REDIRECT);
    assert!(
        !outer_udp_verifies(&out),
        "a corrupt datagram must not verify once encapsulated"
    );
}

#[test]
fn what_cannot_be_sent_is_dropped_and_counted() {
    let (fx, net) = fixture();
    let c4 = "198.18.0.1:40000";
    let req = udp(c4, "198.18.100.1:56").payload(b"q").build();
    let tagged = udp(c4, "198.18.100.1:56")
        .tags(&[TPID_8021Q])
        .payload(b"q")
        .build();
    // A first fragment: its later fragments could not follow it. Dropped,
    // not handed to the kernel, which would take it for this host.
    let first = udp(c4, "198.18.100.1:56")
        .payload(b"q")
        .frag_field(0x2000)
        .build();
    fx.check_all(&[
        dropped("VLAN-tagged", &tagged, UDPLB_REASON_DSR_UNSENT, net.ingress),
        dropped(
            "a first fragment",
            &first,
            UDPLB_REASON_FRAGMENT,
            net.ingress,
        ),
    ]);

    // No neighbour entry for srv1: dropped (the kernel would take the
    // request for this host), and the next hop noted for the daemon.
    forget_srv1();
    fx.check_all(&[dropped(
        "srv1 unresolved",
        &req,
        UDPLB_REASON_DSR_UNSENT,
        net.ingress,
    )]);
    let noted = fx.dp.unresolved_neighbours().expect("reading dsr_neigh");
    assert!(
        noted
            .iter()
            .any(|(ifindex, a)| *ifindex == net.bk1 && a.to_string() == "198.18.1.2"),
        "srv1 not noted for resolution: {noted:?}"
    );
    neighbours(true);
    fx.check_all(&[sent("srv1 resolved again", &req, (6, 0), net.ingress)]);

    // An l2 backend reached through a router is not on a segment of ours.
    ip(&[
        "route",
        "replace",
        "198.18.1.2/32",
        "via",
        "198.18.2.2",
        "dev",
        "bk2",
    ]);
    let l2 = udp(c4, "198.18.100.1:55").payload(b"l2").build();
    fx.check_all(&[dropped(
        "l2 behind a router",
        &l2,
        UDPLB_REASON_DSR_UNSENT,
        net.ingress,
    )]);
}

#[test]
fn a_request_too_big_once_encapsulated_gets_the_path_mtu_back_in_icmp() {
    let (fx, net) = fixture();
    ip(&["link", "set", "bk1", "mtu", "1400"]);
    let c4 = "198.18.0.1:40000";
    let c6 = "[2001:2::1]:40000";
    let answered = |name: String, f: &Frame, mtu: u32| Case {
        name,
        prog: Prog::Xdp,
        input: f.bytes.clone(),
        ingress_ifindex: Some(net.ingress),
        verdict: XDP_TX,
        output: too_big(f, mtu),
        reason: Some(UDPLB_REASON_DSR_TOO_BIG),
        hit: Hit::Nothing,
        passive: None,
    };
    // (frontend, overhead, client, frontend address): gue IPv4 in IPv4
    // adds 28 bytes, ipip IPv6 in IPv6 40, ipip IPv4 in IPv6 40; the
    // client learns 1400 less that.
    for (fe, overhead, client, addr) in [
        (6, 28, c4, "198.18.100.1:56"),
        (7, 40, c6, "[2001:2:100::1]:56"),
        (2, 40, c4, "198.18.100.1:54"),
    ] {
        let fits = of_ip_len(client, addr, 1400 - overhead);
        let over = of_ip_len(client, addr, 1400 - overhead + 1);
        let mtu = 1400 - overhead as u32;
        fx.check_all(&[
            sent(
                &format!("frontend {fe}: MTU - overhead"),
                &fits,
                (fe, 0),
                net.ingress,
            ),
            answered(format!("frontend {fe}: one byte more"), &over, mtu),
        ]);
    }
    // A large IPv6 request: the error quotes 1232 bytes of it (1280 in
    // all); an IPv4 one 548 (576).
    let big6 = of_ip_len(c6, "[2001:2:100::1]:56", 1399);
    let big4 = of_ip_len(c4, "198.18.100.1:56", 1399);
    assert_eq!(too_big(&big6, 1360).len(), 14 + 1280);
    assert_eq!(too_big(&big4, 1372).len(), 14 + 576);
    fx.check_all(&[
        answered("IPv6, quote cut at 1280".into(), &big6, 1360),
        answered("IPv4, quote cut at 576".into(), &big4, 1372),
        // Its sender did not ask for path MTU discovery: dropped.
        dropped(
            "IPv4 with DF clear",
            &without_df(&big4),
            UDPLB_REASON_DSR_TOO_BIG,
            net.ingress,
        ),
    ]);
}

#[test]
fn a_maglev_request_pins_its_flow_and_the_next_follows_the_pin() {
    let (fx, net) = fixture();
    let f = udp("198.18.0.1:40000", "198.18.100.1:58")
        .payload(b"pin")
        .build();
    let (v1, first) = fx.run(Some(net.ingress), &f.bytes);
    assert_eq!(v1, XDP_REDIRECT);
    let events = |fx: &Fixture| fx.counters().flow_events;
    let e = events(&fx);
    assert_eq!(
        (
            e[UDPLB_FLOW_MISS as usize],
            e[UDPLB_FLOW_PIN_CREATED as usize]
        ),
        (1, 1)
    );
    // No reply will come: the request's own pin is followed.
    let (v2, second) = fx.run(Some(net.ingress), &f.bytes);
    assert_eq!(
        (v2, &second),
        (XDP_REDIRECT, &first),
        "the same backend, the same frame"
    );
    let e = events(&fx);
    assert_eq!(
        (
            e[UDPLB_FLOW_HIT as usize],
            e[UDPLB_FLOW_PIN_CREATED as usize]
        ),
        (1, 1)
    );
    assert_eq!(
        fx.dp
            .flows(|_| None)
            .expect("walking the flow table")
            .entries,
        1
    );
}
