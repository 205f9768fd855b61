//! XDP datapath fixtures, balancing: requests spread over backends (round
//! robin, every encapsulation), replies translated back to the frontend,
//! and the UDP checksum edge cases of the rewrite. The XDP program runs
//! through BPF_PROG_TEST_RUN on packets built by the test kit, each case
//! with an expected verdict, expected output bytes and expected counter
//! deltas (tests/support/runner.rs).
//!
//! Expected outputs are computed from scratch: the input with one port
//! changed and the UDP checksum recomputed over the whole datagram (the
//! kit's RFC 1071 code, cross-checked against etherparse), never with the
//! datapath's own incremental update. Needs root: run `sudo make test`.

use udplb_testkit as support;

use support::checksum::udp_checksum_computed;
use support::configs::xdp::*;
use support::netns::private_netns_with_veth;
use support::packets::{udp, Frame, Port, TPID_8021AD, TPID_8021Q};
use support::runner::{assert_reasons, Case, Fixture, Hit, Reloads, LOOPBACK, XDP_PASS};
use udplb::abi::{
    Counter, UDPLB_REASON_BACKEND_TO_FRONTEND, UDPLB_REASON_BALANCED, UDPLB_REASON_NO_FRONTEND,
    UDPLB_REASON_SPOOFED_REPLY,
};

#[test]
fn round_robin_over_the_port_only_frontend() {
    let fx = Fixture::new(SPECS);
    // Distinct payloads, so a mixed-up output would show.
    let v4: Vec<Frame> = (1..=4)
        .map(|i| {
            udp(C4, &h4(9875))
                .payload(format!("request {i}").as_bytes())
                .build()
        })
        .collect();
    let v6 = udp(C6, &h6(9875)).build();
    let v4_vip = udp(C4, &vip4(9875)).payload(&[0xab; 300]).build();
    let v6_vip = udp(C6, &vip6(9875)).payload(b"odd").build();

    // In order: the rotation is state, and each case expects the next slot.
    fx.check_all(&[
        Case::balanced("IPv4 #1 -> first backend", &v4[0], 9876, (RR, 0)),
        Case::balanced("IPv4 #2 -> second backend", &v4[1], 9877, (RR, 1)),
        Case::balanced("IPv4 #3 -> third backend", &v4[2], 9878, (RR, 2)),
        Case::balanced("IPv4 #4 wraps to the first", &v4[3], 9876, (RR, 0)),
        // One frontend, one cursor: both families share the rotation.
        Case::balanced("IPv6 continues the rotation", &v6, 9877, (RR, 1)),
        // No exact key for 198.18.0.1:9875: the wildcard key matches.
        Case::balanced(
            "IPv4 to an exact frontend's address, other port",
            &v4_vip,
            9878,
            (RR, 2),
        ),
        Case::balanced(
            "IPv6 to an exact frontend's address, other port",
            &v6_vip,
            9876,
            (RR, 0),
        ),
    ]);

    let c = fx.counters();
    let counter = |frames: &[&Frame]| Counter {
        packets: frames.len() as u64,
        bytes: frame_len(frames),
    };
    assert_eq!(
        c.backends[RR],
        vec![
            counter(&[&v4[0], &v4[3], &v6_vip]),
            counter(&[&v4[1], &v6]),
            counter(&[&v4[2], &v4_vip]),
        ],
        "per-backend packets and bytes (full frame length)"
    );
    assert_eq!(c.backends[DNS], vec![Counter::default()]);
    assert_eq!(c.replies, vec![Counter::default(); SPECS.len()]);
    assert_reasons(&fx, &[(UDPLB_REASON_BALANCED, 7)]);
}

