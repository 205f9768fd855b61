//! Differential test: the reference model (tests/support/model/, written from the
//! specification) against the real XDP program (BPF_PROG_TEST_RUN).
//!
//! Random valid configurations (1-4 frontends: port-only, IPv4 or IPv6
//! address; 1-5 backends each; through `Config::from_specs`, so validation
//! applies and rejected configurations are skipped), each written into one
//! datapath loaded once per test (by the plan a reload applies, then the
//! expiry of lingering reply entries, so the maps hold that configuration
//! and nothing else), then batches of random frames: valid IPv4/IPv6 UDP
//! (0-2 VLAN tags, IPv4 options, first and later fragments, checksum 0,
//! short udp.len, Ethernet padding, ports and addresses of the configuration
//! or not) and mutations of them (truncation, bit flips, header fields
//! overwritten with random or nearby values, extra VLAN tags, IPv6 extension
//! headers). Each frame arrives with no test-run context (the kernel runs it
//! on lo), with an xdp_md naming lo or ifindex 0, or naming a veth in a
//! private network namespace. Model and program must agree on the verdict
//! and the output bytes of every frame, and on every counter (reasons, per
//! backend, replies): each batch (1-48 frames) starts from reset round-robin
//! cursors and a fresh model, its counters are read before and after it and
//! compared with the sum of the model's deltas, and on any mismatch the batch
//! runs again frame by frame, counters read around each frame, so that the
//! report names the frame that diverged. A configuration serves
//! `frames_per_configuration` frames (100 of the default 10 000; 3 333 of a
//! million, 300 configurations).
//!
//! Frames checked per run: `UDPLB_FUZZ_CASES` (or `PROPTEST_CASES`), default
//! 10 000; `make fuzz CASES=N` runs N. The seed is random unless
//! `UDPLB_FUZZ_SEED` (hex) is set; a failure prints it. On a divergence the
//! (shrunk) case is printed as hex, with both outcomes, and as a fixture to
//! paste into tests/datapath_balancing.rs or tests/datapath_parsing.rs.
//!
//! Fixed scenarios at the end pin down what the property rests on or found:
//! a test run without context counts as arriving on lo; and a datagram from
//! the unspecified address (0.0.0.0 or ::) with a port-only frontend's
//! backend port as source, arriving on a wire-facing interface, is not a
//! reply (README: replies matched by port alone are rewritten only on lo).
//! The program rewrites it: its exact-address lookup builds an all-zero
//! address, which is the wildcard key. That test, and the property, fail
//! until bpf/udplb.bpf.c is fixed.
//!
//! Needs root (BPF, network namespaces): without it the test fails, saying so.

use udplb_testkit as support;

use std::cell::RefCell;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::strategy::ValueTree;
use proptest::test_runner::{
    Config as RunnerConfig, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner,
};

use support::checksum;
use support::hex::{hex_diff, hex_dump};
use support::model::{self, reason_name, Bind, ModelConfig, ModelState, Outcome};
use udplb::config::{Config, Defaults, Hash, Sched};

mod frames;
mod report;
mod strategies;

use frames::*;
use report::*;
use strategies::*;
// ===========================================================================
// The program under test: tests/differential/program.rs.
mod program;

use program::Program;
use support::runner::{counters_add, counters_minus, zero_counters};
use udplb::abi::Counter;
use udplb::datapath::Counters;
// ===========================================================================
// The test thread's environment.

use support::runner::LOOPBACK;

pub(crate) struct Env {
    /// A veth in this thread's private network namespace: not lo.
    pub(crate) veth: u32,
}

impl Env {
    /// Fails without root; pins the thread to one CPU (the round-robin
    /// cursors are per CPU; the model is one CPU); moves it into a network
    /// namespace of its own holding a veth pair.
    pub(crate) fn setup(cpu_slot: usize) -> Env {
        if !nix::unistd::geteuid().is_root() {
            panic!(
                "the differential test needs root (BPF_PROG_TEST_RUN, network namespaces): \
                 run `sudo make test` or `sudo cargo test --test differential`"
            );
        }
        support::cpu::pin_to_allowed_cpu(cpu_slot);
        let veth = support::netns::private_netns_with_veth("udplb-d");
        Env { veth }
    }
}

