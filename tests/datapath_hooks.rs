//! Datapath fixtures for the rewrite shared by the XDP program (`udplb_xdp`)
//! and the TC egress program (`udplb_egress`): IPv6 first and later
//! fragments, replies whose frontend has an address leaving through egress,
//! IPv6 UDP length 0, and which counters a refused fragment moves.
//!
//! Each case is a row: a description, the hook it runs on, an input frame,
//! the expected verdict, the expected output bytes and the expected counter
//! changes. Expected outputs are built from scratch as the frame the client
//! (or backend) must receive, with every checksum recomputed over the whole
//! datagram by the kit's packet builder (tests/support/packets.rs: etherparse,
//! cross-checked against the reference checksum of tests/support/checksum.rs);
//! never by an incremental update. The rows run through the kit's runner
//! (tests/support/runner.rs).
//!
//! Needs root (loading BPF programs): the tests fail without it, they never
//! skip.

use udplb_testkit as support;

use support::packets::{patched, udp, Udp, IP_MF};
use support::runner::{Case, Fixture, Hit, Prog};

use udplb::abi::{
    UDPLB_REASON_BALANCED, UDPLB_REASON_FRAGMENT, UDPLB_REASON_IPV6_EXT, UDPLB_REASON_REPLY,
    UDPLB_REASON_SPOOFED_REPLY,
};

/// One backend per frontend, so no case depends on a round-robin position.
const SPECS: &[&str] = &[
    "9875=9876",                       // LOCAL: a port on this host
    "198.18.0.1:53=198.18.0.2:5353",   // ADDR4: a backend with an address
    "[2001:2::1]:53=[2001:2::2]:5353", // ADDR6
];
const LOCAL: usize = 0;
const ADDR4: usize = 1;
const ADDR6: usize = 2;

const C4: &str = "192.0.2.10:40000";
const C6: &str = "[2001:db8::10]:40000";
const H6: &str = "2001:db8::1";

/// A 72-byte datagram (64 bytes of payload) from `src` to `dst`: fragment
/// data comes in 8n bytes, so its first fragments keep 32 or 48 bytes.
fn dgram(src: &str, dst: &str) -> Udp {
    udp(src, dst).payload(&(0..64u8).collect::<Vec<u8>>())
}

fn h6(port: u16) -> String {
    format!("[{H6}]:{port}")
}

fn fixture() -> Fixture {
    Fixture::new(SPECS)
}

// ---------------------------------------------------------------------------
// The cases.

/// Hardening item 4: a local backend's IPv6 reply larger than the MTU leaves
/// in fragments; the first (Fragment header, offset 0) holds the UDP header
/// and must leave from the frontend port. Later fragments pass untouched.
#[test]
fn ipv6_fragments() {
    let fx = fixture();
    let reply = dgram(&h6(9876), C6);
    // The first 8 + 40 bytes of a 72-byte datagram (fragment data is 8n).
    let first = reply.clone().frag6(0, true).keep_l4(48);
    // A later fragment whose data happens to read as UDP from 9876.
    let later = reply.clone().frag6(6, true).frame();
    let last = reply.clone().frag6(6, false).frame();
    let request = dgram(C6, &h6(9875));
    let req_first = request.clone().frag6(0, true).keep_l4(48);
    let remote_req = dgram(C6, "[2001:2::1]:53").frag6(0, true).keep_l4(48);
    let remote_reply = dgram("[2001:2::2]:5353", C6).frag6(0, true).keep_l4(48);
    let cases = vec![
        Case::rebuilt(
            "TC: IPv6 first fragment of a local backend's reply",
            Prog::Egress,
            &first,
            &first.with_src(&h6(9875)),
        )
        .hits(Hit::Reply(LOCAL)),
        Case::rebuilt(
            "TC: IPv6 atomic fragment (offset 0, M clear)",
            Prog::Egress,
            &reply.clone().frag6(0, false),
            &reply.with_src(&h6(9875)).frag6(0, false),
        )
        .hits(Hit::Reply(LOCAL)),
        Case::egress_untouched("TC: IPv6 later fragment (M set)", later.clone()),
        Case::egress_untouched("TC: IPv6 last fragment", last.clone()),
        Case::rebuilt(
            "XDP: IPv6 first fragment of a local backend's reply, on lo",
            Prog::Xdp,
            &first,
            &first.with_src(&h6(9875)),
        )
        .counted(UDPLB_REASON_REPLY)
        .hits(Hit::Reply(LOCAL)),
        Case::rebuilt(
            "XDP: IPv6 first fragment of a request to a local backend",
            Prog::Xdp,
            &req_first,
            &req_first.with_dst(&h6(9876)),
        )
        .counted(UDPLB_REASON_BALANCED)
        .hits(Hit::Backend(LOCAL, 0)),
        Case::untouched("XDP: IPv6 later fragment", &later, UDPLB_REASON_FRAGMENT),
        Case::untouched("XDP: IPv6 last fragment", &last, UDPLB_REASON_FRAGMENT),
        Case::untouched(
            "XDP: IPv6 first fragment of a request to a remote backend",
            &remote_req.frame(),
            UDPLB_REASON_FRAGMENT,
        ),
        // A reply like any other (bpf/frags.h): arriving on lo, where the
        // route to its backend does not lead, it is forged. From the
        // backend's side: tests/fragment_replies.rs.
        Case::dropped(
            "XDP: IPv6 first fragment of a remote backend's reply, on lo",
            &remote_reply.frame(),
            UDPLB_REASON_SPOOFED_REPLY,
        ),
    ];
    fx.check_all(&cases);
}