#[test]
fn requests_are_balanced_whatever_the_encapsulation() {
    let fx = Fixture::new(SPECS);
    let mut cases = vec![
        Case::balanced(
            "IPv4 to port-only 53",
            &udp(C4, &h4(53)).build(),
            5353,
            (DNS, 0),
        ),
        Case::balanced(
            "IPv4 to 198.18.0.1:53: the exact frontend beats port-only 53",
            &udp(C4, &vip4(53)).build(),
            5454,
            (DNS_V4, 0),
        ),
        Case::balanced(
            "IPv6 to port-only 53",
            &udp(C6, &h6(53)).build(),
            5353,
            (DNS, 0),
        ),
        Case::balanced(
            "IPv6 to [2001:2::1]:53: the exact frontend beats port-only 53",
            &udp(C6, &vip6(53)).build(),
            6363,
            (DNS_V6, 0),
        ),
        Case::balanced(
            "single 802.1Q tag",
            &udp(C4, &h4(53)).tags(&[TPID_8021Q]).build(),
            5353,
            (DNS, 0),
        ),
        Case::balanced(
            "802.1ad + 802.1Q (QinQ)",
            &udp(C4, &h4(53)).tags(&[TPID_8021AD, TPID_8021Q]).build(),
            5353,
            (DNS, 0),
        ),
        Case::balanced(
            "802.1Q + 802.1Q",
            &udp(C4, &h4(53)).tags(&[TPID_8021Q, TPID_8021Q]).build(),
            5353,
            (DNS, 0),
        ),
        Case::balanced(
            "IPv6 in 802.1ad + 802.1Q",
            &udp(C6, &vip6(53)).tags(&[TPID_8021AD, TPID_8021Q]).build(),
            6363,
            (DNS_V6, 0),
        ),
        Case::balanced(
            "QinQ and IPv4 options (IHL 15)",
            &udp(C4, &vip4(53))
                .tags(&[TPID_8021AD, TPID_8021Q])
                .ihl(15)
                .build(),
            5454,
            (DNS_V4, 0),
        ),
        Case::balanced(
            "empty UDP payload",
            &udp(C4, &h4(53)).payload(b"").build(),
            5353,
            (DNS, 0),
        ),
        Case::balanced(
            "odd-length payload (checksum pads the last byte)",
            &udp(C6, &h6(53)).payload(b"abcde").build(),
            5353,
            (DNS, 0),
        ),
        Case::balanced(
            "1400-byte payload",
            &udp(C4, &h4(53)).payload(&[0xc3; 1400]).build(),
            5353,
            (DNS, 0),
        ),
        Case::balanced(
            "IPv4 with DF set",
            &udp(C4, &h4(53)).build().ipv4_dont_fragment(),
            5353,
            (DNS, 0),
        ),
        // Ethernet padding: the frame is longer than the IP packet. Bytes
        // counted are the whole frame; the padding is left alone.
        Case::balanced(
            "IPv4 in a padded 60-byte frame",
            &udp(C4, &h4(53)).payload(b"hi").build().pad_to(60),
            5353,
            (DNS, 0),
        ),
        Case::balanced(
            "IPv6 with trailing bytes after the packet",
            &udp(C6, &h6(53)).payload(b"hi").build().pad_to(90),
            5353,
            (DNS, 0),
        ),
        // udp.len may be less than the IP payload; the checksum covers
        // udp.len bytes only.
        Case::balanced(
            "IPv4 udp.len shorter than the IP payload",
            &udp(C4, &h4(53))
                .payload(&[7; 32])
                .build()
                .udp_len(8 + 16)
                .refresh_udp_checksum(),
            5353,
            (DNS, 0),
        ),
        Case::balanced(
            "IPv6 udp.len shorter than payload_len",
            &udp(C6, &h6(53))
                .payload(&[7; 32])
                .build()
                .udp_len(8 + 5)
                .refresh_udp_checksum(),
            5353,
            (DNS, 0),
        ),
    ];
    for ihl in 6..=15 {
        let f = udp(C4, &h4(53)).ihl(ihl).build();
        cases.push(Case::balanced(
            format!("IPv4 options, IHL {ihl}"),
            &f,
            5353,
            (DNS, 0),
        ));
    }
    // A first fragment (MF set, offset 0) carries the UDP header; udp.len
    // is the whole datagram's, beyond this fragment, and that is allowed.
    // The checksum covers the whole datagram, so the expected fragment is
    // cut from the rewritten whole datagram.
    let whole = udp(C4, &h4(53)).payload(&[0x42; 40]).build();
    let first = |bytes: &[u8]| Frame::first_fragment_of(bytes, whole.l3, 24);
    cases.push(Case {
        output: first(&whole.rewritten(Port::Destination, 5353)),
        reason: Some(UDPLB_REASON_BALANCED),
        hit: Hit::Backend(DNS, 0),
        ..Case::untouched(
            "IPv4 first fragment (MF, offset 0)",
            &first(&whole.bytes),
            0,
        )
    });
    let n = cases.len() as u64;
    fx.check_all(&cases);
    assert_reasons(&fx, &[(UDPLB_REASON_BALANCED, n)]);
}

