//! The test kit's references on their own: the reference checksum
//! (tests/support/checksum.rs) against RFC 1071's example, and the
//! reference model of the datapath (tests/support/model/): the checksum arithmetic it rests on, its parse order, its frontend
//! and reply rules and its round robin. Pure logic: needs no privileges.

use udplb_testkit as support;

use std::net::{Ipv4Addr, Ipv6Addr};

use support::checksum;
use support::model::{reason, run, ModelConfig, ModelState};
use support::packets::udp;
use udplb::config::Config;

/// Ethernet + IPv4 (IHL 5) + UDP with a correct checksum.
fn v4(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, payload: &[u8]) -> Vec<u8> {
    let (s, d) = (Ipv4Addr::from(src), Ipv4Addr::from(dst));
    udp(&format!("{s}:{sport}"), &format!("{d}:{dport}"))
        .payload(payload)
        .frame()
}

/// Ethernet + IPv6 + UDP with a correct checksum.
fn v6(src: Ipv6Addr, sport: u16, dst: Ipv6Addr, dport: u16, payload: &[u8]) -> Vec<u8> {
    udp(&format!("[{src}]:{sport}"), &format!("[{dst}]:{dport}"))
        .payload(payload)
        .frame()
}

fn config(specs: &[&str]) -> ModelConfig {
    ModelConfig::from_config(&Config::from_specs(specs).unwrap())
}

const C4: [u8; 4] = [192, 0, 2, 10];
const H4: [u8; 4] = [192, 0, 2, 1];
const VIP4: [u8; 4] = [198, 18, 0, 1];

#[test]
fn rfc1071_example_and_rfc1624_update() {
    // RFC 1071 section 3: 0001 f203 f4f5 f6f7 sums to ddf2.
    assert_eq!(
        checksum::sum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
        0xddf2
    );
    assert_eq!(checksum::sum(&[0x01]), 0x0100, "odd byte is the high half");
    // RFC 1624 section 4: HC 0xDD2F, m 0x5555 -> m' 0x3285 gives 0x0000.
    assert_eq!(checksum::update(0xdd2f, 0x5555, 0x3285), 0x0000);
    // A by-hand UDP checksum (rfc1071_helper below).
    let f = v4(C4, 40000, H4, 53, b"hi");
    assert_eq!(u16::from_be_bytes([f[40], f[41]]), 0x76ef);
}

#[test]
fn incremental_update_equals_recomputation() {
    // Whatever the payload, the rewritten datagram's checksum is the one
    // computed from scratch, in both families and both directions.
    let cfg = config(&["53=5353", "9875=9876,9877"]);
    for v in (0..=u16::MAX).step_by(7) {
        let p = v.to_be_bytes();
        for (frame, ipv6) in [
            (v4(C4, 40000, H4, 53, &p), false),
            (v4(H4, 9877, C4, 40000, &p), false),
            (
                v6(
                    Ipv6Addr::LOCALHOST,
                    40000,
                    "2001:db8::1".parse().unwrap(),
                    53,
                    &p,
                ),
                true,
            ),
        ] {
            let o = run(&frame, &cfg, &mut ModelState::default(), true);
            assert!(matches!(o.reason, reason::BALANCED | reason::REPLY));
            let (addrs, udp) = if ipv6 {
                (&o.output[22..54], &o.output[54..])
            } else {
                (&o.output[26..34], &o.output[34..])
            };
            assert!(checksum::verifies(addrs, udp, ipv6), "payload {v:#06x}");
        }
    }
}

#[test]
fn ipv4_checksum_zero_stays_zero_ipv6_does_not() {
    let cfg = config(&["53=5353"]);
    let mut f = v4(C4, 40000, H4, 53, b"x");
    f[40..42].copy_from_slice(&[0, 0]);
    let o = run(&f, &cfg, &mut ModelState::default(), true);
    assert_eq!(o.reason, reason::BALANCED);
    assert_eq!(&o.output[40..42], &[0, 0]);
    let mut g = v6(Ipv6Addr::LOCALHOST, 1, Ipv6Addr::LOCALHOST, 53, b"x");
    g[60..62].copy_from_slice(&[0, 0]);
    let o = run(&g, &cfg, &mut ModelState::default(), true);
    assert_ne!(&o.output[60..62], &[0, 0]);
}

#[test]
fn round_robin_in_order_shared_by_families() {
    let cfg = config(&["9875=9876,9877,9878"]);
    let mut st = ModelState::default();
    let six = v6(Ipv6Addr::LOCALHOST, 1, Ipv6Addr::LOCALHOST, 9875, b"");
    let four = v4(C4, 1, H4, 9875, b"");
    let got: Vec<_> = [&four, &six, &four, &six]
        .iter()
        .map(|f| run(f, &cfg, &mut st, false).backend)
        .collect();
    assert_eq!(
        got,
        [Some((0, 0)), Some((0, 1)), Some((0, 2)), Some((0, 0))]
    );
}