/// Only the Fragment header is parsed: a Fragment header in front of
/// another extension header, or another extension header first, still goes
/// to the kernel as IPV6_EXT.
#[test]
fn other_extension_headers_stay_ipv6_ext() {
    let fx = fixture();
    let frag = dgram(C6, &h6(9875)).frag6(0, true).build();
    // The Fragment header's next header: Destination Options.
    let behind_frag = patched(frag.bytes, frag.l3 + 40, &[60]);
    // Hop-by-Hop where UDP was (its bytes read as UDP).
    let hbh = dgram(C6, &h6(9875)).build().ipv6_next_header(0).bytes;
    fx.check_all(&[
        Case::untouched(
            "Fragment header, then Destination Options",
            &behind_frag,
            UDPLB_REASON_IPV6_EXT,
        ),
        Case::untouched("Hop-by-Hop header first", &hbh, UDPLB_REASON_IPV6_EXT),
    ]);
}

/// Hardening item 6: a reply from a backend that has an address (one of
/// this host's own, sending from a local socket) leaves through egress with
/// the frontend's address and port, both checksums right.
#[test]
fn egress_rewrites_the_frontend_address() {
    let fx = fixture();
    let r4 = dgram("198.18.0.2:5353", C4);
    let r6 = dgram("[2001:2::2]:5353", C6);
    let no_csum = r4.clone().csum(support::packets::Csum::Fixed(0));
    let cases = vec![
        Case::rebuilt(
            "TC: IPv4 reply from 198.18.0.2:5353",
            Prog::Egress,
            &r4,
            &r4.with_src("198.18.0.1:53"),
        )
        .hits(Hit::Reply(ADDR4)),
        Case::rebuilt(
            "TC: IPv4 reply with checksum 0 (none): stays 0",
            Prog::Egress,
            &no_csum,
            &no_csum.with_src("198.18.0.1:53"),
        )
        .hits(Hit::Reply(ADDR4)),
        Case::rebuilt(
            "TC: IPv6 reply from [2001:2::2]:5353",
            Prog::Egress,
            &r6,
            &r6.with_src("[2001:2::1]:53"),
        )
        .hits(Hit::Reply(ADDR6)),
        Case::rebuilt(
            "TC: IPv4 first fragment of a local backend's reply (port only)",
            Prog::Egress,
            &dgram("192.0.2.1:9876", C4).frag_field(IP_MF).keep_l4(32),
            &dgram("192.0.2.1:9875", C4).frag_field(IP_MF).keep_l4(32),
        )
        .hits(Hit::Reply(LOCAL)),
        // The later fragments would keep the old source address: the client
        // could not reassemble a first fragment with a new one.
        Case::egress_untouched(
            "TC: IPv4 first fragment of a reply whose address would change",
            r4.clone().frag_field(IP_MF).keep_l4(32).frame(),
        ),
        Case::egress_untouched(
            "TC: IPv6 first fragment of a reply whose address would change",
            r6.clone().frag6(0, true).keep_l4(48).frame(),
        ),
    ];
    fx.check_all(&cases);
}

/// Hardening item 9a: a fragment refused on the remote path moves one
/// reason (FRAGMENT for a request's, SPOOFED_REPLY for a reply's from the
/// wrong side) and no backend or reply counter.
#[test]
fn refused_fragments_count_no_packet() {
    let fx = fixture();
    let cases = vec![
        // A reply like any other (bpf/frags.h), refused as one: on lo,
        // where the route to its backend does not lead.
        Case::dropped(
            "XDP: IPv4 first fragment of a remote backend's reply, on lo",
            &dgram("198.18.0.2:5353", C4)
                .frag_field(IP_MF)
                .keep_l4(32)
                .frame(),
            UDPLB_REASON_SPOOFED_REPLY,
        ),
        Case::untouched(
            "XDP: IPv4 first fragment of a request to a remote backend",
            &dgram(C4, "198.18.0.1:53")
                .frag_field(IP_MF)
                .keep_l4(32)
                .frame(),
            UDPLB_REASON_FRAGMENT,
        ),
    ];
    fx.check_all(&cases);
}

/// Hardening item 14: Linux reads an IPv6 UDP length of 0 as "the rest of
/// the payload" (the jumbogram form); so does udplb.
#[test]
fn ipv6_udp_length_zero() {
    let fx = fixture();
    let req = dgram(C6, &h6(9875)).udp_len_zero();
    let reply = dgram(&h6(9876), C6).udp_len_zero();
    let cases = vec![
        Case::rebuilt(
            "XDP: request to a local backend",
            Prog::Xdp,
            &req,
            &req.with_dst(&h6(9876)),
        )
        .counted(UDPLB_REASON_BALANCED)
        .hits(Hit::Backend(LOCAL, 0)),
        Case::rebuilt(
            "XDP: local backend's reply on lo",
            Prog::Xdp,
            &reply,
            &reply.with_src(&h6(9875)),
        )
        .counted(UDPLB_REASON_REPLY)
        .hits(Hit::Reply(LOCAL)),
        Case::rebuilt(
            "TC: local backend's reply",
            Prog::Egress,
            &reply,
            &reply.with_src(&h6(9875)),
        )
        .hits(Hit::Reply(LOCAL)),
        Case::rebuilt(
            "TC: reply whose address changes",
            Prog::Egress,
            &dgram("[2001:2::2]:5353", C6).udp_len_zero(),
            &dgram("[2001:2::1]:53", C6).udp_len_zero(),
        )
        .hits(Hit::Reply(ADDR6)),
    ];
    fx.check_all(&cases);
}
