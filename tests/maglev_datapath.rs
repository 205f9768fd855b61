//! Maglev in the datapath, through BPF_PROG_TEST_RUN: the program's flow
//! hash and ring lookup agree with the Rust ones (src/plan/flow_hash.rs and the
//! ring the plan wrote), the same 4-tuple always picks the same backend,
//! and different flows spread over all backends.

use udplb_testkit as support;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use support::frame::{Frame, Port};
use support::packets::udp;
use support::require_root;
use support::runner::{run_once, XDP_PASS};
use udplb::config::{Config, Defaults, Sched};
use udplb::datapath::Datapath;
use udplb::plan::flow_hash::flow_hash;
use udplb::plan::State;

fn udp4(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Frame {
    let (s, d) = (Ipv4Addr::from(src), Ipv4Addr::from(dst));
    udp(&format!("{s}:{sport}"), &format!("{d}:{dport}"))
        .payload(b"maglev test payload")
        .build()
}

fn udp6(src: [u8; 16], sport: u16, dst: [u8; 16], dport: u16) -> Frame {
    let (s, d) = (Ipv6Addr::from(src), Ipv6Addr::from(dst));
    udp(&format!("[{s}]:{sport}"), &format!("[{d}]:{dport}"))
        .payload(b"maglev test payload")
        .build()
}

struct Setup {
    dp: Datapath,
    ring: Vec<u32>,
    port_of_slot: BTreeMap<u32, u16>,
}

fn setup(spec: &str, table_size: u32) -> Setup {
    require_root();
    let config = Config::from_specs_with(
        &[spec],
        Defaults {
            sched: Sched::Maglev,
            table_size,
            ..Defaults::default()
        },
    )
    .expect("config");
    let (plan, state) = State::default().plan(&config);
    let dp = Datapath::load().expect("load");
    dp.apply(&plan).expect("apply");
    let slots = &state.layout(&config).frontends[0].1;
    let port_of_slot = slots
        .iter()
        .zip(&config.frontends[0].backends)
        .map(|(s, b)| (*s, b.port))
        .collect();
    Setup {
        dp,
        ring: plan.rings[0].1.clone(),
        port_of_slot,
    }
}

impl Setup {
    /// One BPF_PROG_TEST_RUN of the XDP program on `frame`: the verdict
    /// and the destination port it left.
    fn run(&self, frame: &Frame) -> (u32, u16) {
        let (verdict, out) = run_once(self.dp.xdp_program(), &frame.bytes, None).unwrap();
        (verdict, frame.port_in(&out, Port::Destination))
    }

    fn expected(&self, src: &[u8], sport: u16, dst: &[u8], dport: u16) -> u16 {
        let h = flow_hash(src, dst, sport.to_be_bytes(), dport.to_be_bytes());
        self.port_of_slot[&self.ring[(h % self.ring.len() as u32) as usize]]
    }
}

#[test]
fn the_program_picks_the_backend_the_rust_ring_predicts() {
    let s = setup("9875=9876,9877,9878,9879@2", 65537);
    let mut hits: BTreeMap<u16, u32> = BTreeMap::new();
    for i in 0..600u32 {
        let src = [198, 18, (i >> 8) as u8, i as u8];
        let sport = 1024 + (i * 7919 % 60000) as u16;
        let frame = udp4(src, sport, [198, 18, 0, 2], 9875);
        let (verdict, got) = s.run(&frame);
        assert_eq!(verdict, XDP_PASS, "XDP_PASS");
        assert_eq!(
            got,
            s.expected(&src, sport, &[198, 18, 0, 2], 9875),
            "flow {i}"
        );
        *hits.entry(got).or_default() += 1;
    }
    // Weight 2 gets about twice the flows of the others.
    assert_eq!(hits.len(), 4, "{hits:?}");
    assert!(
        hits[&9879] > hits[&9876] && hits[&9879] > hits[&9877],
        "{hits:?}"
    );
}

#[test]
fn ipv6_flows_too() {
    let s = setup("9875=9876,9877,9878", 16381);
    let dst = [0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    for i in 0..300u16 {
        let mut src = [0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        src[14] = (i >> 8) as u8;
        src[15] = i as u8;
        let (_, got) = s.run(&udp6(src, 40000 + i, dst, 9875));
        assert_eq!(got, s.expected(&src, 40000 + i, &dst, 9875), "flow {i}");
    }
}

#[test]
fn a_flow_always_picks_the_same_backend() {
    let s = setup("9875=9876,9877,9878", 65537);
    let frame = udp4([198, 18, 9, 9], 33333, [198, 18, 0, 2], 9875);
    let first = s.run(&frame).1;
    for _ in 0..100 {
        assert_eq!(s.run(&frame).1, first);
    }
}
