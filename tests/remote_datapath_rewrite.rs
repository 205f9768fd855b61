//! Remote backends in the XDP datapath (bpf/forward.h: DNAT in XDP),
//! the rewrite: requests rewritten and redirected to their backend, replies
//! rewritten and redirected to the client (TTL / hop limit, MACs of the
//! next hop), VLAN-tagged requests and fragments left to the kernel.
//!
//! Each test moves its thread into a private network namespace holding the
//! topology of tests/support/forwarding.rs (bpf_fib_lookup runs in the
//! caller's namespace). Expected outputs are computed from scratch there;
//! the kit's runner compares them byte for byte. Needs root: run
//! `sudo make test`.

use udplb_testkit as support;

use support::forwarding::*;
use support::packets::{udp, Frame, TPID_8021AD, TPID_8021Q};
use support::runner::assert_reasons;
use udplb::abi::{
    Counter, UDPLB_REASON_BACKEND_TO_FRONTEND, UDPLB_REASON_FIB_NO_NEIGH, UDPLB_REASON_FIB_OTHER,
    UDPLB_REASON_FORWARDED, UDPLB_REASON_FRAGMENT, UDPLB_REASON_NO_FRONTEND,
    UDPLB_REASON_REPLY_FORWARDED, UDPLB_REASON_REPLY_TO_LOCAL, UDPLB_REASON_SPOOFED_REPLY,
    UDPLB_REASON_TTL_EXPIRED,
};

#[test]
fn requests_are_rewritten_and_redirected_to_the_backend() {
    let (fx, net) = fixture();
    let v4: Vec<Frame> = (1..=4)
        .map(|i| {
            udp(C4, FE4)
                .payload(format!("request {i}").as_bytes())
                .build()
        })
        .collect();
    let v6: Vec<Frame> = (1..=3)
        .map(|i| {
            udp(C6, FE6)
                .payload(format!("request six {i}").as_bytes())
                .build()
        })
        .collect();
    let options = udp(C4, FE4B).ihl(6).payload(&[0x77; 301]).build();
    let one6 = udp(C6, FE6B).payload(&[0x66; 999]).build();

    // In order: round robin alternates the two backends, each behind its
    // own device.
    fx.check_all(&[
        net.req("IPv4 #1 -> srv1 via bk1", &v4[0], (PAIR4, 0), B4[0])
            .sent(TO_SRV1),
        net.req("IPv4 #2 -> srv2 via bk2", &v4[1], (PAIR4, 1), B4[1])
            .sent(TO_SRV2),
        net.req("IPv4 #3 -> srv1", &v4[2], (PAIR4, 0), B4[0])
            .sent(TO_SRV1),
        net.req("IPv4 #4 -> srv2", &v4[3], (PAIR4, 1), B4[1])
            .sent(TO_SRV2),
        net.req("IPv6 #1 -> srv1 via bk1", &v6[0], (PAIR6, 0), B6[0])
            .sent(TO_SRV1),
        net.req("IPv6 #2 -> srv2 via bk2", &v6[1], (PAIR6, 1), B6[1])
            .sent(TO_SRV2),
        net.req("IPv6 #3 -> srv1", &v6[2], (PAIR6, 0), B6[0])
            .sent(TO_SRV1),
        net.req("IPv4 with options (IHL 6)", &options, O4, B4B)
            .sent(TO_SRV1),
        net.req("IPv6, 999 bytes of payload", &one6, O6, B6B)
            .sent(TO_SRV1),
        // The FIB lookup starts from the ingress device, whichever it is.
        net.req("IPv4 arriving on bk2", &v4[0], (PAIR4, 0), B4[0])
            .on(net.bk2)
            .sent(TO_SRV1),
        net.req("IPv6 arriving on bk1", &v6[0], (PAIR6, 1), B6[1])
            .on(net.bk1)
            .sent(TO_SRV2),
    ]);

    let c = fx.counters();
    assert_eq!(
        c.backends[PAIR4],
        vec![
            counter(&[&v4[0], &v4[2], &v4[0]]),
            counter(&[&v4[1], &v4[3]])
        ]
    );
    assert_eq!(
        c.backends[PAIR6],
        vec![counter(&[&v6[0], &v6[2]]), counter(&[&v6[1], &v6[0]])]
    );
    assert_eq!(c.backends[ONE4], vec![counter(&[&options])]);
    assert_eq!(c.backends[ONE6], vec![counter(&[&one6])]);
    assert_eq!(c.replies, vec![Counter::default(); SPECS.len()]);
    assert_reasons(&fx, &[(UDPLB_REASON_FORWARDED, 11)]);
}