/// Finds a 2-byte payload (of 65536) for which `pred` holds on the built
/// frame; asserts there is one, since the case would otherwise test nothing.
fn search(what: &str, src: &str, dst: &str, pred: impl Fn(&Frame) -> bool) -> Frame {
    (0..=u16::MAX)
        .map(|v| udp(src, dst).payload(&v.to_be_bytes()).build())
        .find(|f| pred(f))
        .unwrap_or_else(|| panic!("no payload found: {what}"))
}

/// The checksum of `f` with one port set to `port`, as computed from
/// scratch (0 here is what goes on the wire as 0xFFFF).
fn computed_after(f: &Frame, which: Port, port: u16) -> u16 {
    let mut g = f.clone();
    let off = f.l4.unwrap() + if which == Port::Source { 0 } else { 2 };
    g.bytes[off..off + 2].copy_from_slice(&port.to_be_bytes());
    udp_checksum_computed(&g.bytes, f.l3, f.l4.unwrap(), f.ipv6)
}

#[test]
fn checksum_edge_cases() {
    let fx = Fixture::new(SPECS);
    let zero_after_v4 = search(
        "IPv4 checksum computing to 0 after ->5353",
        C4,
        &h4(53),
        |f| computed_after(f, Port::Destination, 5353) == 0,
    );
    let zero_after_v6 = search(
        "IPv6 checksum computing to 0 after ->6363",
        C6,
        &vip6(53),
        |f| computed_after(f, Port::Destination, 6363) == 0,
    );
    let zero_before_v4 = search("IPv4 checksum computing to 0 before", C4, &h4(53), |f| {
        udp_checksum_computed(&f.bytes, f.l3, f.l4.unwrap(), f.ipv6) == 0
    });
    let zero_before_v6 = search("IPv6 checksum computing to 0 before", C6, &h6(53), |f| {
        udp_checksum_computed(&f.bytes, f.l3, f.l4.unwrap(), f.ipv6) == 0
    });
    let reply_zero_after = search(
        "reply checksum computing to 0 after 5454->53",
        &vip4(5454),
        C4,
        |f| computed_after(f, Port::Source, 53) == 0,
    );
    // The searches found what they looked for: on the wire, 0xFFFF.
    assert_eq!(
        zero_after_v4.rewritten(Port::Destination, 5353)[zero_after_v4.l4.unwrap() + 6..][..2],
        [0xff, 0xff]
    );
    assert_eq!(zero_before_v4.udp_check(), 0xffff);
    assert_eq!(zero_before_v6.udp_check(), 0xffff);

    fx.check_all(&[
        // RFC 768: an IPv4 UDP checksum of 0 means "none" and stays 0.
        Case::balanced(
            "IPv4 checksum 0 (none) stays 0",
            &udp(C4, &h4(53)).build().udp_checksum_field(0),
            5353,
            (DNS, 0),
        ),
        Case::reply(
            "IPv4 reply with checksum 0 (none) stays 0",
            &udp(&vip4(5454), C4).build().udp_checksum_field(0),
            53,
            DNS_V4,
        ),
        Case::balanced(
            "IPv4: a computed 0 is written 0xFFFF",
            &zero_after_v4,
            5353,
            (DNS, 0),
        ),
        Case::balanced(
            "IPv6: a computed 0 is written 0xFFFF",
            &zero_after_v6,
            6363,
            (DNS_V6, 0),
        ),
        Case::reply(
            "reply: a computed 0 is written 0xFFFF",
            &reply_zero_after,
            53,
            DNS_V4,
        ),
        // 0xFFFF on input is a real checksum (a computed 0), not "none".
        Case::balanced(
            "IPv4 input checksum 0xFFFF is updated",
            &zero_before_v4,
            5353,
            (DNS, 0),
        ),
        Case::balanced(
            "IPv6 input checksum 0xFFFF is updated",
            &zero_before_v6,
            5353,
            (DNS, 0),
        ),
    ]);
}

