//! Remote backends in the XDP datapath (bpf/forward.h), the UDP checksum
//! through the rewrite: valid, none (IPv4 0), corrupt, partial (a sender
//! with checksum offload) and a computed zero, redirected and passed.
//!
//! Each test moves its thread into a private network namespace holding the
//! topology of tests/support/forwarding.rs (bpf_fib_lookup runs in the
//! caller's namespace). Expected outputs are computed from scratch there;
//! the kit's runner compares them byte for byte. Needs root: run
//! `sudo make test`.

use udplb_testkit as support;

use support::checksum::udp_checksum_computed;
use support::forwarding::*;
use support::packets::{udp, Port};
use udplb::abi::{UDPLB_REASON_FIB_NO_NEIGH, UDPLB_REASON_TTL_EXPIRED};

#[test]
fn udp_checksums_through_the_rewrite() {
    let (fx, net) = fixture();
    let (c, p) = (Csum::Corrupt, Csum::Partial);
    let base4 = udp(C4, FE4B).build();
    let base6 = udp(C6, FE6B).build();
    let reply4 = udp(B4B, C4).build();
    let dst = Port::Destination;
    let zero4 = zero_after(C4, FE4B, dst, B4B);
    let zero6 = zero_after(C6, FE6B, dst, B6B);
    let zero_reply = zero_after(B4B, C4, Port::Source, FE4B);
    // 0xFFFF on input is a checksum (a computed 0), not "none".
    let ffff_in = search("IPv4 checksum computing to 0 before", C4, FE4B, |f| {
        udp_checksum_computed(&f.bytes, f.l3, l4(f), false) == 0
    });
    assert_eq!(ffff_in.udp_check(), 0xffff);
    let looks_partial = search(
        "a full checksum equal to its pseudo-header sum",
        C4,
        FE4B,
        |f| f.udp_check() == partial_value(&f.bytes, f),
    );
    let padded = partial(&udp(C4, FE4B).payload(b"x").build()).pad_to(60);
    let options = partial(&udp(C4, FE4B).ihl(15).payload(&[0x5c; 77]).build());
    let te = UDPLB_REASON_TTL_EXPIRED;

    // Redirected: the backend's host gets a finished checksum.
    let mut sent = vec![
        net.req("IPv4 checksum 0 (none) stays 0", &field(&base4, 0), O4, B4B)
            .csum(Csum::None)
            .sent(TO_SRV1),
        net.req("IPv4 valid stays valid", &base4, O4, B4B)
            .sent(TO_SRV1),
        net.req(
            "IPv4 corrupt stays corrupt by as much",
            &corrupt(&base4),
            O4,
            B4B,
        )
        .csum(c)
        .sent(TO_SRV1),
        net.req("IPv6 valid stays valid", &base6, O6, B6B)
            .sent(TO_SRV1),
        net.req(
            "IPv6 corrupt stays corrupt by as much",
            &corrupt(&base6),
            O6,
            B6B,
        )
        .csum(c)
        .sent(TO_SRV1),
        // IPv6 has no "none": 0 is damage like any other value.
        net.req("IPv6 checksum 0 stays wrong", &field(&base6, 0), O6, B6B)
            .csum(c)
            .sent(TO_SRV1),
        net.req("IPv4 partial is completed", &partial(&base4), O4, B4B)
            .csum(p)
            .sent(TO_SRV1),
        net.req("IPv6 partial is completed", &partial(&base6), O6, B6B)
            .csum(p)
            .sent(TO_SRV1),
        net.req("IPv4 computing to 0 -> 0xFFFF", &zero4, O4, B4B)
            .sent(TO_SRV1),
        net.req("IPv6 computing to 0 -> 0xFFFF", &zero6, O6, B6B)
            .sent(TO_SRV1),
        net.req(
            "IPv4 partial completed to 0 -> 0xFFFF",
            &partial(&zero4),
            O4,
            B4B,
        )
        .csum(p)
        .sent(TO_SRV1),
        net.req(
            "IPv6 partial completed to 0 -> 0xFFFF",
            &partial(&zero6),
            O6,
            B6B,
        )
        .csum(p)
        .sent(TO_SRV1),
        net.req("IPv4 input 0xFFFF is updated", &ffff_in, O4, B4B)
            .sent(TO_SRV1),
        net.req(
            "IPv4 full checksum equal to its pseudo-header sum",
            &looks_partial,
            O4,
            B4B,
        )
        .csum(Csum::ValidLooksPartial)
        .sent(TO_SRV1),
        net.req(
            "IPv4 partial, 1 byte, Ethernet padding not summed",
            &padded,
            O4,
            B4B,
        )
        .csum(p)
        .sent(TO_SRV1),
        net.req(
            "IPv4 partial behind 40 bytes of options (IHL 15)",
            &options,
            O4,
            B4B,
        )
        .csum(p)
        .sent(TO_SRV1),
        net.rep(
            "reply: IPv4 partial is completed",
            &partial(&reply4),
            ONE4,
            FE4B,
        )
        .csum(p)
        .sent(TO_CLIENT),
        net.rep(
            "reply: IPv4 corrupt stays corrupt",
            &corrupt(&reply4),
            ONE4,
            FE4B,
        )
        .csum(c)
        .sent(TO_CLIENT),
        net.rep("reply: IPv4 none stays 0", &field(&reply4, 0), ONE4, FE4B)
            .csum(Csum::None)
            .sent(TO_CLIENT),
        net.rep(
            "reply: IPv6 partial is completed",
            &partial(&udp(B6B, C6).build()),
            ONE6,
            FE6B,
        )
        .csum(p)
        .sent(TO_CLIENT),
        net.rep("reply: computing to 0 -> 0xFFFF", &zero_reply, ONE4, FE4B)
            .sent(TO_CLIENT),
        // The lookup succeeds and the checksum is completed, then the TTL
        // expires: the kernel gets the partial value of the new addresses.
        net.req("IPv4 partial, TTL 1", &partial(&ttl(&base4, 1)), O4, B4B)
            .csum(p)
            .passed(te),
        net.req(
            "IPv6 partial, hop limit 1",
            &partial(&ttl(&base6, 1)),
            O6,
            B6B,
        )
        .csum(p)
        .passed(te),
    ];
    // Completion over every tail length and across the 4-, 64- and
    // 512-byte steps of the sum, up to a 1500-byte IP packet.
    let lengths = (0..=9).chain([63, 64, 65, 511, 512, 513, 1027]);
    for n in lengths.clone().chain([1472]) {
        let f = partial(&udp(C4, FE4B).payload(&vec![0xa5; n]).build());
        let name = format!("IPv4 partial, {n}-byte payload");
        sent.push(net.req(&name, &f, O4, B4B).csum(p).sent(TO_SRV1));
    }
    for n in lengths.chain([1452]) {
        let f = partial(&udp(C6, FE6B).payload(&vec![0x5a; n]).build());
        let name = format!("IPv6 partial, {n}-byte payload");
        sent.push(net.req(&name, &f, O6, B6B).csum(p).sent(TO_SRV1));
    }
    fx.check_all(&sent);

    // Passed (srv1 has no neighbour entry any more): the kernel finishes a
    // partial checksum, so it gets the new pseudo-header sum; the rest as
    // above.
    forget_srv1();
    let nn = UDPLB_REASON_FIB_NO_NEIGH;
    let big = partial(&udp(C4, FE4B).payload(&[1; 1472]).build());
    fx.check_all(&[
        net.req("passed: IPv4 none stays 0", &field(&base4, 0), O4, B4B)
            .csum(Csum::None)
            .passed(nn),
        net.req("passed: IPv4 valid stays valid", &base4, O4, B4B)
            .passed(nn),
        net.req(
            "passed: IPv4 corrupt stays corrupt",
            &corrupt(&base4),
            O4,
            B4B,
        )
        .csum(c)
        .passed(nn),
        net.req("passed: IPv6 valid stays valid", &base6, O6, B6B)
            .passed(nn),
        net.req(
            "passed: IPv6 corrupt stays corrupt",
            &corrupt(&base6),
            O6,
            B6B,
        )
        .csum(c)
        .passed(nn),
        net.req(
            "passed: IPv4 partial -> new pseudo-header sum",
            &partial(&base4),
            O4,
            B4B,
        )
        .csum(p)
        .passed(nn),
        net.req(
            "passed: IPv6 partial -> new pseudo-header sum",
            &partial(&base6),
            O6,
            B6B,
        )
        .csum(p)
        .passed(nn),
        net.req("passed: IPv4 partial, 1500-byte packet", &big, O4, B4B)
            .csum(p)
            .passed(nn),
        net.req("passed: IPv4 computing to 0 -> 0xFFFF", &zero4, O4, B4B)
            .passed(nn),
        net.req("passed: IPv6 computing to 0 -> 0xFFFF", &zero6, O6, B6B)
            .passed(nn),
    ]);
}
