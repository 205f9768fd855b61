//! TC egress fixtures, everything that is not a reply: unrelated ports,
//! requests, other protocols, IPv6 extension headers, fragments, too many
//! VLAN tags, malformed headers and every truncation of a reply leave the
//! reply program (`udplb_egress`) byte for byte as they came, and no
//! counter moves. Test kit runner (tests/support/runner.rs).
//!
//! Expected outputs are computed from scratch and independently of the
//! datapath: the input is rebuilt with the new source port and its UDP
//! checksum recomputed over the whole rewritten datagram with the RFC 768
//! pseudo-header (the kit's RFC 1071 code, cross-checked against
//! etherparse), never with an incremental update.
//!
//! Needs root (loading BPF programs): run `sudo make test`. Without root the
//! tests fail, they never skip.

use udplb_testkit as support;

use support::configs::egress::*;
use support::packets::{
    ethernet, icmp_like_port, ip_frame, patched, tcp_frame, ETH_P_ARP, ETH_P_IP, ETH_P_IPV6,
    IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_UDP, IP_MF, TPID_8021AD, TPID_8021Q,
};
use support::runner::{Case, Fixture};

#[test]
fn everything_else_is_untouched() {
    let fx = Fixture::new(SPECS);
    let hbh = {
        // IPv6 Hop-by-Hop (PadN) then UDP from 9876.
        let dg = udp(&v6(H6, 9876), C6).datagram();
        let mut ext = vec![IPPROTO_UDP, 0, 1, 4, 0, 0, 0, 0];
        ext.extend_from_slice(&dg);
        ip_frame(&[], H6, "2001:db8::10", 0, &ext)
    };
    let three_tags = udp(&v4(H4, 9876), C4)
        .vlans(&[(TPID_8021AD, 1), (TPID_8021Q, 2), (TPID_8021Q, 3)])
        .frame();
    let cases = vec![
        Case::egress_untouched(
            "IPv4 from an unrelated port",
            udp(&v4(H4, 40001), C4).frame(),
        ),
        Case::egress_untouched(
            "IPv6 from an unrelated port",
            udp(&v6(H6, 40001), C6).frame(),
        ),
        Case::egress_untouched(
            "IPv4 from the frontend port itself",
            udp(&v4(H4, 9875), C4).frame(),
        ),
        Case::egress_untouched(
            "IPv4 request to the frontend port",
            udp(C4, &v4(H4, 9875)).frame(),
        ),
        Case::egress_untouched(
            "IPv4 to backend port 9876 (destination, not source)",
            udp(C4, &v4(H4, 9876)).frame(),
        ),
        Case::egress_untouched(
            "IPv6 to backend port 9876 (destination, not source)",
            udp(C6, &v6(H6, 9876)).frame(),
        ),
        Case::egress_untouched("TCP over IPv4 from port 9876", tcp_frame(&v4(H4, 9876), C4)),
        Case::egress_untouched("TCP over IPv6 from port 9876", tcp_frame(&v6(H6, 9876), C6)),
        Case::egress_untouched(
            "ICMP whose type/code read as port 9876",
            icmp_like_port(H4, "192.0.2.10", IPPROTO_ICMP),
        ),
        Case::egress_untouched(
            "ICMPv6 whose type/code read as port 9876",
            icmp_like_port(H6, "2001:db8::10", IPPROTO_ICMPV6),
        ),
        Case::egress_untouched("IPv6 Hop-by-Hop header, then UDP from 9876", hbh),
        // An IPv6 first fragment (Fragment header, offset 0) is rewritten:
        // tests/datapath_hooks.rs, ipv6_fragments.
        Case::egress_untouched(
            "IPv4 middle fragment (offset 1480, MF) whose data reads as UDP from 9876",
            udp(&v4(H4, 9876), C4).frag_field(185 | IP_MF).frame(),
        ),
        Case::egress_untouched(
            "IPv4 last fragment (offset 1480, MF clear) whose data reads as UDP from 9876",
            udp(&v4(H4, 9876), C4).frag_field(185).frame(),
        ),
        Case::egress_untouched("three VLAN tags (deeper than parsed)", three_tags),
        Case::egress_untouched(
            "ARP frame",
            ethernet(&[], ETH_P_ARP, &[[0x26u8, 0x94]; 14].concat()),
        ),
        Case::egress_untouched(
            "Ethernet header only, EtherType 802.1Q (tag missing)",
            ethernet(&[], TPID_8021Q, &[]),
        ),
        Case::egress_untouched(
            "802.1Q tag to IPv4, no IP header",
            ethernet(&[(TPID_8021Q, 5)], ETH_P_IP, &[]),
        ),
        Case::egress_untouched(
            "802.1Q tag to IPv6, no IP header",
            ethernet(&[(TPID_8021Q, 5)], ETH_P_IPV6, &[]),
        ),
    ];
    fx.check_all(&cases);
}

