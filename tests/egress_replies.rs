//! TC egress fixtures, replies: the reply program (`udplb_egress`) rewrites
//! the source port of replies back to their frontend's, in every
//! encapsulation, with the UDP checksum right (including a computed zero),
//! exact keys before wildcard keys. Each case runs once through
//! BPF_PROG_TEST_RUN with the test kit's runner (tests/support/runner.rs):
//! input, expected verdict, expected output bytes, expected counter deltas.
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

use support::checksum::udp_checksum_computed;
use support::configs::egress::*;
use support::packets::{Csum, Udp, IP_MF, TPID_8021AD, TPID_8021Q};
use support::runner::{Case, Fixture};

/// `base` with a payload chosen so that (`on_output`) the datagram with its
/// source port rewritten to `to` has a computed checksum of zero (sent as
/// 0xFFFF), or (`!on_output`) the input itself has a computed zero.
fn find_zero_checksum(base: &Udp, to: u16, on_output: bool) -> Udp {
    for x in 0..=u16::MAX {
        let mut payload = b"zero checksum ".to_vec();
        payload.extend_from_slice(&x.to_be_bytes());
        let cand = base.clone().payload(&payload);
        let probe = if on_output {
            cand.with_sport(to)
        } else {
            cand.clone()
        };
        let f = probe.build();
        if udp_checksum_computed(&f.bytes, f.l3, f.l4(), f.ipv6) == 0 {
            assert_eq!(
                probe.checksum(),
                0xffff,
                "a computed zero is sent as 0xFFFF"
            );
            return cand;
        }
    }
    panic!("no payload gives a computed UDP checksum of zero");
}

#[test]
fn replies_are_rewritten_to_the_frontend_port() {
    let fx = Fixture::new(SPECS);
    let q = (TPID_8021Q, 100);
    let ad = (TPID_8021AD, 200);
    let nops4 = [1, 1, 1, 0]; // NOP NOP NOP EOL: IHL 6
    let mut opts40 = vec![1u8; 39]; // 39 NOPs and EOL: IHL 15
    opts40.push(0);

    let r4 = udp(&v4(H4, 9876), C4);
    let r6 = udp(&v6(H6, 9876), C6);
    let cases = vec![
        Case::egress_reply("IPv4 reply from 9876", &r4, 9875, RR),
        Case::egress_reply(
            "IPv4 reply from the second backend 9877",
            &udp(&v4(H4, 9877), C4),
            9875,
            RR,
        ),
        Case::egress_reply("IPv6 reply from 9876", &r6, 9875, RR),
        Case::egress_reply(
            "IPv6 reply from the second backend 9877",
            &udp(&v6(H6, 9877), C6),
            9875,
            RR,
        ),
        Case::egress_reply(
            "IPv4 checksum 0 (none) stays 0",
            &r4.clone().csum(Csum::Fixed(0)),
            9875,
            RR,
        ),
        Case::egress_reply(
            "IPv4 options, IHL 6",
            &r4.clone().ipv4_options(&nops4),
            9875,
            RR,
        ),
        Case::egress_reply(
            "IPv4 options, IHL 15",
            &r4.clone().ipv4_options(&opts40),
            9875,
            RR,
        ),
        Case::egress_reply(
            "IPv4 options IHL 15, checksum 0",
            &r4.clone().ipv4_options(&opts40).csum(Csum::Fixed(0)),
            9875,
            RR,
        ),
        Case::egress_reply("IPv4, one 802.1Q tag", &r4.clone().vlans(&[q]), 9875, RR),
        Case::egress_reply(
            "IPv4, 802.1ad + 802.1Q tags",
            &r4.clone().vlans(&[ad, q]),
            9875,
            RR,
        ),
        Case::egress_reply(
            "IPv4, 802.1ad + 802.1Q tags and IHL 15 (deepest UDP header)",
            &r4.clone().vlans(&[ad, q]).ipv4_options(&opts40),
            9875,
            RR,
        ),
        Case::egress_reply("IPv6, one 802.1Q tag", &r6.clone().vlans(&[q]), 9875, RR),
        Case::egress_reply(
            "IPv6, 802.1ad + 802.1Q tags",
            &r6.clone().vlans(&[ad, q]),
            9875,
            RR,
        ),
        Case::egress_reply(
            "IPv4, two 802.1Q tags",
            &r4.clone().vlans(&[q, q]),
            9875,
            RR,
        ),
        Case::egress_reply("IPv4, empty payload", &r4.clone().payload(b""), 9875, RR),
        Case::egress_reply("IPv6, empty payload", &r6.clone().payload(b""), 9875, RR),
        Case::egress_reply(
            "IPv4, odd-length payload",
            &r4.clone().payload(b"odd"),
            9875,
            RR,
        ),
        Case::egress_reply(
            "IPv4, 1400-byte payload",
            &r4.clone().payload(&[0xa5; 1400]),
            9875,
            RR,
        ),
        Case::egress_reply(
            "IPv6, 1400-byte payload",
            &r6.clone().payload(&[0x5a; 1400]),
            9875,
            RR,
        ),
        Case::egress_reply(
            "IPv4 minimum frame, Ethernet padding after the IP packet",
            &r4.clone().payload(b"x").eth_trailer(&[0; 17]),
            9875,
            RR,
        ),
        Case::egress_reply(
            "IPv6, trailing bytes after the IP packet",
            &r6.clone().eth_trailer(&[0xee; 6]),
            9875,
            RR,
        ),
        Case::egress_reply(
            "IPv4, UDP length shorter than the IP payload",
            &r4.clone().ip_trailer(b"beyond udp.len"),
            9875,
            RR,
        ),
        Case::egress_reply(
            "IPv6, UDP length shorter than the IP payload",
            &r6.clone().ip_trailer(b"beyond udp.len"),
            9875,
            RR,
        ),
        Case::egress_reply(
            "IPv4 first fragment (MF, offset 0): checksum covers the whole datagram",
            &r4.clone()
                .payload(&[0x3c; 64])
                .frag_field(IP_MF)
                .keep_l4(8 + 16),
            9875,
            RR,
        ),
        Case::egress_reply("IPv4 with DF set", &r4.clone().frag_field(0x4000), 9875, RR),
    ];
    fx.check_all(&cases);
}

