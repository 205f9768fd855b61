//! ICMP errors about balanced datagrams, through BPF_PROG_TEST_RUN (XDP
//! and TC egress), byte for byte (bpf/icmp.h):
//! - toward the client: the quoted destination (a backend) becomes the
//!   frontend, the outer source too where the frontend has an address, every
//!   checksum right (the expected frames are built from scratch, quoting the
//!   datagram as the client sent it); destination unreachable counts a
//!   passive ICMP error of the backend; a remote backend's error counts only
//!   where it arrives from that backend's side (a private routing
//!   topology), and is dropped as spoofed from anywhere else;
//! - (a packet-too-big for a frontend, going on to a backend: in
//!   tests/pmtu_datapath.rs);
//! - every truncation of these messages: malformed, untouched (or, once the
//!   quoted IP and UDP headers are whole, translated);
//! - ICMP that is not about a balanced datagram passes untouched (not_udp).

use udplb_testkit as support;

use support::packets::{icmp_error, icmp_message, udp, Csum, Frame};
use support::runner::{Case, Fixture, PassiveHit, Prog, TC_ACT_UNSPEC, XDP_PASS};
use udplb::abi::{
    UDPLB_REASON_ICMP_TO_EGRESS, UDPLB_REASON_ICMP_TRANSLATED, UDPLB_REASON_MALFORMED,
    UDPLB_REASON_NOT_UDP, UDPLB_REASON_SPOOFED_REPLY,
};
use udplb::config::{Config, Sched};

const SPECS: &[&str] = &[
    "9875=9876",                                                // 0: local, port only
    "198.18.100.1:53=198.18.1.2:5353,198.18.2.2:5353",          // 1: remote, rr
    "[2001:2:100::1]:53=[2001:2:1::2]:5353",                    // 2: remote v6
    "198.18.100.3:7000=7001,7002,7003",                         // 3: local, maglev
    "198.18.100.4:53=198.18.1.2:6000,198.18.2.2:6000",          // 4: remote, maglev
    "[2001:2:100::5]:53=[2001:2:1::2]:6000,[2001:2:2::2]:6000", // 5: remote v6, maglev
    "[2001:2:100::6]:7000=7011,7012",                           // 6: local v6, maglev
];

const C4: &str = "198.18.0.1:40000";
const C6: &str = "[2001:2::1]:40000";
const HOST4: &str = "198.18.0.2";
const HOST6: &str = "2001:2::2";
const ROUTER4: &str = "198.18.0.9";
const ROUTER6: &str = "2001:2::9";

const PORT_UNREACH4: (u8, u8) = (3, 3);
const FRAG_NEEDED4: (u8, u8) = (3, 4);
const TIME_EXCEEDED4: (u8, u8) = (11, 0);
const PORT_UNREACH6: (u8, u8) = (1, 4);
const TOO_BIG6: (u8, u8) = (2, 0);
const TIME_EXCEEDED6: (u8, u8) = (3, 0);

fn fixture() -> Fixture {
    let mut config = Config::from_specs(SPECS).expect("test configuration");
    for i in [3, 4, 5, 6] {
        config.frontends[i].sched = Sched::Maglev;
    }
    Fixture::with_config(&config)
}

fn addr(s: &str) -> String {
    let sa: std::net::SocketAddr = s.parse().unwrap();
    sa.ip().to_string()
}

/// A datagram of the test as a quote: a few payload bytes.
fn dgram(src: &str, dst: &str) -> Frame {
    udp(src, dst).payload(b"0123456789abcdef").build()
}

/// The whole IP packet of a datagram: what a kernel quotes of a short one.
fn whole(f: &Frame) -> usize {
    f.bytes.len() - f.l3
}

/// Toward the client: `quoted` (client -> backend) becomes `expected`
/// (client -> frontend), the outer source `src` becomes `new_src`.
#[allow(clippy::too_many_arguments)]
fn to_client(
    name: &str,
    prog: Prog,
    (src, new_src): (&str, &str),
    kind: (u8, u8),
    quoted: &Frame,
    expected: &Frame,
    quote: usize,
    passive: Option<PassiveHit>,
) -> Case {
    let client = addr(if quoted.ipv6 { C6 } else { C4 });
    let input = icmp_error(src, &client, kind, 0, quoted, quote);
    let output = icmp_error(new_src, &client, kind, 0, expected, quote);
    assert_ne!(input, output, "test bug: nothing to translate");
    Case {
        output,
        reason: (prog == Prog::Xdp).then_some(UDPLB_REASON_ICMP_TRANSLATED),
        passive,
        verdict: if prog == Prog::Xdp {
            XDP_PASS
        } else {
            TC_ACT_UNSPEC
        },
        prog,
        ..Case::untouched(name, &input, 0)
    }
}

