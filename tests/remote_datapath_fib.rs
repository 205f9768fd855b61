//! Remote backends in the XDP datapath (bpf/forward.h), the FIB: every
//! bpf_fib_lookup outcome passes the rewritten request to the kernel with
//! its reason, a route out of another device goes to the kernel (a reply
//! rewritten, since no egress program of udplb's is there), and Maglev
//! keeps each flow on one remote backend.
//!
//! Each test moves its thread into a private network namespace holding the
//! topology of tests/support/forwarding.rs (bpf_fib_lookup runs in the
//! caller's namespace). Expected outputs are computed from scratch there;
//! the kit's runner compares them byte for byte. Needs root: run
//! `sudo make test`.

use udplb_testkit as support;

use std::collections::BTreeMap;

use support::cpu::pin_to_one_cpu;
use support::forwarding::*;
use support::packets::{udp, Frame};
use support::runner::{assert_reasons, require_privileges, Fixture};
use udplb::abi::{
    UDPLB_REASON_FIB_FRAG_NEEDED, UDPLB_REASON_FIB_FWD_DISABLED, UDPLB_REASON_FIB_NO_NEIGH,
    UDPLB_REASON_FIB_OTHER, UDPLB_REASON_FIB_UNREACHABLE, UDPLB_REASON_FORWARDED,
    UDPLB_REASON_TTL_EXPIRED,
};
use udplb::config::{Config, Defaults, Sched};
use udplb::datapath::Datapath;
use udplb::plan::flow_hash::flow_hash;
use udplb::plan::State;