#[test]
fn computed_zero_checksum_is_sent_as_ffff() {
    let fx = Fixture::new(SPECS);
    let q = (TPID_8021Q, 7);
    let z4 = find_zero_checksum(&udp(&v4(H4, 9876), C4), 9875, true);
    let z6 = find_zero_checksum(&udp(&v6(H6, 9876), C6), 9875, true);
    let z4x = find_zero_checksum(&udp(&v4("198.18.0.1", 5353), C4), 53, true);
    assert_eq!(z4.with_sport(9875).checksum(), 0xffff);
    assert_eq!(z6.with_sport(9875).checksum(), 0xffff);
    assert_eq!(z4x.with_sport(53).checksum(), 0xffff);
    // And the other way: the input's checksum is a computed zero (0xFFFF).
    let i4 = find_zero_checksum(&udp(&v4(H4, 9877), C4), 9875, false);
    let i6 = find_zero_checksum(&udp(&v6(H6, 9877), C6), 9875, false);
    assert_eq!(i4.checksum(), 0xffff);
    assert_eq!(i6.checksum(), 0xffff);
    let cases = vec![
        Case::egress_reply("IPv4, rewritten checksum computes to 0", &z4, 9875, RR),
        Case::egress_reply("IPv6, rewritten checksum computes to 0", &z6, 9875, RR),
        Case::egress_reply(
            "IPv4 802.1Q, rewritten checksum computes to 0",
            &z4.clone().vlans(&[q]),
            9875,
            RR,
        ),
        Case::egress_reply(
            "IPv4 exact frontend, rewritten checksum computes to 0",
            &z4x,
            53,
            DNS_V4,
        ),
        Case::egress_reply("IPv4, input checksum is 0xFFFF", &i4, 9875, RR),
        Case::egress_reply("IPv6, input checksum is 0xFFFF", &i6, 9875, RR),
    ];
    fx.check_all(&cases);
}

