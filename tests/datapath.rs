//! Datapath fixtures: the XDP program run through BPF_PROG_TEST_RUN on
//! packets built here, each case with an expected verdict, expected output
//! bytes and expected counter deltas (see datapath_support/fixture.rs).
//!
//! Expected outputs are computed from scratch: the input with one port
//! changed and the UDP checksum recomputed over the whole datagram (RFC 1071
//! here, cross-checked against etherparse), never with the datapath's own
//! incremental update. Needs root: run `sudo make test`.

mod datapath_support;

use datapath_support::fixture::{private_netns_with_veth, Case, Fixture, Hit, LOOPBACK};
use datapath_support::packets::{
    arp, ethertype, non_udp, ones_complement_sum, udp, udp6_behind_ext, udp_checksum_computed,
    Frame, Port, Transport, TPID_8021AD, TPID_8021Q,
};
use udplb::abi::{
    Counter, REASON_COUNT, UDPLB_REASON_BALANCED, UDPLB_REASON_FRAGMENT, UDPLB_REASON_IPV6_EXT,
    UDPLB_REASON_MALFORMED, UDPLB_REASON_NOT_IP, UDPLB_REASON_NOT_UDP, UDPLB_REASON_NO_FRONTEND,
};

/// The configuration every test loads. Frontend indices (config order):
const SPECS: &[&str] = &[
    "9875=9876,9877,9878", // RR: port-only, both families, three backends
    "53=5353",             // DNS: port-only
    "198.18.0.1:53=5454",  // DNS_V4: exact IPv4, beats DNS for that address
    "[2001:2::1]:53=6363", // DNS_V6: exact IPv6, beats DNS for that address
];
const RR: usize = 0;
const DNS: usize = 1;
const DNS_V4: usize = 2;
const DNS_V6: usize = 3;

/// Clients, and addresses of this host that no frontend names exactly.
const C4: &str = "192.0.2.10:40000";
const C6: &str = "[2001:db8::10]:40000";
fn h4(port: u16) -> String {
    format!("192.0.2.1:{port}")
}
fn h6(port: u16) -> String {
    format!("[2001:db8::1]:{port}")
}
/// The addresses of the exact frontends.
fn vip4(port: u16) -> String {
    format!("198.18.0.1:{port}")
}
fn vip6(port: u16) -> String {
    format!("[2001:2::1]:{port}")
}

fn frame_len(frames: &[&Frame]) -> u64 {
    frames.iter().map(|f| f.len() as u64).sum()
}

