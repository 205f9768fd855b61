//! XDP datapath fixtures, parsing: every parse branch that is not a
//! balanced request or a reply, and every truncation, leaves the frame
//! untouched and counts the right reason. Runs the XDP program through
//! BPF_PROG_TEST_RUN with the test kit's runner (tests/support/runner.rs).
//! Needs root: run `sudo make test`.

use udplb_testkit as support;

use support::configs::xdp::*;
use support::packets::{
    arp, ethertype, non_udp, udp, udp6_behind_ext, Frame, Transport, TPID_8021AD, TPID_8021Q,
};
use support::runner::{assert_reasons, Case, Fixture};
use udplb::abi::{
    Counter, REASON_COUNT, UDPLB_REASON_BALANCED, UDPLB_REASON_FRAGMENT, UDPLB_REASON_IPV6_EXT,
    UDPLB_REASON_MALFORMED, UDPLB_REASON_NOT_IP, UDPLB_REASON_NOT_UDP, UDPLB_REASON_NO_FRONTEND,
};

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
        want[c.reason.expect("XDP case") as usize] += 1;
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