#[test]
fn exact_frontends_and_replies() {
    let cfg = config(&["53=5353", "198.18.0.1:53=5454"]);
    let mut st = ModelState::default();
    assert_eq!(
        run(&v4(C4, 1, VIP4, 53, b""), &cfg, &mut st, false).backend,
        Some((1, 0))
    );
    assert_eq!(
        run(&v4(C4, 1, H4, 53, b""), &cfg, &mut st, false).backend,
        Some((0, 0))
    );
    // Exact frontend's backend replies from its address, on lo: its
    // sockets' replies reach XDP there only. Elsewhere that source (this
    // host's own address) is forged.
    let from_vip = v4(VIP4, 5454, C4, 1, b"");
    assert_eq!(run(&from_vip, &cfg, &mut st, true).reply, Some(1));
    let o = run(&from_vip, &cfg, &mut st, false);
    assert_eq!((o.reason, o.reply), (reason::SPOOFED_REPLY, None));
    // Port-only frontend's backend: only on lo.
    let r = v4(H4, 5353, C4, 1, b"");
    assert_eq!(run(&r, &cfg, &mut st, false).reason, reason::NO_FRONTEND);
    assert_eq!(run(&r, &cfg, &mut st, true).reply, Some(0));
    // The unspecified source address is an address, not "any": on a
    // wire-facing interface it is matched by port alone, i.e. not at all.
    let z = v4([0; 4], 5353, C4, 1, b"");
    assert_eq!(run(&z, &cfg, &mut st, false).reason, reason::NO_FRONTEND);
    assert_eq!(
        run(&v4(H4, 5454, C4, 1, b""), &cfg, &mut st, true).reply,
        None
    );
}

#[test]
fn parse_order() {
    let cfg = config(&["53=5353"]);
    let st = &mut ModelState::default();
    let good = v4(C4, 1, H4, 53, &[0; 10]);
    let r = |f: &[u8], st: &mut ModelState| run(f, &cfg, st, true).reason;
    for len in 0..good.len() {
        assert_eq!(r(&good[..len], st), reason::MALFORMED, "cut to {len}");
    }
    // Protocol before fragment offset; tot_len before protocol.
    let mut tcp_frag = good.clone();
    tcp_frag[23] = 6;
    tcp_frag[20] = 0x20;
    tcp_frag[21] = 1;
    assert_eq!(r(&tcp_frag, st), reason::NOT_UDP);
    tcp_frag[17] = 200;
    assert_eq!(r(&tcp_frag, st), reason::MALFORMED);
    // First fragment: udp.len beyond the packet is fine, < 8 is not.
    let mut first = good.clone();
    first[20] = 0x20;
    first[38..40].copy_from_slice(&1000u16.to_be_bytes());
    assert_eq!(r(&first, st), reason::BALANCED);
    first[38..40].copy_from_slice(&7u16.to_be_bytes());
    assert_eq!(r(&first, st), reason::MALFORMED);
    // Three tags: not IP, even truncated right after the third TPID.
    let mut tagged = good[..12].to_vec();
    for _ in 0..3 {
        tagged.extend_from_slice(&[0x81, 0x00, 0, 1]);
    }
    tagged.extend_from_slice(&good[12..]);
    assert_eq!(r(&tagged, st), reason::NOT_IP);
    assert_eq!(r(&tagged[..21], st), reason::MALFORMED);
    assert_eq!(r(&tagged[..22], st), reason::NOT_IP);
    // IPv6: payload_len before extension headers, those before UDP.
    let mut six = v6(Ipv6Addr::LOCALHOST, 1, Ipv6Addr::LOCALHOST, 53, b"");
    six[20] = 0;
    assert_eq!(r(&six, st), reason::IPV6_EXT);
    six[20] = 59;
    assert_eq!(r(&six, st), reason::NOT_UDP);
    six[19] = 9;
    assert_eq!(r(&six, st), reason::MALFORMED);
}

/// The checksum helper the expectations rest on, against RFC 1071's own
/// example and a hand-computed UDP checksum. Needs no privileges.
#[test]
fn rfc1071_helper() {
    // RFC 1071 section 3: 0001 f203 f4f5 f6f7 sums to ddf2.
    assert_eq!(
        checksum::sum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
        0xddf2
    );
    assert_eq!(checksum::sum(&[0xff, 0xff, 0x00, 0x01]), 0x0001);
    assert_eq!(checksum::sum(&[0x01]), 0x0100, "odd byte is the high half");
    // 192.0.2.10:40000 -> 192.0.2.1:53, payload "hi", by hand:
    // c000+020a+c000+0201+0011+000a (pseudo) + 9c40+0035+000a (header)
    // + 6869 (payload) = 0x2890e -> 0x8910, checksum !0x8910 = 0x76ef.
    let f = udp("192.0.2.10:40000", "192.0.2.1:53")
        .payload(b"hi")
        .build();
    assert_eq!(
        checksum::udp_checksum_computed(&f.bytes, f.l3, f.l4.unwrap(), false),
        0x76ef
    );
    assert_eq!(f.udp_check(), 0x76ef, "etherparse agrees");
}