/// How a frame reaches the program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ingress {
    /// BPF_PROG_TEST_RUN without a context: the kernel uses lo's rx queue.
    NoContext,
    /// An xdp_md with ingress_ifindex 1.
    Lo,
    /// An xdp_md with ingress_ifindex 0, which keeps the default (lo).
    ContextZero,
    /// An xdp_md naming a veth: a wire-facing interface.
    Veth,
}

impl Ingress {
    pub(crate) fn on_loopback(self) -> bool {
        self != Ingress::Veth
    }

    pub(crate) fn ifindex(self, env: &Env) -> Option<u32> {
        match self {
            Ingress::NoContext => None,
            Ingress::Lo => Some(LOOPBACK),
            Ingress::ContextZero => Some(0),
            Ingress::Veth => Some(env.veth),
        }
    }
}
// ===========================================================================
// The check.

/// The counter deltas the model's outcome stands for.
pub(crate) fn expected_delta(o: &Outcome, shape: &[usize]) -> Counters {
    let mut c = zero_counters(shape);
    c.reasons[o.reason] += 1;
    let one = Counter {
        packets: 1,
        bytes: o.counted_bytes,
    };
    if let Some((f, b)) = o.backend {
        c.backends[f][b] = one;
    }
    if let Some(f) = o.reply {
        c.replies[f] = one;
    }
    if let Some((f, b)) = o.reply_from {
        c.passive[f][b].replies = 1;
    }
    if let Some((f, b)) = o.icmp_error {
        c.passive[f][b].icmp_errors = 1;
    }
    if let Some(e) = o.flow_event {
        c.flow_events[e] += 1;
    }
    c
}

/// What the frames that agreed exercised, by the model's outcome.
#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) reasons: Vec<u64>,
    pub(crate) flow_events: [u64; udplb::abi::FLOW_COUNTER_COUNT],
    pub(crate) on_veth: u64,
    pub(crate) mutated: u64,
}

impl Stats {
    pub(crate) fn count(&mut self, shot: &Shot, o: &Outcome) {
        if self.reasons.len() <= o.reason {
            self.reasons.resize(o.reason + 1, 0);
        }
        self.reasons[o.reason] += 1;
        if let Some(e) = o.flow_event {
            self.flow_events[e] += 1;
        }
        self.on_veth += u64::from(shot.ingress == Ingress::Veth);
        self.mutated += u64::from(!shot.mutations.is_empty());
    }
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r: Vec<String> = (0..udplb::abi::REASON_NAMES.len())
            .map(|i| format!("{} {}", reason_name(i), self.reasons.get(i).unwrap_or(&0)))
            .collect();
        let e: Vec<String> = (udplb::abi::FLOW_COUNTER_NAMES.iter())
            .zip(self.flow_events)
            .map(|(n, v)| format!("{n} {v}"))
            .collect();
        write!(
            f,
            "{}; flow table: {}; {} mutated, {} on a veth",
            r.join(", "),
            e.join(", "),
            self.mutated,
            self.on_veth
        )
    }
}

/// Runs a scenario's frames through `program` (made to hold the scenario's
/// configuration, its round-robin cursors reset) and through a fresh model.
/// Verdict and output bytes are compared frame by frame; the counters are
/// read once before and once after the batch and compared with the sum of
/// the model's deltas. On any mismatch the batch runs again frame by frame
/// ([`check_frame_by_frame`]), reading the counters around every frame, so
/// that the report names the first frame that diverged. The error is that
/// report.
pub(crate) fn check(
    env: &Env,
    program: &mut Program,
    sc: &Scenario,
    stats: &RefCell<Stats>,
) -> Result<(), String> {
    let config = sc.config();
    program.hold(&sc.specs, sc.maglev, &config);
    let model_config = ModelConfig::from_config(&config);
    let mut state = ModelState::round_robin();
    program.reset();
    let before = program.counters();
    let mut want_total = zero_counters(&program.shape);
    let mut outcomes = Vec::with_capacity(sc.shots.len());
    for shot in &sc.shots {
        let want = model::run(
            &shot.frame,
            &model_config,
            &mut state,
            shot.ingress.on_loopback(),
        );
        let (verdict, output) = program.run(shot.ingress.ifindex(env), &shot.frame);
        if verdict != want.verdict || output != want.output {
            return Err(check_frame_by_frame(env, program, sc, &model_config));
        }
        counters_add(&mut want_total, &expected_delta(&want, &program.shape));
        outcomes.push(want);
    }
    if counters_minus(&program.counters(), &before) != want_total {
        return Err(check_frame_by_frame(env, program, sc, &model_config));
    }
    let mut stats = stats.borrow_mut();
    for (shot, want) in sc.shots.iter().zip(&outcomes) {
        stats.count(shot, want);
    }
    Ok(())
}