#[test]
fn replies_are_rewritten_and_redirected_to_the_client() {
    let (fx, net) = fixture();
    let r4 = [
        udp(B4[0], C4).build(),
        udp(B4[1], C4).payload(b"two").build(),
    ];
    let r6 = [
        udp(B6[0], C6).build(),
        udp(B6[1], C6).payload(b"six").build(),
    ];
    let r4b = udp(B4B, C4).payload(&[0x42; 513]).build();
    let r6b = udp(B6B, C6).build();
    // A client the balancer has no neighbour entry for.
    let stranger4 = udp(B4[0], "198.18.0.9:40000").build();
    let stranger6 = udp(B6[0], "[2001:2::9]:40000").build();
    let nn = UDPLB_REASON_FIB_NO_NEIGH;
    let te = UDPLB_REASON_TTL_EXPIRED;
    let nf = UDPLB_REASON_NO_FRONTEND;

    fx.check_all(&[
        net.rep("IPv4 from srv1:5353 on bk1", &r4[0], PAIR4, FE4)
            .sent(TO_CLIENT),
        net.rep("IPv4 from srv2:5353 on bk2", &r4[1], PAIR4, FE4)
            .on(net.bk2)
            .sent(TO_CLIENT),
        net.rep("IPv4 from srv1:5454 on bk1", &r4b, ONE4, FE4B)
            .sent(TO_CLIENT),
        net.rep("IPv6 from srv1:5353 on bk1", &r6[0], PAIR6, FE6)
            .sent(TO_CLIENT),
        net.rep("IPv6 from srv2:5353 on bk2", &r6[1], PAIR6, FE6)
            .on(net.bk2)
            .sent(TO_CLIENT),
        net.rep("IPv6 from srv1:5454 on bk1", &r6b, ONE6, FE6B)
            .sent(TO_CLIENT),
        // The lookup cannot finish: passed as it came, for the kernel to
        // route and egress to translate.
        net.rep(
            "IPv4 to a client without neighbour entry",
            &stranger4,
            PAIR4,
            FE4,
        )
        .passed(nn),
        net.rep(
            "IPv6 to a client without neighbour entry",
            &stranger6,
            PAIR6,
            FE6,
        )
        .passed(nn),
        net.rep("IPv4 reply with TTL 1", &ttl(&r4[0], 1), PAIR4, FE4)
            .passed(te),
        net.rep("IPv6 reply with hop limit 1", &ttl(&r6[0], 1), PAIR6, FE6)
            .passed(te),
        net.rep("IPv4 reply with TTL 2", &ttl(&r4[1], 2), PAIR4, FE4)
            .on(net.bk2)
            .sent(TO_CLIENT),
        // Same host, another port: not a backend.
        net.untouched(
            "IPv4 from srv1:9999",
            &udp("198.18.1.2:9999", C4).build().bytes,
            nf,
        )
        .on(net.bk1),
        net.untouched(
            "IPv6 from srv1:9999",
            &udp("[2001:2:1::2]:9999", C6).build().bytes,
            nf,
        )
        .on(net.bk1),
        // A request's destination is never mistaken for a reply's source.
        net.untouched("IPv4 to srv1:5353", &udp(C4, B4[0]).build().bytes, nf),
    ]);

    // Only the replies XDP sent on count here; the passed ones count in
    // egress, if the kernel sends them on.
    let c = fx.counters();
    assert_eq!(
        c.replies,
        vec![
            counter(&[&r4[0], &r4[1], &r4[1]]),
            counter(&[&r6[0], &r6[1]]),
            counter(&[&r4b]),
            counter(&[&r6b]),
        ]
    );
    assert!(c
        .backends
        .iter()
        .flatten()
        .all(|b| *b == Counter::default()));
    assert_reasons(
        &fx,
        &[(UDPLB_REASON_REPLY_FORWARDED, 7), (nn, 2), (te, 2), (nf, 3)],
    );
}

#[test]
fn vlan_tagged_requests_and_fragments_go_to_the_kernel() {
    let (fx, net) = fixture();
    let other = UDPLB_REASON_FIB_OTHER;
    let frag = UDPLB_REASON_FRAGMENT;
    let q4 = udp(C4, FE4B).tags(&[TPID_8021Q]).build();
    let qinq4 = udp(C4, FE4B).tags(&[TPID_8021AD, TPID_8021Q]).build();
    let q6 = udp(C6, FE6B).tags(&[TPID_8021Q]).build();
    let q_reply = udp(B4B, C4).tags(&[TPID_8021Q]).build();
    let whole = udp(C4, FE4B).payload(&[0x33; 200]).build();
    let first = Frame::first_fragment_of(&whole.bytes, whole.l3, 64);
    let whole_pair = udp(C4, FE4).payload(&[0x44; 200]).build();
    let first_pair = Frame::first_fragment_of(&whole_pair.bytes, whole_pair.l3, 64);
    let middle = whole.clone().ipv4_frag(true, 8);
    let last = whole.clone().ipv4_frag(false, 8);

    fx.check_all(&[
        // The kernel's VLAN devices rewrite tags; XDP does not.
        net.req("IPv4 in 802.1Q", &q4, O4, B4B).passed(other),
        net.req("IPv4 in 802.1ad + 802.1Q", &qinq4, O4, B4B)
            .passed(other),
        net.req("IPv6 in 802.1Q", &q6, O6, B6B).passed(other),
        net.req("IPv4 partial in 802.1Q", &partial(&q4), O4, B4B)
            .csum(Csum::Partial)
            .passed(other),
        net.rep("IPv4 reply in 802.1Q", &q_reply, ONE4, FE4B)
            .passed(other),
        // Fragments of a datagram to a frontend with remote backends: all
        // untouched, none counted for a backend.
        net.untouched("IPv4 first fragment (MF, offset 0)", &first, frag),
        net.untouched(
            "IPv4 first fragment, round-robin frontend",
            &first_pair,
            frag,
        ),
        net.untouched("IPv4 middle fragment (MF, offset 64)", &middle.bytes, frag),
        net.untouched("IPv4 last fragment (offset 64)", &last.bytes, frag),
        // Neither DF (etherparse sets it) nor its absence makes a fragment.
        net.req("IPv4 with DF", &whole, O4, B4B).sent(TO_SRV1),
        net.req("IPv4 without DF", &without_df(&whole), O4, B4B)
            .sent(TO_SRV1),
    ]);
    let c = fx.counters();
    assert_eq!(c.backends[PAIR4], vec![Counter::default(); 2]);
    assert_eq!(c.backends[ONE4][0].packets, 5);
}