#[test]
fn errors_toward_the_client_name_the_frontend() {
    // XDP checks that a remote backend's error arrives where the route to
    // that backend leads (bpf_fib_lookup in this thread's namespace): the
    // private topology reaches 198.18.1.2 / 2001:2:1::2 through bk1 and
    // 198.18.2.2 through bk2.
    let net = support::forwarding::private_topology();
    let fx = fixture();
    let mut cases = Vec::new();
    // A remote backend's error arrives on `dev` (XDP). IPv4: XDP checks
    // it, counts its passive error and passes it as it came; translated
    // there, its outer source would be the frontend's address, this host's
    // own, which IPv4 drops as a martian as the kernel takes it in to
    // forward it. Egress translates it as the kernel forwards it (a
    // forwarded skb has no socket, which a test run cannot make:
    // tests/errors_without_neighbours.rs, remote_errors_without_accept_local.rs).
    // IPv6 lets such a source in: XDP translates it. With a socket (an
    // error this host sends), egress translates both.
    let from = |c: Case, dev: u32| match c.prog {
        // Ethertype IPv4 (the frames have no VLAN tag).
        Prog::Xdp if c.input[12..14] == [0x08, 0x00] => Case {
            output: c.input.clone(),
            reason: Some(UDPLB_REASON_ICMP_TO_EGRESS),
            ..c
        }
        .on(dev),
        Prog::Xdp => c.on(dev),
        Prog::Egress => c,
    };
    for prog in [Prog::Xdp, Prog::Egress] {
        let p = |s: &str| format!("{s} ({prog:?})");
        // A local backend: the kernel's port unreachable from the address
        // the client used; only the quoted port changes.
        let q4 = dgram(C4, &format!("{HOST4}:9876"));
        let e4 = dgram(C4, &format!("{HOST4}:9875"));
        let q6 = dgram(C6, &format!("[{HOST6}]:9876"));
        let e6 = dgram(C6, &format!("[{HOST6}]:9875"));
        let local = (HOST4, HOST4);
        let local6 = (HOST6, HOST6);
        let err = Some(PassiveHit::IcmpError(0, 0));
        cases.extend([
            to_client(
                &p("IPv4 port unreachable, local backend"),
                prog,
                local,
                PORT_UNREACH4,
                &q4,
                &e4,
                whole(&q4),
                err,
            ),
            to_client(
                &p("IPv6 port unreachable, local backend"),
                prog,
                local6,
                PORT_UNREACH6,
                &q6,
                &e6,
                whole(&q6),
                err,
            ),
            to_client(
                &p("IPv4 time exceeded: translated, no passive error"),
                prog,
                local,
                TIME_EXCEEDED4,
                &q4,
                &e4,
                whole(&q4),
                None,
            ),
            to_client(
                &p("IPv4 fragmentation needed: translated, no passive error"),
                prog,
                local,
                FRAG_NEEDED4,
                &q4,
                &e4,
                whole(&q4),
                None,
            ),
            to_client(
                &p("IPv6 packet too big"),
                prog,
                local6,
                TOO_BIG6,
                &q6,
                &e6,
                whole(&q6),
                None,
            ),
            to_client(
                &p("IPv6 time exceeded"),
                prog,
                local6,
                TIME_EXCEEDED6,
                &q6,
                &e6,
                whole(&q6),
                None,
            ),
            to_client(
                &p("IPv4 quote of IP + 8 bytes only"),
                prog,
                local,
                PORT_UNREACH4,
                &q4,
                &e4,
                28,
                err,
            ),
        ]);
        // A quoted IPv4 UDP checksum of 0 stays 0.
        let z4 = udp(C4, &format!("{HOST4}:9876"))
            .csum(Csum::Fixed(0))
            .build();
        let ze4 = udp(C4, &format!("{HOST4}:9875"))
            .csum(Csum::Fixed(0))
            .build();
        cases.push(to_client(
            &p("IPv4 quoted checksum 0 stays 0"),
            prog,
            local,
            PORT_UNREACH4,
            &z4,
            &ze4,
            whole(&z4),
            err,
        ));
        // Remote backends: the quoted address and the outer source become
        // the frontend's.
        let r4 = dgram(C4, "198.18.2.2:5353");
        let re4 = dgram(C4, "198.18.100.1:53");
        let port_unreach4 = to_client(
            &p("IPv4 port unreachable from a remote backend"),
            prog,
            ("198.18.2.2", "198.18.100.1"),
            PORT_UNREACH4,
            &r4,
            &re4,
            whole(&r4),
            Some(PassiveHit::IcmpError(1, 1)),
        );
        cases.push(from(port_unreach4.clone(), net.bk2));
        cases.push(from(
            to_client(
                &p("IPv4 fragmentation needed from this host, remote backend"),
                prog,
                (HOST4, "198.18.100.1"),
                FRAG_NEEDED4,
                &r4,
                &re4,
                whole(&r4),
                None,
            ),
            net.bk2,
        ));
        let r6 = dgram(C6, "[2001:2:1::2]:5353");
        let re6 = dgram(C6, "[2001:2:100::1]:53");
        let port_unreach6 = to_client(
            &p("IPv6 port unreachable from a remote backend"),
            prog,
            ("2001:2:1::2", "2001:2:100::1"),
            PORT_UNREACH6,
            &r6,
            &re6,
            whole(&r6),
            Some(PassiveHit::IcmpError(2, 0)),
        );
        cases.push(from(port_unreach6.clone(), net.bk1));
        cases.push(from(
            to_client(
                &p("IPv6 time exceeded from a router, remote backend"),
                prog,
                (ROUTER6, "2001:2:100::1"),
                TIME_EXCEEDED6,
                &r6,
                &re6,
                whole(&r6),
                None,
            ),
            net.bk1,
        ));
        if prog == Prog::Xdp {
            // The same errors forged on the client side (or arriving from
            // the other backend's side): dropped, no passive error counted,
            // nothing sent on from the frontend's address.
            for (c, dev, side) in [
                (&port_unreach4, net.ingress, "the client side"),
                (&port_unreach4, net.bk1, "another backend's side"),
                (&port_unreach6, net.ingress, "the client side"),
            ] {
                let name = format!("{} forged on {side}", c.name);
                cases.push(Case::dropped(name, &c.input, UDPLB_REASON_SPOOFED_REPLY).on(dev));
            }
        }
    }
    fx.check_all(&cases);
}