/// A local backend's datagram to a frontend would loop (the backend answers
/// the balancer, whose reply path sends it back in): on lo, where local
/// backends are known by port, it is refused. On a veth the same source
/// port is a stranger's, and a request like any other. (Before: balanced on
/// lo too.)
#[test]
fn a_backend_sending_to_a_frontend_is_refused_on_lo() {
    let fx = Fixture::new(SPECS);
    let veth = private_netns_with_veth("udplb-t");
    let from_backend4 = udp(&h4(9876), &h4(53)).build();
    let from_backend6 = udp(&h6(5353), &h6(9875)).build();
    let looped = UDPLB_REASON_BACKEND_TO_FRONTEND;
    fx.check_all(&[
        Case::dropped(
            "IPv4 from backend 9876 to frontend 53, on lo",
            &from_backend4.bytes,
            looped,
        ),
        Case::dropped(
            "IPv6 from backend 5353 to frontend 9875, on lo",
            &from_backend6.bytes,
            looped,
        )
        .on(LOOPBACK),
        Case::balanced(
            "IPv4 from port 9876 to frontend 53, on a veth",
            &from_backend4,
            5353,
            (DNS, 0),
        )
        .on(veth),
    ]);
    assert_reasons(&fx, &[(looped, 2), (UDPLB_REASON_BALANCED, 1)]);
}

#[test]
fn replies_are_translated_back_to_the_frontend_port() {
    let fx = Fixture::new(SPECS);
    let veth = private_netns_with_veth("udplb-t");
    let from_rr_v4 = udp(&h4(9876), C4).build();
    let from_rr_v6 = udp(&h6(9877), C6).payload(b"reply six").build();
    let from_dns_v4 = udp(&vip4(5454), C4).build();
    let from_dns_v6 = udp(&vip6(6363), C6).build();
    let from_dns_on_vip = udp(&vip4(5353), C4).build();
    let nf = UDPLB_REASON_NO_FRONTEND;
    fx.check_all(&[
        // Port-only backends' replies are recognised only on lo: matching a
        // bare source port on a wire-facing interface would rewrite
        // strangers' datagrams.
        Case::untouched(
            "IPv4 reply from port-only backend, on a veth",
            &from_rr_v4.bytes,
            nf,
        )
        .on(veth),
        Case::reply(
            "IPv4 reply from port-only backend, on lo",
            &from_rr_v4,
            9875,
            RR,
        )
        .on(LOOPBACK),
        // Without a context the kernel runs the program on lo's rx queue,
        // so ingress_ifindex is 1, not 0; a context with 0 keeps that.
        Case::reply(
            "same, no context (the kernel's default is lo)",
            &from_rr_v4,
            9875,
            RR,
        ),
        Case::reply(
            "same, context with ingress_ifindex 0 (lo)",
            &from_rr_v4,
            9875,
            RR,
        )
        .on(0),
        Case::reply(
            "IPv4 reply from another backend of it, on lo",
            &udp(&h4(9878), C4).build(),
            9875,
            RR,
        )
        .on(LOOPBACK),
        Case::untouched(
            "IPv6 reply from port-only backend, on a veth",
            &from_rr_v6.bytes,
            nf,
        )
        .on(veth),
        Case::reply(
            "IPv6 reply from port-only backend, on lo",
            &from_rr_v6,
            9875,
            RR,
        )
        .on(LOOPBACK),
        Case::reply(
            "IPv4 reply in 802.1Q from port-only backend, on lo",
            &udp(&h4(9877), C4).tags(&[TPID_8021Q]).build(),
            9875,
            RR,
        )
        .on(LOOPBACK),
        // Exact frontends' local backends are keyed on the frontend's
        // address. Their replies come from this host's sockets: XDP sees
        // them on lo only. On a wire-facing interface that source (this
        // host's own address) is forged, and would pin flows: dropped.
        Case::dropped(
            "IPv4 'reply' from 198.18.0.1:5454, on a veth",
            &from_dns_v4.bytes,
            UDPLB_REASON_SPOOFED_REPLY,
        )
        .on(veth),
        Case::reply("same on lo", &from_dns_v4, 53, DNS_V4).on(LOOPBACK),
        Case::dropped(
            "IPv6 'reply' from [2001:2::1]:6363, on a veth",
            &from_dns_v6.bytes,
            UDPLB_REASON_SPOOFED_REPLY,
        )
        .on(veth),
        Case::reply("same on lo", &from_dns_v6, 53, DNS_V6).on(LOOPBACK),
        // An exact frontend's backend answering from another address is not
        // its reply, not even on lo (it has no port-only key).
        Case::untouched(
            "5454 from another address, on lo",
            &udp(&h4(5454), C4).build().bytes,
            nf,
        )
        .on(LOOPBACK),
        Case::untouched(
            "6363 from another address, on lo",
            &udp(&h6(6363), C6).build().bytes,
            nf,
        )
        .on(LOOPBACK),
        // A port-only frontend's backend answering from an exact frontend's
        // address: there is no exact key for it, so only lo matches.
        Case::untouched(
            "5353 from 198.18.0.1, on a veth",
            &from_dns_on_vip.bytes,
            nf,
        )
        .on(veth),
        Case::reply("5353 from 198.18.0.1, on lo", &from_dns_on_vip, 53, DNS).on(LOOPBACK),
        // Requests are balanced on any interface.
        Case::balanced(
            "IPv4 request on a veth",
            &udp(C4, &h4(53)).build(),
            5353,
            (DNS, 0),
        )
        .on(veth),
        Case::balanced(
            "IPv6 request on a veth",
            &udp(C6, &vip6(53)).build(),
            6363,
            (DNS_V6, 0),
        )
        .on(veth),
    ]);
}