#[test]
fn every_fib_outcome_passes_the_rewritten_packet() {
    let (fx, net) = fixture();
    let f4 = udp(C4, FE4B).build();
    let f6 = udp(C6, FE6B).build();
    let sent = |what: &str| {
        fx.check_all(&[
            net.req(&format!("IPv4 {what}"), &f4, O4, B4B).sent(TO_SRV1),
            net.req(&format!("IPv6 {what}"), &f6, O6, B6B).sent(TO_SRV1),
        ])
    };
    let passed = |what: &str, reason: u32| {
        fx.check_all(&[
            net.req(&format!("IPv4 {what}"), &f4, O4, B4B)
                .passed(reason),
            net.req(&format!("IPv6 {what}"), &f6, O6, B6B)
                .passed(reason),
        ])
    };
    let mut n_sent = 0;
    let mut reasons: BTreeMap<u32, u64> = BTreeMap::new();
    let mut count = |reason: u32, n: u64| *reasons.entry(reason).or_default() += n;

    sent("with everything in place");
    n_sent += 2;

    forget_srv1();
    passed("without a neighbour entry", UDPLB_REASON_FIB_NO_NEIGH);
    count(UDPLB_REASON_FIB_NO_NEIGH, 2);
    // Any valid state will do (the kernel revalidates a stale one).
    for addr in ["198.18.1.2", "2001:2:1::2"] {
        let m = mac(MAC_SRV1);
        ip(&[
            "neigh", "replace", addr, "lladdr", &m, "dev", "bk1", "nud", "stale",
        ]);
    }
    sent("to a stale neighbour entry");
    n_sent += 2;
    neighbours(true);

    let fd = UDPLB_REASON_FIB_FWD_DISABLED;
    sysctl(&[
        "net.ipv4.conf.in0.forwarding=0",
        "net.ipv6.conf.in0.forwarding=0",
    ]);
    passed("with forwarding off on the ingress device", fd);
    sysctl(&[
        "net.ipv4.conf.in0.forwarding=1",
        "net.ipv6.conf.in0.forwarding=1",
    ]);
    forwarding(false);
    passed("with forwarding off everywhere", fd);
    count(fd, 4);
    forwarding(true);
    sent("with forwarding back on");
    n_sent += 2;

    // The route's MTU counts for bpf_fib_lookup when locked (IPv4 without
    // the lock would need net.ipv4.ip_forward_use_pmtu).
    ip(&[
        "route",
        "add",
        "198.18.1.2/32",
        "dev",
        "bk1",
        "mtu",
        "lock",
        "1280",
    ]);
    ip(&[
        "-6",
        "route",
        "add",
        "2001:2:1::2/128",
        "dev",
        "bk1",
        "mtu",
        "lock",
        "1280",
    ]);
    let fits4 = of_ip_len(C4, FE4B, 1280);
    let fits6 = of_ip_len(C6, FE6B, 1280);
    let big4 = of_ip_len(C4, FE4B, 1281);
    let big6 = of_ip_len(C6, FE6B, 1281);
    let fnd = UDPLB_REASON_FIB_FRAG_NEEDED;
    fx.check_all(&[
        net.req("IPv4 of exactly the route's MTU", &fits4, O4, B4B)
            .sent(TO_SRV1),
        net.req("IPv6 of exactly the route's MTU", &fits6, O6, B6B)
            .sent(TO_SRV1),
        net.req("IPv4 one byte over the route's MTU", &big4, O4, B4B)
            .passed(fnd),
        net.req("IPv6 one byte over the route's MTU", &big6, O6, B6B)
            .passed(fnd),
        net.req("IPv4 partial over the MTU", &partial(&big4), O4, B4B)
            .csum(Csum::Partial)
            .passed(fnd),
        // The lookup does not look at DF (etherparse sets it): the kernel
        // fragments or sends ICMP.
        net.req("IPv4 without DF over the MTU", &without_df(&big4), O4, B4B)
            .passed(fnd),
    ]);
    n_sent += 2;
    count(fnd, 4);
    ip(&["route", "del", "198.18.1.2/32", "dev", "bk1"]);
    ip(&["-6", "route", "del", "2001:2:1::2/128", "dev", "bk1"]);

    for kind in ["blackhole", "unreachable", "prohibit"] {
        ip(&["route", "replace", kind, "198.18.1.2/32"]);
        ip(&["-6", "route", "replace", kind, "2001:2:1::2/128"]);
        passed(
            &format!("with a {kind} route"),
            UDPLB_REASON_FIB_UNREACHABLE,
        );
        count(UDPLB_REASON_FIB_UNREACHABLE, 2);
    }
    ip(&["route", "del", "198.18.1.2/32"]);
    ip(&["-6", "route", "del", "2001:2:1::2/128"]);
    sent("with the routes removed again");
    n_sent += 2;

    let te = UDPLB_REASON_TTL_EXPIRED;
    fx.check_all(&[
        net.req("IPv4 TTL 1", &ttl(&f4, 1), O4, B4B).passed(te),
        net.req("IPv4 TTL 0", &ttl(&f4, 0), O4, B4B).passed(te),
        net.req("IPv6 hop limit 1", &ttl(&f6, 1), O6, B6B)
            .passed(te),
        net.req("IPv6 hop limit 0", &ttl(&f6, 0), O6, B6B)
            .passed(te),
        net.req("IPv4 TTL 2 leaves with 1", &ttl(&f4, 2), O4, B4B)
            .sent(TO_SRV1),
        net.req("IPv6 hop limit 2 leaves with 1", &ttl(&f6, 2), O6, B6B)
            .sent(TO_SRV1),
        net.req("IPv4 TTL 255", &ttl(&f4, 255), O4, B4B)
            .sent(TO_SRV1),
    ]);
    count(te, 4);
    n_sent += 3;

    // No route at all (the connected routes to srv1's subnet removed): the
    // lookup says "not forwarded", which forward.h counts as fib_other (the
    // README lists blackhole, unreachable and prohibit as fib_unreachable).
    ip(&["route", "del", "198.18.1.0/24", "dev", "bk1"]);
    ip(&["-6", "route", "del", "2001:2:1::/64", "dev", "bk1"]);
    passed("with no route", UDPLB_REASON_FIB_OTHER);
    count(UDPLB_REASON_FIB_OTHER, 2);

    count(UDPLB_REASON_FORWARDED, n_sent);
    let want: Vec<(u32, u64)> = reasons.into_iter().collect();
    assert_reasons(&fx, &want);
    let total: u64 = want.iter().map(|(_, n)| n).sum();
    let c = fx.counters();
    assert_eq!(
        c.backends[ONE4][0].packets + c.backends[ONE6][0].packets,
        total,
        "every request, sent or passed, counts for its backend"
    );
}