#[test]
fn exact_keys_before_wildcard_keys() {
    let fx = Fixture::new(SPECS);
    let cases = vec![
        Case::egress_reply(
            "IPv4 from the exact frontend address, backend port 5353",
            &udp(&v4("198.18.0.1", 5353), C4),
            53,
            DNS_V4,
        ),
        Case::egress_untouched(
            "IPv4 from another address, port 5353 (exact-only backend)",
            udp(&v4("198.18.0.9", 5353), C4).frame(),
        ),
        Case::egress_untouched(
            "IPv4 from this host's other address, port 5353",
            udp(&v4(H4, 5353), C4).frame(),
        ),
        Case::egress_untouched(
            "IPv6 from port 5353 (an IPv4-only backend)",
            udp(&v6("2001:2::1", 5353), C6).frame(),
        ),
        Case::egress_untouched(
            "IPv6 from ::ffff:198.18.0.1, port 5353",
            udp(&v6("::ffff:198.18.0.1", 5353), C6).frame(),
        ),
        Case::egress_reply(
            "IPv6 from the exact frontend address, backend port 6363",
            &udp(&v6("2001:2::1", 6363), C6),
            53,
            DNS_V6,
        ),
        Case::egress_untouched(
            "IPv6 from another address, port 6363 (exact-only backend)",
            udp(&v6("2001:2::9", 6363), C6).frame(),
        ),
        Case::egress_untouched(
            "IPv4 from 198.18.0.1, port 6363 (an IPv6-only backend)",
            udp(&v4("198.18.0.1", 6363), C4).frame(),
        ),
        Case::egress_reply(
            "IPv4 from the exact frontend address, wildcard backend 9876",
            &udp(&v4("198.18.0.1", 9876), C4),
            9875,
            RR,
        ),
        Case::egress_reply(
            "IPv6 from the exact frontend address, wildcard backend 9877",
            &udp(&v6("2001:2::1", 9877), C6),
            9875,
            RR,
        ),
        Case::egress_reply(
            "IPv4 from any address, wildcard backend 9876",
            &udp(&v4("203.0.113.77", 9876), "198.51.100.1:9"),
            9875,
            RR,
        ),
        Case::egress_reply(
            "IPv6 from any address, wildcard backend 9876",
            &udp(&v6("fe80::1", 9876), "[ff02::1]:9"),
            9875,
            RR,
        ),
        Case::egress_reply(
            "IPv4 exact frontend reply behind 802.1ad + 802.1Q",
            &udp(&v4("198.18.0.1", 5353), C4).vlans(&[(TPID_8021AD, 1), (TPID_8021Q, 2)]),
            53,
            DNS_V4,
        ),
        Case::egress_reply(
            "IPv6 exact frontend reply, checksum recomputed",
            &udp(&v6("2001:2::1", 6363), C6).payload(&[0xff; 33]),
            53,
            DNS_V6,
        ),
    ];
    fx.check_all(&cases);
}

#[test]
fn family_specific_wildcards() {
    // 0.0.0.0:PORT and [::]:PORT are wildcards of one family only.
    let fx = Fixture::new(&["0.0.0.0:7000=7001", "[::]:7100=7101"]);
    let cases = vec![
        Case::egress_reply(
            "IPv4 from 7001 (IPv4 wildcard backend)",
            &udp(&v4(H4, 7001), C4),
            7000,
            0,
        ),
        Case::egress_untouched(
            "IPv6 from 7001 (IPv4-only wildcard backend)",
            udp(&v6(H6, 7001), C6).frame(),
        ),
        Case::egress_reply(
            "IPv6 from 7101 (IPv6 wildcard backend)",
            &udp(&v6(H6, 7101), C6),
            7100,
            1,
        ),
        Case::egress_untouched(
            "IPv4 from 7101 (IPv6-only wildcard backend)",
            udp(&v4(H4, 7101), C4).frame(),
        ),
    ];
    fx.check_all(&cases);
}