/// The batch of [`check`] again, from reset cursors and a fresh model,
/// with the counters read around every frame: the report of the first frame
/// whose verdict, bytes or counter deltas differ.
fn check_frame_by_frame(
    env: &Env,
    program: &Program,
    sc: &Scenario,
    model_config: &ModelConfig,
) -> String {
    let mut state = ModelState::round_robin();
    program.reset();
    let mut before = program.counters();
    let mut outcomes = Vec::with_capacity(sc.shots.len());
    for (i, shot) in sc.shots.iter().enumerate() {
        let want = model::run(
            &shot.frame,
            model_config,
            &mut state,
            shot.ingress.on_loopback(),
        );
        let (verdict, output) = program.run(shot.ingress.ifindex(env), &shot.frame);
        let after = program.counters();
        let got = counters_minus(&after, &before);
        let want_delta = expected_delta(&want, &program.shape);
        outcomes.push(want.clone());
        if verdict != want.verdict || output != want.output || got != want_delta {
            return report(env, sc, i, &outcomes, verdict, &output, &got);
        }
        before = after;
    }
    format!(
        "the batch of {} frames diverged from the model (configuration {:?}, maglev {:?}), \
         but every frame agreed when it ran again alone with its counters read around it",
        sc.shots.len(),
        sc.specs,
        sc.maglev
    )
}
// ===========================================================================
// Driving.

pub(crate) fn env_number(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim().replace('_', "");
    let parsed = match v.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16),
        None => v.parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{name}={v}: not a number")))
}

/// Frames to check: UDPLB_FUZZ_CASES, else PROPTEST_CASES, else 10 000.
pub(crate) fn frames_wanted() -> u64 {
    env_number("UDPLB_FUZZ_CASES")
        .or_else(|| env_number("PROPTEST_CASES"))
        .unwrap_or(10_000)
}

pub(crate) fn seed() -> u64 {
    env_number("UDPLB_FUZZ_SEED").unwrap_or_else(|| {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos(),
        );
        h.finish()
    })
}

pub(crate) fn runner(seed: u64) -> TestRunner {
    let mut bytes = [0u8; 32];
    for (i, chunk) in bytes.chunks_mut(8).enumerate() {
        // splitmix64, so every seed fills all 32 bytes.
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15u64.wrapping_mul(i as u64 + 1));
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        chunk.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    let config = RunnerConfig {
        failure_persistence: None,
        max_local_rejects: u32::MAX,
        // Shrink steps reuse the loaded datapath; shrink for 30 s at most.
        max_shrink_iters: env_number("PROPTEST_MAX_SHRINK_ITERS").map_or(2000, |n| n as u32),
        max_shrink_time: 30_000,
        ..RunnerConfig::default()
    };
    TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &bytes))
}

/// Frames checked per configuration: enough that a configuration's map
/// writes are paid for by many frames, few enough that a run covers a few
/// hundred configurations (10 000 frames: 100 configurations of 100;
/// 1 000 000: 300 of 3 333).
pub(crate) fn frames_per_configuration(frames: u64) -> u64 {
    (frames / 300).clamp(100, 5_000)
}