#[test]
fn maglev_keeps_each_flow_on_one_remote_backend() {
    require_privileges();
    pin_to_one_cpu();
    let config = Config::from_specs_with(
        &SPECS[..2],
        Defaults {
            sched: Sched::Maglev,
            table_size: 65537,
            ..Defaults::default()
        },
    )
    .expect("test configuration");
    let (plan, state) = State::default().plan(&config);
    let dp = Datapath::load().expect("loading the datapath");
    dp.apply(&plan).expect("writing the maps");
    let layout = state.layout(&config);
    let net = private_topology();
    register_tx_ports(&dp, &net);

    // The backend the Rust side predicts: src/plan/flow_hash.rs over the ring the
    // plan wrote for the frontend.
    let predict = |fe: usize, f: &Frame| -> usize {
        let key = config.frontends[fe].listen.endpoints()[0];
        let (_, entry) = plan
            .frontends
            .iter()
            .find(|(k, _)| *k == key)
            .expect("frontend");
        let (_, ring) = plan
            .rings
            .iter()
            .find(|(t, _)| *t == entry.ring_id)
            .expect("ring");
        let b = &f.bytes;
        let (src, dst) = if f.ipv6 {
            (&b[f.l3 + 8..f.l3 + 24], &b[f.l3 + 24..f.l3 + 40])
        } else {
            (&b[f.l3 + 12..f.l3 + 16], &b[f.l3 + 16..f.l3 + 20])
        };
        let l4 = l4(f);
        let h = flow_hash(src, dst, [b[l4], b[l4 + 1]], [b[l4 + 2], b[l4 + 3]]);
        let slot = ring[(h % ring.len() as u32) as usize];
        layout.frontends[fe]
            .1
            .iter()
            .position(|s| *s == slot)
            .expect("slot")
    };
    let fx = Fixture {
        dp,
        layout: layout.clone(),
    };

    let mut cases = Vec::new();
    let mut hits = [[0u64; 2]; 2];
    for i in 0..64u16 {
        for (fe, client, frontend, backends) in [
            (PAIR4, format!("198.18.0.1:{}", 30000 + i * 7), FE4, B4),
            (PAIR6, format!("[2001:2::1]:{}", 30000 + i * 7), FE6, B6),
        ] {
            let f = udp(&client, frontend)
                .payload(format!("flow {i}").as_bytes())
                .build();
            let b = predict(fe, &f);
            // Three times each, interleaved with the other family's flow:
            // always the same backend.
            for n in 0..3 {
                let name = format!("flow {i} ({client}) #{n} -> backend {b}");
                cases.push(
                    net.req(&name, &f, (fe, b), backends[b])
                        .sent([TO_SRV1, TO_SRV2][b]),
                );
            }
            hits[fe][b] += 3;
        }
    }
    fx.check_all(&cases);
    assert!(
        hits.iter().flatten().all(|&n| n > 0),
        "64 flows should reach both backends of each frontend: {hits:?}"
    );
    let c = fx.counters();
    for fe in [PAIR4, PAIR6] {
        let packets: Vec<u64> = c.backends[fe].iter().map(|b| b.packets).collect();
        assert_eq!(packets, hits[fe], "frontend {fe}");
    }
    assert_reasons(&fx, &[(UDPLB_REASON_FORWARDED, 64 * 2 * 3)]);
}

/// A route out of a device udplb is not attached to (not in tx_ports): the
/// rewritten packet goes to the kernel (fib_other), TTL untouched, instead
/// of a redirect the device could not take.
#[test]
fn a_route_out_of_another_device_goes_to_the_kernel() {
    let fx = Fixture::new(SPECS);
    let net = private_topology();
    fx.dp.add_tx_port(net.ingress).expect("ingress");
    fx.dp.add_tx_port(net.bk1).expect("bk1");
    // Round robin: the first request goes to srv1 (bk1), the second to
    // srv2, whose device bk2 is not a redirect target.
    let first = udp(C4, FE4).payload(b"to srv1").build();
    let second = udp(C4, FE4).payload(b"to srv2").build();
    fx.check_all(&[
        net.req("srv1 via bk1, registered", &first, (PAIR4, 0), B4[0])
            .sent(TO_SRV1),
        net.req("srv2 via bk2, not registered", &second, (PAIR4, 1), B4[1])
            .passed(UDPLB_REASON_FIB_OTHER),
    ]);
}

/// A reply whose route to the client leaves through a device udplb is not
/// attached to (in0 not in tx_ports): no egress program of udplb's would
/// see it there, so it goes to the kernel translated (fib_other), also
/// when the client's neighbour is not resolved (fib_no_neigh); a reply
/// whose device is udplb's goes as it came (remote_datapath_rewrite.rs).
#[test]
fn a_reply_routed_out_of_another_device_goes_to_the_kernel_translated() {
    let fx = Fixture::new(SPECS);
    let net = private_topology();
    fx.dp.add_tx_port(net.bk1).expect("bk1");
    let reply = udp(B4B, C4).payload(b"from srv1").build();
    let stranger = udp(B4B, "198.18.0.77:40000").payload(b"from srv1").build();
    fx.check_all(&[
        net.rep("client via in0, not registered", &reply, ONE4, FE4B)
            .passed_rewritten(UDPLB_REASON_FIB_OTHER),
        net.rep("no neighbour, via in0", &stranger, ONE4, FE4B)
            .passed_rewritten(UDPLB_REASON_FIB_NO_NEIGH),
    ]);
}