/// The reply path cannot be abused from the client side: a backend's source
/// is believed only on the interface that leads to that backend, a reply is
/// never delivered to this host, and a backend's datagram to a frontend
/// starts no loop. (Before: the first four were rewritten to come from the
/// frontend and redirected or passed; the last ones balanced.)
#[test]
fn forged_replies_and_loops_are_refused() {
    let (fx, net) = fixture();
    let r4 = [udp(B4[0], C4).build(), udp(B4[1], C4).build()];
    let r6 = [udp(B6[0], C6).build(), udp(B6[1], C6).build()];
    let to_self4 = udp(B4[0], "198.18.0.2:40000").build();
    let to_self6 = udp(B6[0], "[2001:2::2]:40000").build();
    let to_vip4 = udp(B4[1], "198.18.100.1:9999").build();
    let loop4 = udp(B4[1], FE4).build();
    let loop6 = udp(B6[1], FE6).build();
    let spoofed = UDPLB_REASON_SPOOFED_REPLY;
    let to_local = UDPLB_REASON_REPLY_TO_LOCAL;
    let looped = UDPLB_REASON_BACKEND_TO_FRONTEND;
    fx.check_all(&[
        net.rep(
            "IPv4 from srv1's address, forged on in0",
            &r4[0],
            PAIR4,
            FE4,
        )
        .on(net.ingress)
        .dropped(spoofed),
        net.rep(
            "IPv6 from srv2's address, forged on in0",
            &r6[1],
            PAIR6,
            FE6,
        )
        .on(net.ingress)
        .dropped(spoofed),
        net.rep(
            "IPv4 from srv2's address, arriving on bk1",
            &r4[1],
            PAIR4,
            FE4,
        )
        .dropped(spoofed),
        net.rep(
            "IPv6 from srv1's address, arriving on bk2",
            &r6[0],
            PAIR6,
            FE6,
        )
        .on(net.bk2)
        .dropped(spoofed),
        // To this host (udplb's own probes get their answers so): passed
        // as it came, from the backend, never from the frontend.
        net.untouched("IPv4 from srv1 to the balancer", &to_self4.bytes, to_local)
            .on(net.bk1),
        net.untouched("IPv6 from srv1 to the balancer", &to_self6.bytes, to_local)
            .on(net.bk1),
        // Undone exactly, whatever the checksum: a partial one (offload on
        // the backend's veth), a zero one, a random one.
        net.untouched(
            "IPv4 from srv1 to the balancer, partial checksum",
            &partial(&to_self4).bytes,
            to_local,
        )
        .on(net.bk1),
        net.untouched(
            "IPv6 from srv1 to the balancer, partial checksum",
            &partial(&to_self6).bytes,
            to_local,
        )
        .on(net.bk1),
        net.untouched(
            "IPv4 from srv1 to the balancer, no checksum",
            &field(&to_self4, 0).bytes,
            to_local,
        )
        .on(net.bk1),
        net.untouched(
            "IPv4 from srv1 to the balancer, a wrong checksum",
            &field(&to_self4, 0x1234).bytes,
            to_local,
        )
        .on(net.bk1),
        net.untouched(
            "IPv4 from srv2 to the frontend's address, other port",
            &to_vip4.bytes,
            to_local,
        )
        .on(net.bk2),
        net.rep(
            "IPv4 from srv2 to the frontend (a loop)",
            &loop4,
            PAIR4,
            FE4,
        )
        .on(net.bk2)
        .dropped(looped),
        net.rep(
            "IPv6 from srv2 to the frontend (a loop)",
            &loop6,
            PAIR6,
            FE6,
        )
        .on(net.bk2)
        .dropped(looped),
        net.rep(
            "IPv4 from srv2 to the frontend, forged on in0",
            &loop4,
            PAIR4,
            FE4,
        )
        .on(net.ingress)
        .dropped(looped),
    ]);
    let c = fx.counters();
    assert!(c.replies.iter().all(|r| *r == Counter::default()));
    assert!(c
        .backends
        .iter()
        .flatten()
        .all(|b| *b == Counter::default()));
    assert_reasons(&fx, &[(spoofed, 4), (to_local, 7), (looped, 3)]);
}