/// Only the given reasons have counted, this many times each.
fn assert_reasons(fx: &Fixture, expected: &[(u32, u64)]) {
    let mut want = [0u64; REASON_COUNT];
    for &(r, n) in expected {
        want[r as usize] = n;
    }
    assert_eq!(fx.counters().reasons, want, "reason counters");
}

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
        // The destination is looked up first: a source port that is a
        // backend does not make a request a reply.
        Case::balanced(
            "request from a backend port to a frontend",
            &udp(&h4(9876), &h4(53)).build(),
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
        reason: UDPLB_REASON_BALANCED,
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

#[test]
fn replies_are_translated_back_to_the_frontend_port() {
    let fx = Fixture::new(SPECS);
    let veth = private_netns_with_veth();
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
        // Exact frontends' replies are keyed on the frontend's address and
        // match on any interface.
        Case::reply(
            "IPv4 reply from 198.18.0.1:5454, on a veth",
            &from_dns_v4,
            53,
            DNS_V4,
        )
        .on(veth),
        Case::reply("same on lo", &from_dns_v4, 53, DNS_V4).on(LOOPBACK),
        Case::reply(
            "IPv6 reply from [2001:2::1]:6363, on a veth",
            &from_dns_v6,
            53,
            DNS_V6,
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

#[test]
fn every_parse_branch_leaves_the_frame_untouched() {
    let fx = Fixture::new(SPECS);
    let v4 = || udp(C4, &h4(53)).payload(&[0x11; 18]).build(); // tot_len 46
    let v6 = || udp(C6, &h6(53)).payload(&[0x22; 18]).build(); // payload_len 26
    let (not_ip, not_udp, ext, frag, nf, bad) = (
        UDPLB_REASON_NOT_IP,
        UDPLB_REASON_NOT_UDP,
        UDPLB_REASON_IPV6_EXT,
        UDPLB_REASON_FRAGMENT,
        UDPLB_REASON_NO_FRONTEND,
        UDPLB_REASON_MALFORMED,
    );
    let mut t: Vec<(String, Frame, u32)> = vec![
        // Link layer.
        ("ARP".into(), arp(&[]), not_ip),
        ("ARP in 802.1Q".into(), arp(&[TPID_8021Q]), not_ip),
        (
            "ARP in QinQ".into(),
            arp(&[TPID_8021AD, TPID_8021Q]),
            not_ip,
        ),
        (
            "unknown EtherType 0x88B5".into(),
            ethertype(&[], 0x88b5),
            not_ip,
        ),
        ("802.3 length field".into(), ethertype(&[], 0x002e), not_ip),
        (
            "TPID 0x9100 is not parsed".into(),
            ethertype(&[0x9100], 0x0800),
            not_ip,
        ),
        (
            "three tags (802.1ad, 802.1Q, 802.1Q), UDP to a frontend".into(),
            udp(C4, &h4(53))
                .tags(&[TPID_8021AD, TPID_8021Q, TPID_8021Q])
                .build(),
            not_ip,
        ),
        (
            "three 802.1Q tags, IPv6 UDP to a frontend".into(),
            udp(C6, &h6(53)).tags(&[TPID_8021Q; 3]).build(),
            not_ip,
        ),
        // Not UDP.
        (
            "IPv4 TCP to port 53".into(),
            non_udp(C4, &h4(53), Transport::Tcp),
            not_udp,
        ),
        (
            "IPv4 ICMP".into(),
            non_udp(C4, &h4(53), Transport::Icmp),
            not_udp,
        ),
        (
            "IPv6 TCP to port 53".into(),
            non_udp(C6, &h6(53), Transport::Tcp),
            not_udp,
        ),
        (
            "ICMPv6".into(),
            non_udp(C6, &h6(53), Transport::Icmp),
            not_udp,
        ),
        (
            "IPv6 No Next Header (59)".into(),
            v6().ipv6_next_header(59),
            not_udp,
        ),
        // Fragments: only the first carries the UDP header.
        (
            "IPv4 middle fragment".into(),
            v4().ipv4_frag(true, 185),
            frag,
        ),
        (
            "IPv4 last fragment".into(),
            v4().ipv4_frag(false, 185),
            frag,
        ),
        (
            "IPv4 fragment at the largest offset".into(),
            v4().ipv4_frag(false, 0x1fff),
            frag,
        ),
        (
            "IPv4 fragment whose data looks like UDP to 9875".into(),
            udp(C4, &h4(9875)).build().ipv4_frag(false, 1),
            frag,
        ),
        // Spec order: protocol is checked before the fragment offset.
        (
            "IPv4 TCP non-first fragment".into(),
            non_udp(C4, &h4(53), Transport::Tcp).ipv4_frag(true, 8),
            not_udp,
        ),
        // No frontend.
        (
            "IPv4 UDP to unconfigured port".into(),
            udp(C4, &h4(5000)).build(),
            nf,
        ),
        (
            "IPv6 UDP to unconfigured port".into(),
            udp(C6, &h6(5000)).build(),
            nf,
        ),
        (
            "IPv4 to a backend port from a client".into(),
            udp(C4, &h4(9876)).build(),
            nf,
        ),
        (
            "IPv4 to 198.18.0.1, unconfigured port".into(),
            udp(C4, &vip4(9999)).build(),
            nf,
        ),
        (
            "IPv6 to [2001:2::1]:5454".into(),
            udp(C6, &vip6(5454)).build(),
            nf,
        ),
        // Malformed IPv4.
        ("IPv4 header with version 6".into(), v4().ip_version(6), bad),
        ("IPv4 header with version 0".into(), v4().ip_version(0), bad),
        ("tot_len 19 < 20".into(), v4().ipv4_tot_len(19), bad),
        ("tot_len 0".into(), v4().ipv4_tot_len(0), bad),
        (
            "tot_len 20 < IHL 6 * 4".into(),
            udp(C4, &h4(53)).ihl(6).build().ipv4_tot_len(20),
            bad,
        ),
        ("tot_len past the frame".into(), v4().ipv4_tot_len(47), bad),
        // The frame holds a full UDP header, but tot_len does not.
        (
            "tot_len 24: UDP header outside tot_len".into(),
            v4().ipv4_tot_len(24),
            bad,
        ),
        // Only a first fragment gets past the udp.len bound to show it.
        (
            "IPv4 first fragment, tot_len 24: UDP header outside tot_len".into(),
            v4().ipv4_frag(true, 0).ipv4_tot_len(24),
            bad,
        ),
        ("IPv4 udp.len 0".into(), v4().udp_len(0), bad),
        ("IPv4 udp.len 7".into(), v4().udp_len(7), bad),
        (
            "IPv4 udp.len past the IP payload".into(),
            v4().udp_len(27),
            bad,
        ),
        (
            "IPv4 first fragment, udp.len 7".into(),
            v4().ipv4_frag(true, 0).udp_len(7),
            bad,
        ),
        // Spec order: consistency before protocol and fragment checks.
        (
            "IPv4 TCP with tot_len past the frame".into(),
            non_udp(C4, &h4(53), Transport::Tcp).ipv4_tot_len(1500),
            bad,
        ),
        (
            "IPv4 TCP with tot_len 19 < 20".into(),
            non_udp(C4, &h4(53), Transport::Tcp).ipv4_tot_len(19),
            bad,
        ),
        (
            "IPv4 non-first fragment with tot_len 19 < 20".into(),
            v4().ipv4_frag(true, 8).ipv4_tot_len(19),
            bad,
        ),
        (
            "IPv4 non-first fragment with IHL 4".into(),
            v4().ipv4_frag(true, 8).ipv4_ihl_field(4),
            bad,
        ),
        // Malformed IPv6.
        ("IPv6 header with version 4".into(), v6().ip_version(4), bad),
        ("IPv6 header with version 0".into(), v6().ip_version(0), bad),
        (
            "IPv6 payload_len past the frame".into(),
            v6().ipv6_payload_len(27),
            bad,
        ),
        (
            "IPv6 payload_len 4 < UDP header".into(),
            v6().ipv6_payload_len(4),
            bad,
        ),
        // udp.len 0 is read as payload_len, as Linux does: balanced
        // (tests/datapath_hooks.rs, ipv6_udp_length_zero).
        ("IPv6 udp.len 7".into(), v6().udp_len(7), bad),
        (
            "IPv6 udp.len past payload_len".into(),
            v6().udp_len(27),
            bad,
        ),
        // Spec order: payload_len is checked before extension headers.
        (
            "IPv6 hop-by-hop with payload_len past the frame".into(),
            {
                let f = udp6_behind_ext(C6, &h6(53), 0);
                let plen = f.len() - f.l3 - 40 + 1;
                f.ipv6_payload_len(plen as u16)
            },
            bad,
        ),
    ];
    for ihl in 0..5 {
        t.push((format!("IPv4 IHL {ihl} < 5"), v4().ipv4_ihl_field(ihl), bad));
    }
    // Extension headers: the datagram behind is UDP to a frontend, and
    // must still be left to the stack.
    for (nh, what) in [
        (0, "hop-by-hop"),
        (43, "routing"),
        // 44 (Fragment) is parsed: tests/datapath_hooks.rs.
        (60, "destination options"),
        (51, "AH"),
        (50, "ESP"),
        (135, "mobility"),
        (139, "HIP"),
        (140, "shim6"),
        (253, "experimental 253"),
        (254, "experimental 254"),
    ] {
        t.push((
            format!("IPv6 {what} ({nh}) then UDP to 53"),
            udp6_behind_ext(C6, &h6(53), nh),
            ext,
        ));
    }

    let cases: Vec<Case> = t
        .iter()
        .map(|(name, f, reason)| Case::untouched(name.clone(), &f.bytes, *reason))
        .collect();
    fx.check_all(&cases);
    let mut want = [0u64; REASON_COUNT];
    for c in &cases {
        want[c.reason as usize] += 1;
    }
    assert_eq!(fx.counters().reasons, want, "reason counters");
    assert!(fx
        .counters()
        .backends
        .iter()
        .flatten()
        .all(|c| *c == Counter::default()));
}

#[test]
fn every_truncation_is_malformed_and_untouched() {
    let fx = Fixture::new(SPECS);
    let frames = [
        ("IPv4", udp(C4, &h4(53)).build()),
        ("IPv6", udp(C6, &h6(53)).build()),
        (
            "802.1Q + IPv4 IHL 15",
            udp(C4, &h4(53)).tags(&[TPID_8021Q]).ihl(15).build(),
        ),
        (
            "QinQ + IPv6",
            udp(C6, &h6(53)).tags(&[TPID_8021AD, TPID_8021Q]).build(),
        ),
    ];
    let mut cases = Vec::new();
    for (name, f) in &frames {
        // test_run refuses frames shorter than an Ethernet header.
        for len in 14..f.len() {
            cases.push(Case::untouched(
                format!("{name} cut to {len} of {} bytes", f.len()),
                &f.truncated(len),
                UDPLB_REASON_MALFORMED,
            ));
        }
        // And whole, it is balanced: the cut was the only fault.
        cases.push(Case::balanced(format!("{name} whole"), f, 5353, (DNS, 0)));
    }
    let truncated = cases.len() - frames.len();
    fx.check_all(&cases);
    assert_reasons(
        &fx,
        &[
            (UDPLB_REASON_MALFORMED, truncated as u64),
            (UDPLB_REASON_BALANCED, frames.len() as u64),
        ],
    );
    let whole: Vec<&Frame> = frames.iter().map(|(_, f)| f).collect();
    assert_eq!(
        fx.counters().backends[DNS][0],
        Counter {
            packets: frames.len() as u64,
            bytes: frame_len(&whole)
        }
    );
}

/// The checksum helper the expectations rest on, against RFC 1071's own
/// example and a hand-computed UDP checksum. Needs no privileges.
#[test]
fn rfc1071_helper() {
    // RFC 1071 section 3: 0001 f203 f4f5 f6f7 sums to ddf2.
    assert_eq!(
        ones_complement_sum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
        0xddf2
    );
    assert_eq!(ones_complement_sum(&[0xff, 0xff, 0x00, 0x01]), 0x0001);
    assert_eq!(
        ones_complement_sum(&[0x01]),
        0x0100,
        "odd byte is the high half"
    );
    // 192.0.2.10:40000 -> 192.0.2.1:53, payload "hi", by hand:
    // c000+020a+c000+0201+0011+000a (pseudo) + 9c40+0035+000a (header)
    // + 6869 (payload) = 0x2890e -> 0x8910, checksum !0x8910 = 0x76ef.
    let f = udp(C4, &h4(53)).payload(b"hi").build();
    assert_eq!(
        udp_checksum_computed(&f.bytes, f.l3, f.l4.unwrap(), false),
        0x76ef
    );
    assert_eq!(f.udp_check(), 0x76ef, "etherparse agrees");
}