#[test]
fn malformed_headers_are_untouched() {
    let fx = Fixture::new(SPECS);
    let r4 = udp(&v4(H4, 9876), C4).frame();
    let r6 = udp(&v6(H6, 9876), C6).frame();
    let ip4_tot = (r4.len() - 14) as u16;
    let udp4_len = ip4_tot - 20;
    let ip6_plen = (r6.len() - 54) as u16;
    // Offsets: IPv4 header at 14, UDP at 34; IPv6 header at 14, UDP at 54.
    let cases = vec![
        Case::egress_untouched("IPv4 IHL 4", patched(r4.clone(), 14, &[0x44])),
        Case::egress_untouched("IPv4 IHL 0", patched(r4.clone(), 14, &[0x40])),
        Case::egress_untouched(
            "IPv4 EtherType, version 6",
            patched(r4.clone(), 14, &[0x65]),
        ),
        Case::egress_untouched(
            "IPv4 IHL 15 but no options present",
            patched(r4.clone(), 14, &[0x4f]),
        ),
        Case::egress_untouched(
            "IPv4 tot_len 19 (< IHL*4)",
            patched(r4.clone(), 16, &19u16.to_be_bytes()),
        ),
        Case::egress_untouched(
            "IPv4 tot_len beyond the frame",
            patched(r4.clone(), 16, &(ip4_tot + 1).to_be_bytes()),
        ),
        Case::egress_untouched(
            "IPv4 tot_len 27 (UDP header cut by tot_len)",
            patched(r4.clone(), 16, &27u16.to_be_bytes()),
        ),
        Case::egress_untouched(
            "IPv4 UDP length 7",
            patched(r4.clone(), 38, &7u16.to_be_bytes()),
        ),
        Case::egress_untouched(
            "IPv4 UDP length 0",
            patched(r4.clone(), 38, &0u16.to_be_bytes()),
        ),
        Case::egress_untouched(
            "IPv4 UDP length beyond tot_len",
            patched(r4.clone(), 38, &(udp4_len + 1).to_be_bytes()),
        ),
        Case::egress_untouched(
            "IPv6 EtherType, version 4",
            patched(r6.clone(), 14, &[0x40]),
        ),
        Case::egress_untouched(
            "IPv6 payload length beyond the frame",
            patched(r6.clone(), 18, &(ip6_plen + 1).to_be_bytes()),
        ),
        Case::egress_untouched(
            "IPv6 payload length 7",
            patched(r6.clone(), 18, &7u16.to_be_bytes()),
        ),
        // IPv6 UDP length 0 is read as payload_len, as Linux does:
        // tests/datapath_hooks.rs, ipv6_udp_length_zero.
        Case::egress_untouched(
            "IPv6 UDP length 7",
            patched(r6.clone(), 58, &7u16.to_be_bytes()),
        ),
        Case::egress_untouched(
            "IPv6 UDP length beyond the payload length",
            patched(r6.clone(), 58, &(ip6_plen + 1).to_be_bytes()),
        ),
    ];
    fx.check_all(&cases);
}

#[test]
fn truncated_replies_are_untouched() {
    let fx = Fixture::new(SPECS);
    let mut cases = Vec::new();
    for (family, dgram) in [
        ("IPv4", udp(&v4(H4, 9876), C4)),
        ("IPv6", udp(&v6(H6, 9876), C6)),
        (
            "IPv4 802.1ad+802.1Q IHL 6",
            udp(&v4(H4, 9876), C4)
                .vlans(&[(TPID_8021AD, 1), (TPID_8021Q, 2)])
                .ipv4_options(&[1, 1, 1, 0]),
        ),
        (
            "IPv4 802.1Q",
            udp(&v4(H4, 9876), C4).vlans(&[(TPID_8021Q, 2)]),
        ),
        (
            "IPv6 802.1Q",
            udp(&v6(H6, 9876), C6).vlans(&[(TPID_8021Q, 2)]),
        ),
        (
            "IPv4 IHL 15",
            udp(&v4(H4, 9876), C4).ipv4_options(&[[1u8; 39].as_slice(), &[0]].concat()),
        ),
    ] {
        let full = dgram.frame();
        // BPF_PROG_TEST_RUN for TC needs at least the 14 Ethernet bytes.
        for len in 14..full.len() {
            cases.push(Case::egress_untouched(
                format!("{family} reply truncated to {len} of {} bytes", full.len()),
                full[..len].to_vec(),
            ));
        }
        // The whole frame is a valid reply: it is what the truncations cut.
        cases.push(Case::egress_reply(
            format!("{family} reply, untruncated ({} bytes)", full.len()),
            &dgram,
            9875,
            RR,
        ));
    }
    assert!(cases.len() > 200);
    fx.check_all(&cases);
}