/// Runs random configurations, each loaded into the one datapath (by a
/// reload plan) and checked on batches of random frames, until `frames`
/// frames have been checked. A failing batch is shrunk (its frames, then
/// its configuration) and reported.
pub(crate) fn run_differential(env: &Env, frames: u64, seed: u64) {
    let mut runner = runner(seed);
    let configurations = configuration();
    let per_configuration = frames_per_configuration(frames);
    let program = RefCell::new(Program::load());
    let start = Instant::now();
    let mut last_note = start;
    let (mut done, mut configs) = (0u64, 0u64);
    let stats = RefCell::new(Stats::default());
    while done < frames {
        let config_tree = configurations
            .new_tree(&mut runner)
            .unwrap_or_else(|e| panic!("generating a configuration: {e}"));
        let (specs, maglev, config) = config_tree.current();
        let batches = batch(specs, maglev, &Aims::of(&ModelConfig::from_config(&config)));
        configs += 1;
        let mut in_configuration = 0u64;
        while in_configuration < per_configuration && done < frames {
            let tree = batches
                .new_tree(&mut runner)
                .unwrap_or_else(|e| panic!("generating a batch of frames: {e}"));
            let n = tree.current().shots.len() as u64;
            match runner.run_one(tree, |sc| {
                check(env, &mut program.borrow_mut(), &sc, &stats).map_err(TestCaseError::fail)
            }) {
                Ok(_) => {}
                Err(TestError::Fail(why, minimal)) => {
                    let (why, minimal) =
                        shrink_configuration(env, &program, config_tree, minimal, why.to_string());
                    panic!(
                        "{why}\n(shrunk to {} frame(s); found in configuration #{configs} after \
                         {done} frames that agreed; the datapath was loaded once and \
                         reconfigured by reload plans)\nreproduce: UDPLB_FUZZ_SEED={seed:#x} \
                         UDPLB_FUZZ_CASES={frames} cargo test --release --test differential -- \
                         --nocapture\n",
                        minimal.shots.len(),
                    )
                }
                Err(TestError::Abort(why)) => panic!("proptest aborted: {why}"),
            }
            done += n;
            in_configuration += n;
        }
        if last_note.elapsed() > Duration::from_secs(30) {
            last_note = Instant::now();
            eprintln!(
                "differential: {done}/{frames} frames, {configs} configurations, {:.0?}",
                start.elapsed()
            );
        }
    }
    let elapsed = start.elapsed();
    println!(
        "differential: {done} frames in {configs} configurations agreed, {elapsed:.1?}, \
         {:.0} frames/s (seed {seed:#x})\nby the model's verdict reason: {}",
        done as f64 / elapsed.as_secs_f64(),
        stats.borrow()
    );
}

/// Shrinks the configuration of a failing batch whose frames proptest
/// already shrank: simpler configurations are kept while the frames still
/// diverge on them (30 s at most). Returns the report and the scenario.
fn shrink_configuration(
    env: &Env,
    program: &RefCell<Program>,
    mut tree: impl ValueTree<Value = (Vec<String>, Option<Hash>, Config)>,
    mut minimal: Scenario,
    mut why: String,
) -> (String, Scenario) {
    let start = Instant::now();
    let stats = RefCell::new(Stats::default());
    if !tree.simplify() {
        return (why, minimal);
    }
    while start.elapsed() < Duration::from_secs(30) {
        let (specs, maglev, _) = tree.current();
        let sc = Scenario {
            specs,
            maglev,
            shots: minimal.shots.clone(),
        };
        match check(env, &mut program.borrow_mut(), &sc, &stats) {
            Err(w) => {
                (why, minimal) = (w, sc);
                if !tree.simplify() {
                    break;
                }
            }
            Ok(()) => {
                if !tree.complicate() {
                    break;
                }
            }
        }
    }
    (why, minimal)
}

#[test]
pub(crate) fn model_and_program_agree_on_random_frames() {
    let env = Env::setup(0);
    run_differential(&env, frames_wanted(), seed());
}

// ===========================================================================
// Fixed cases: what the property found or rests on, checked on every run
// whatever the seed.