#[test]
fn icmp_not_about_a_balanced_datagram_passes() {
    let fx = fixture();
    let c4 = addr(C4);
    let unrelated = dgram(C4, &format!("{HOST4}:1234"));
    let tcp_quote = {
        let mut f = dgram(C4, &format!("{HOST4}:9876"));
        f.bytes[f.l3 + 9] = 6; // quoted protocol: TCP
        f.refresh_ipv4_header_checksum();
        f
    };
    let frag_quote = dgram(C4, &format!("{HOST4}:9876")).ipv4_frag(false, 8);
    let echo = icmp_message(HOST4, &c4, vec![8, 0, 0, 0, 0, 1, 0, 1, 0x61, 0x62], None);
    let reply_quote = dgram(&format!("{HOST4}:9876"), C4); // from a backend: not a request
    let cases = [
        Case::untouched(
            "unrelated port",
            &icmp_error(HOST4, &c4, PORT_UNREACH4, 0, &unrelated, 44),
            UDPLB_REASON_NOT_UDP,
        ),
        Case::untouched(
            "quoting TCP",
            &icmp_error(HOST4, &c4, PORT_UNREACH4, 0, &tcp_quote, 44),
            UDPLB_REASON_NOT_UDP,
        ),
        Case::untouched(
            "quoting a later fragment",
            &icmp_error(HOST4, &c4, PORT_UNREACH4, 0, &frag_quote, 44),
            UDPLB_REASON_NOT_UDP,
        ),
        Case::untouched("echo request", &echo, UDPLB_REASON_NOT_UDP),
        Case::untouched(
            "redirect (type 5) about a balanced datagram",
            &icmp_error(
                HOST4,
                &c4,
                (5, 1),
                0,
                &dgram(C4, &format!("{HOST4}:9876")),
                44,
            ),
            UDPLB_REASON_NOT_UDP,
        ),
        Case::untouched(
            "quoting a backend's datagram to the client",
            &icmp_error(HOST4, &c4, PORT_UNREACH4, 0, &reply_quote, 44),
            UDPLB_REASON_NOT_UDP,
        ),
        Case::untouched(
            "packet too big for a frontend, in IPv4 clothes (port unreachable)",
            &icmp_error(
                ROUTER4,
                "198.18.100.3",
                PORT_UNREACH4,
                0,
                &dgram("198.18.100.3:7000", C4),
                44,
            ),
            UDPLB_REASON_NOT_UDP,
        ),
    ];
    fx.check_all(&cases);
}