/// Exact-address frontends found by their port's array entry (the port's
/// only one) or by the hash (several on one port), across reloads that move
/// a port between the two: each address reaches its own frontend, any other
/// the port-only one, and a local backend's reply goes back from its
/// frontend's port whichever way its entry is kept.
#[test]
fn exact_frontends_sharing_a_port_across_reloads() {
    use std::net::Ipv4Addr;
    let two = ["198.18.0.1:53=5353", "198.18.0.2:53=5454", "53=6464"];
    let one = ["198.18.0.2:53=5454", "53=6464"];
    let to = |last: u8| udp(C4, &format!("{}:53", Ipv4Addr::new(198, 18, 0, last))).build();
    let mut r = Reloads::new();
    for (step, specs) in [&two[..], &one[..], &two[..], &one[..]].iter().enumerate() {
        r.to(specs);
        let several = specs.len() == 3;
        let expect = [(1, if several { 5353 } else { 6464 }), (2, 5454), (3, 6464)];
        for (last, port) in expect {
            let f = to(last);
            let (verdict, out) = r.run(None, &f);
            assert_eq!(
                verdict, XDP_PASS,
                "step {step}: XDP_PASS for 198.18.0.{last}"
            );
            assert_eq!(
                out,
                f.rewritten(Port::Destination, port),
                "step {step}: 198.18.0.{last}:53 goes to {port}"
            );
        }
        // Replies: 5454's key has an address (the hash), 6464's is by port.
        for (src, port) in [("198.18.0.2:5454", 53), ("192.0.2.1:6464", 53)] {
            let f = udp(src, C4).build();
            let (_, out) = r.run(Some(LOOPBACK), &f);
            assert_eq!(
                out,
                f.rewritten(Port::Source, port),
                "step {step}: reply from {src}"
            );
        }
    }
}

/// A removed backend's reply entry lingers until it expires, and its slot
/// may go to a new backend meanwhile, on another port or on the same port
/// of another kind of frontend (an exact address, or one family only): the
/// removed backend's replies still go back from its frontend's port, and
/// the new backend's from theirs.
#[test]
fn a_lingering_reply_survives_the_reuse_of_its_slot() {
    let reply = |src: &str| udp(src, if src.starts_with('[') { C6 } else { C4 }).build();
    // The last configuration gives the removed backend's slot (0, the
    // lowest free one) to the new backend.
    type Steps<'a> = &'a [&'a [&'a str]];
    let cases: [(Steps, &[(&str, u16)]); 3] = [
        (
            &[&["9875=9876"], &["9875=9877"], &["9875=9877", "9885=9878"]],
            &[("192.0.2.1:9876", 9875), ("192.0.2.1:9878", 9885)],
        ),
        (
            &[
                &["53=5301"],
                &["53=5302"],
                &["53=5302", "198.18.0.1:54=5301"],
            ],
            &[("192.0.2.1:5301", 53), ("[2001:db8::1]:5301", 53)],
        ),
        (
            &[&["53=5301"], &["53=5302"], &["53=5302", "[::]:54=5301"]],
            &[("192.0.2.1:5301", 53), ("[2001:db8::1]:5301", 54)],
        ),
    ];
    for (steps, replies) in cases {
        let mut r = Reloads::new();
        let last = steps.iter().map(|specs| r.to(specs)).last().unwrap();
        let slots = &r.state.layout(&last).frontends[1].1;
        assert_eq!(slots, &vec![0], "{steps:?}: the new backend reuses slot 0");
        for (src, port) in replies {
            let f = reply(src);
            let (_, out) = r.run(Some(LOOPBACK), &f);
            assert_eq!(
                out,
                f.rewritten(Port::Source, *port),
                "{steps:?}: reply from {src}"
            );
        }
    }
}
