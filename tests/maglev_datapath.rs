//! Maglev in the datapath, through BPF_PROG_TEST_RUN: the program's flow
//! hash and ring lookup agree with the Rust ones (src/flow_hash.rs and the
//! ring the plan wrote), the same 4-tuple always picks the same backend,
//! and different flows spread over all backends.

use std::collections::BTreeMap;

use etherparse::PacketBuilder;
use udplb::config::{Config, Defaults, Sched};
use udplb::datapath::Datapath;
use udplb::plan::flow_hash::flow_hash;
use udplb::plan::State;

fn require_root() {
    if !nix::unistd::geteuid().is_root() {
        panic!("needs root (BPF_PROG_TEST_RUN): run sudo make test");
    }
}

fn udp4(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src, dst, 64)
        .udp(sport, dport);
    let mut out = Vec::new();
    b.write(&mut out, b"maglev test payload").unwrap();
    out
}

fn udp6(src: [u8; 16], sport: u16, dst: [u8; 16], dport: u16) -> Vec<u8> {
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv6(src, dst, 64)
        .udp(sport, dport);
    let mut out = Vec::new();
    b.write(&mut out, b"maglev test payload").unwrap();
    out
}

/// The destination port the program wrote: 14 bytes of Ethernet, then IP.
fn dport_of(frame: &[u8], ipv6: bool) -> u16 {
    let udp = 14 + if ipv6 { 40 } else { 20 };
    u16::from_be_bytes([frame[udp + 2], frame[udp + 3]])
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
        let (verdict, out) = s.dp.test_run(&frame).unwrap();
        assert_eq!(verdict, 2, "XDP_PASS");
        let got = dport_of(&out, false);
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
        let (_, out) = s.dp.test_run(&udp6(src, 40000 + i, dst, 9875)).unwrap();
        assert_eq!(
            dport_of(&out, true),
            s.expected(&src, 40000 + i, &dst, 9875),
            "flow {i}"
        );
    }
}

#[test]
fn a_flow_always_picks_the_same_backend() {
    let s = setup("9875=9876,9877,9878", 65537);
    let frame = udp4([198, 18, 9, 9], 33333, [198, 18, 0, 2], 9875);
    let first = dport_of(&s.dp.test_run(&frame).unwrap().1, false);
    for _ in 0..100 {
        assert_eq!(dport_of(&s.dp.test_run(&frame).unwrap().1, false), first);
    }
}