/// Every truncation of an ICMP error: of the ICMP header, of the quote (the
/// IP length saying so), and of the frame (the IP length saying more).
#[test]
fn every_truncation_of_an_icmp_error() {
    let fx = fixture();
    let mut cases = Vec::new();
    let q4 = dgram(C4, &format!("{HOST4}:9876"));
    let e4 = dgram(C4, &format!("{HOST4}:9875"));
    let q4opt = udp(C4, &format!("{HOST4}:9876"))
        .ihl(7)
        .payload(b"0123456789abcdef")
        .build();
    let e4opt = udp(C4, &format!("{HOST4}:9875"))
        .ihl(7)
        .payload(b"0123456789abcdef")
        .build();
    let q6 = dgram(C6, &format!("[{HOST6}]:9876"));
    let e6 = dgram(C6, &format!("[{HOST6}]:9875"));
    for (what, src, kind, q, e, need) in [
        ("IPv4", HOST4, PORT_UNREACH4, &q4, &e4, 28),
        (
            "IPv4 with quoted options",
            HOST4,
            PORT_UNREACH4,
            &q4opt,
            &e4opt,
            36,
        ),
        ("IPv6", HOST6, PORT_UNREACH6, &q6, &e6, 48),
    ] {
        let client = addr(if q.ipv6 { C6 } else { C4 });
        let full = icmp_error(src, &client, kind, 0, q, whole(q));
        // The ICMP header cut short.
        for k in 0..8 {
            let m = full[full.len() - (8 + whole(q))..].to_vec();
            let f = icmp_message(src, &client, m, Some(k));
            cases.push(Case::untouched(
                format!("{what}: ICMP header of {k} bytes"),
                &f,
                UDPLB_REASON_MALFORMED,
            ));
        }
        // The quote cut short.
        for n in 0..=whole(q) {
            let name = format!("{what}: quote of {n} bytes");
            if n < need {
                let f = icmp_error(src, &client, kind, 0, q, n);
                cases.push(Case::untouched(name, &f, UDPLB_REASON_MALFORMED));
            } else {
                cases.push(to_client(
                    &name,
                    Prog::Xdp,
                    (src, src),
                    kind,
                    q,
                    e,
                    n,
                    Some(PassiveHit::IcmpError(0, 0)),
                ));
            }
        }
        // The frame cut short of what its IP header says.
        for len in 14..full.len() {
            cases.push(Case::untouched(
                format!("{what}: frame cut at {len}"),
                &full[..len],
                UDPLB_REASON_MALFORMED,
            ));
        }
        // The same in egress (where the kernel refuses frames too short
        // for an IP header, the runner accepts that).
        for n in (0..need).step_by(3) {
            let f = icmp_error(src, &client, kind, 0, q, n);
            cases.push(Case::egress_untouched(
                format!("{what}: egress, quote of {n} bytes"),
                f,
            ));
        }
        for len in (14..full.len()).step_by(7) {
            cases.push(Case::egress_untouched(
                format!("{what}: egress, frame cut at {len}"),
                full[..len].to_vec(),
            ));
        }
    }
    fx.check_all(&cases);
}

/// The fast path is untouched: a balanced request still counts as before
/// around all this.
#[test]
fn requests_and_replies_still_balance() {
    let fx = fixture();
    let req = dgram(C4, &format!("{HOST4}:9875"));
    let rep = dgram(&format!("{HOST4}:9876"), C4);
    fx.check_all(&[
        Case::balanced("request", &req, 9876, (0, 0)),
        Case {
            passive: None,
            ..Case::reply("reply counts a reply seen", &rep, 9875, 0)
        },
    ]);
    let c = fx.counters();
    assert_eq!(c.passive[0][0].replies, 1);
}
