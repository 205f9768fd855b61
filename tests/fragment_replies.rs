//! A remote backend's fragmented reply (bpf/frags.h) through
//! BPF_PROG_TEST_RUN, in the private topology of tests/support/forwarding.rs.
//! A backend host whose kernel learnt a lower path MTU to a client (a
//! packet too big udplb sent on to it) fragments its larger replies; udplb
//! translates them whole, so they reach the client from the frontend and
//! reassemble there:
//! - the first fragment is a reply: its source address and port become the
//!   frontend's, its UDP checksum still right for the whole datagram, and it
//!   is sent to the client;
//! - the later fragments of that datagram (same backend, client and IP
//!   identification) get the frontend's source address (and the IPv4
//!   header checksum), nothing else, and are sent too;
//! - a later fragment of another datagram, or one ahead of its first
//!   fragment, passes untouched (`fragment`), as before;
//! - from the client side, a first fragment with a backend's source, or a
//!   later fragment of a known datagram, is dropped (`spoofed_reply`), as a
//!   forged reply is, and teaches nothing.
//!
//! Expected frames are built from scratch: the whole datagram from the
//! frontend (UDP checksum over all of it), cut like the input, one hop
//! applied (TTL / hop limit, MACs, IPv4 header checksum).

use udplb_testkit as support;

use support::forwarding::*;
use support::packets::{udp, Frame};
use support::runner::{assert_reasons, Case, Hit, Prog, XDP_REDIRECT};
use udplb::abi::{UDPLB_REASON_FRAGMENT, UDPLB_REASON_REPLY_FORWARDED, UDPLB_REASON_SPOOFED_REPLY};

/// 200 bytes of payload: one fragment of 64 bytes of IP payload, and the
/// rest.
fn data() -> Vec<u8> {
    (0..200u8).collect()
}

/// A translated fragment: rewritten as `output`, sent to the client.
fn sent(name: &str, input: &[u8], output: Vec<u8>, fe: usize, on: u32) -> Case {
    Case {
        name: name.to_string(),
        prog: Prog::Xdp,
        input: input.to_vec(),
        ingress_ifindex: Some(on),
        verdict: XDP_REDIRECT,
        output,
        reason: Some(UDPLB_REASON_REPLY_FORWARDED),
        hit: Hit::Reply(fe),
        passive: None,
    }
}

/// `f` with its source address set to `addr`'s and one hop applied:
/// what becomes of a later fragment.
fn from_frontend(f: &Frame, addr: &str) -> Vec<u8> {
    let mut out = f.bytes.clone();
    let (at, a) = match sock(addr).ip() {
        std::net::IpAddr::V4(a) => (f.l3 + 12, a.octets().to_vec()),
        std::net::IpAddr::V6(a) => (f.l3 + 8, a.octets().to_vec()),
    };
    out[at..at + a.len()].copy_from_slice(&a);
    hop(&mut out, f.l3, f.ipv6, TO_CLIENT);
    out
}

/// `f` as another datagram's fragment: another IP identification.
fn other_datagram(f: &Frame) -> Vec<u8> {
    let mut out = f.bytes.clone();
    let at = if f.ipv6 { f.l3 + 40 + 4 } else { f.l3 + 4 };
    out[at] ^= 0x5a;
    if !f.ipv6 {
        support::checksum::refresh_ipv4_header(&mut out, f.l3);
    }
    out
}

#[test]
fn a_remote_backends_fragmented_reply_leaves_from_the_frontend() {
    let (fx, net) = fixture();
    let (spoofed, frag) = (UDPLB_REASON_SPOOFED_REPLY, UDPLB_REASON_FRAGMENT);
    let d = data();
    // IPv4 (DF clear, as a fragmenting sender leaves it).
    let whole_in = udp(B4B, C4).payload(&d).frag_field(0).build();
    let whole_out = udp(FE4B, C4).payload(&d).frag_field(0).build();
    let first4 = Frame::first_fragment_of(&whole_in.bytes, whole_in.l3, 64);
    let mut first4_out = Frame::first_fragment_of(&whole_out.bytes, whole_out.l3, 64);
    hop(&mut first4_out, whole_out.l3, false, TO_CLIENT);
    let later4 = whole_in.clone().ipv4_frag(false, 8);
    // IPv6: the first 48 bytes of the datagram, then the rest.
    let first6 = udp(B6B, C6).payload(&d).frag6(0, true).keep_l4(48).build();
    let mut first6_out = udp(FE6B, C6)
        .payload(&d)
        .frag6(0, true)
        .keep_l4(48)
        .build()
        .bytes;
    hop(&mut first6_out, first6.l3, true, TO_CLIENT);
    let later6 = udp(B6B, C6).payload(&d).frag6(6, false).build();

    let mut cases = Vec::new();
    for (v, first, first_out, later, fe, frontend) in [
        ("IPv4", &first4, &first4_out, &later4, ONE4, FE4B),
        ("IPv6", &first6.bytes, &first6_out, &later6, ONE6, FE6B),
    ] {
        let n = |s: &str| format!("{v}: {s}");
        cases.extend([
            net.untouched(
                &n("a later fragment ahead of its first"),
                &later.bytes,
                frag,
            )
            .on(net.bk1),
            Case::dropped(n("a first fragment from the client side"), first, spoofed)
                .on(net.ingress),
            net.untouched(&n("... which taught nothing"), &later.bytes, frag)
                .on(net.bk1),
            sent(
                &n("the first fragment"),
                first,
                first_out.clone(),
                fe,
                net.bk1,
            ),
            sent(
                &n("the later fragment"),
                &later.bytes,
                from_frontend(later, frontend),
                fe,
                net.bk1,
            ),
            sent(
                &n("the later fragment again (a retransmission)"),
                &later.bytes,
                from_frontend(later, frontend),
                fe,
                net.bk1,
            ),
            net.untouched(
                &n("another datagram's later fragment"),
                &other_datagram(later),
                frag,
            )
            .on(net.bk1),
            Case::dropped(
                n("the later fragment from the client side"),
                &later.bytes,
                spoofed,
            )
            .on(net.ingress),
        ]);
    }
    fx.check_all(&cases);
    assert_reasons(
        &fx,
        &[(UDPLB_REASON_REPLY_FORWARDED, 6), (frag, 6), (spoofed, 4)],
    );
}