pub(crate) fn v4_frame(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> FrameDesc {
    FrameDesc {
        macs: [2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1],
        tags: vec![],
        ip: Ip::V4 {
            src,
            dst,
            options: vec![],
            tos: 0,
            id: 0x1234,
            df: false,
            frag: Frag::Whole,
            ttl: 64,
        },
        sport,
        dport,
        payload: b"udplb".to_vec(),
        short_udp_len: None,
        csum: Csum::Valid,
        trailer: vec![],
        icmp: None,
    }
}

pub(crate) fn v6_frame(src: Ipv6Addr, sport: u16, dst: Ipv6Addr, dport: u16) -> FrameDesc {
    FrameDesc {
        ip: Ip::V6 {
            src,
            dst,
            class_flow: 0,
            hop_limit: 64,
        },
        ..v4_frame(Ipv4Addr::UNSPECIFIED, sport, Ipv4Addr::UNSPECIFIED, dport)
    }
}

/// Runs fixed scenarios; panics with every divergence report.
pub(crate) fn check_fixed(env: &Env, scenarios: &[Scenario]) {
    let stats = RefCell::new(Stats::default());
    let mut program = Program::load();
    let failures: Vec<String> = scenarios
        .iter()
        .filter_map(|sc| check(env, &mut program, sc, &stats).err())
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} fixed scenarios diverged:\n\n{}",
        failures.len(),
        scenarios.len(),
        failures.join("\n\n")
    );
}

/// BPF_PROG_TEST_RUN without a context (and with ingress_ifindex 0) runs
/// the program as if on lo: a port-only backend's reply is rewritten there,
/// and not on a veth. The model is told so; this pins it down.
#[test]
pub(crate) fn no_context_runs_as_if_on_lo() {
    let env = Env::setup(1);
    let client = Ipv4Addr::new(192, 0, 2, 10);
    let host = Ipv4Addr::new(192, 0, 2, 1);
    let reply = v4_frame(host, 2000, client, 40000);
    let shots: Vec<Shot> = [
        Ingress::NoContext,
        Ingress::ContextZero,
        Ingress::Lo,
        Ingress::Veth,
    ]
    .into_iter()
    .map(|i| Shot::new(i, reply.clone(), vec![]))
    .collect();
    let cfg = ModelConfig::from_config(&Config::from_specs(&["1000=2000"]).unwrap());
    let reasons: Vec<&str> = shots
        .iter()
        .map(|s| {
            let o = model::run(
                &s.frame,
                &cfg,
                &mut ModelState::default(),
                s.ingress.on_loopback(),
            );
            reason_name(o.reason)
        })
        .collect();
    assert_eq!(reasons, ["reply", "reply", "reply", "no_frontend"]);
    check_fixed(
        &env,
        &[Scenario {
            specs: vec!["1000=2000".into()],
            maglev: None,
            shots,
        }],
    );
}

/// The unspecified source address (0.0.0.0, ::) is a packet address like
/// any other, not the wildcard: on a wire-facing interface a datagram from
/// 0.0.0.0:<backend port of a port-only frontend> is a stranger's and must
/// be left alone (README: "Replies matched by port alone are rewritten by
/// XDP only on lo, so that a stranger on the wire using such a port as its
/// source is never touched").
#[test]
pub(crate) fn unspecified_source_on_the_wire_is_not_a_reply() {
    let env = Env::setup(1);
    let client4 = Ipv4Addr::new(192, 0, 2, 10);
    let client6: Ipv6Addr = "2001:db8::10".parse().unwrap();
    let zero4 = v4_frame(Ipv4Addr::UNSPECIFIED, 2000, client4, 40000);
    let zero6 = v6_frame(Ipv6Addr::UNSPECIFIED, 2000, client6, 40000);
    // One scenario per frame, so that each divergence is reported.
    let scenarios: Vec<Scenario> = [
        (Ingress::Veth, zero4.clone()),
        (Ingress::Veth, zero6.clone()),
        // On lo they are matched by port, like any other source address.
        (Ingress::NoContext, zero4),
        (Ingress::NoContext, zero6),
        // An exact frontend's backend from 0.0.0.0 is no reply anywhere.
        (
            Ingress::NoContext,
            v4_frame(Ipv4Addr::UNSPECIFIED, 2001, client4, 40000),
        ),
    ]
    .into_iter()
    .map(|(ingress, frame)| Scenario {
        specs: vec!["1000=2000".into(), "198.18.0.1:1001=2001".into()],
        maglev: None,
        shots: vec![Shot::new(ingress, frame, vec![])],
    })
    .collect();
    check_fixed(&env, &scenarios);
}
