//! The one test-run runner, for the XDP program and the TC egress program,
//! in the shape of Katran's `BpfTester`: a fixture is a table of cases, each
//! a description, an input packet, the expected verdict, the expected
//! output bytes and the expected counter deltas. Every case runs once
//! through BPF_PROG_TEST_RUN (repeat 1: a repeated run would see the packet
//! it already rewrote), its output is compared byte for byte, and any
//! mismatch fails the test, naming the case and showing a hex diff.
//!
//! Built on libbpf-rs's safe `ProgramMut::test_run` over the programs
//! `Datapath` hands out (`xdp_program()`, `egress_prog()`,
//! `noop_program()`); [`run_timed`] is the same call with a repeat count,
//! for the benchmark.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Context, Result};
use libbpf_rs::{ProgramInput, ProgramMut};
use udplb::abi::{
    Counter, Passive, EGRESS_VERDICT_NAMES, REASON_COUNT, REASON_NAMES,
    UDPLB_EGRESS_ICMP_TRANSLATED, UDPLB_EGRESS_REPLY, UDPLB_EGRESS_UNTOUCHED,
    UDPLB_REASON_BALANCED, UDPLB_REASON_REPLY,
};
use udplb::config::Config;
use udplb::datapath::{Counters, Datapath};
use udplb::plan::{Layout, State};

use super::hex::{hex_diff, hex_dump};
use super::packets::{Frame, Port, Udp, ETH_P_IP, ETH_P_IPV6};

/// XDP verdicts.
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;
pub const XDP_REDIRECT: u32 = 4;
/// The only verdict udplb_egress returns: TC_ACT_UNSPEC / TCX_NEXT (-1),
/// "no opinion", so programs after it on the interface still run.
pub const TC_ACT_UNSPEC: u32 = -1i32 as u32;
/// Loopback, ifindex 1 in every network namespace: the one interface where
/// port-only reply keys are matched.
pub const LOOPBACK: u32 = 1;

/// One BPF_PROG_TEST_RUN of `prog` on `packet`, repeat 1. `ingress_ifindex`:
/// `None` runs without a context (the kernel uses lo's rx queue); `Some(i)`
/// passes an xdp_md whose ingress_ifindex is `i` (it must exist in the
/// caller's namespace; 0 keeps the default, lo). Returns the verdict and
/// the packet as the program left it.
pub fn run_once(
    prog: &ProgramMut<'_>,
    packet: &[u8],
    ingress_ifindex: Option<u32>,
) -> Result<(u32, Vec<u8>)> {
    // struct xdp_md: data, data_end, data_meta, ingress_ifindex,
    // rx_queue_index, egress_ifindex.
    let mut ctx: Option<Vec<u8>> = ingress_ifindex.map(|i| {
        [0, packet.len() as u32, 0, i, 0, 0]
            .iter()
            .flat_map(|v| v.to_ne_bytes())
            .collect()
    });
    let mut out = vec![0u8; packet.len() + 256];
    let input = ProgramInput {
        data_in: Some(packet),
        data_out: Some(&mut out),
        context_in: ctx.as_deref_mut(),
        repeat: 1,
        ..Default::default()
    };
    let output = prog.test_run(input);
    // Before 5.15 the kernel takes no xdp_md context: a run on lo (1, or 0:
    // the default) is the same run without one; another interface fails.
    let refused = |e: &libbpf_rs::Error| e.kind() == libbpf_rs::ErrorKind::InvalidInput;
    match (&output, ingress_ifindex) {
        (Err(e), Some(0 | LOOPBACK)) if refused(e) => return run_once(prog, packet, None),
        _ => {}
    }
    let output = output.map_err(|e| {
        let why = if ingress_ifindex.is_some() && refused(&e) {
            " (this fixture needs Linux 5.15 or later: older kernels take no xdp_md context \
             with an ingress_ifindex in BPF_PROG_TEST_RUN)"
        } else {
            ""
        };
        anyhow::Error::from(e).context(format!(
            "BPF_PROG_TEST_RUN of {} (ingress_ifindex {ingress_ifindex:?}){why}",
            prog.name().to_string_lossy()
        ))
    })?;
    let verdict = output.return_value;
    let len = output.data.map(|d| d.len()).unwrap_or(0);
    out.truncate(len);
    Ok((verdict, out))
}

/// What a timed BPF_PROG_TEST_RUN returned.
#[derive(Debug, Clone, Copy)]
pub struct Timed {
    pub verdict: u32,
    /// The kernel's figure: time per repetition (it divides the loop's
    /// total time by `repeat`; time spent rescheduled is left out).
    pub per_run: Duration,
}

/// Runs `prog` on `packet` `repeat` times in one call (no output buffer).
/// With `repeat > 1` every repetition after the first sees the packet as the
/// previous one left it.
pub fn run_timed(prog: &ProgramMut<'_>, packet: &[u8], repeat: u32) -> Result<Timed> {
    let input = ProgramInput {
        data_in: Some(packet),
        repeat,
        ..Default::default()
    };
    let output = prog
        .test_run(input)
        .with_context(|| format!("BPF_PROG_TEST_RUN of {}", prog.name().to_string_lossy()))?;
    Ok(Timed {
        verdict: output.return_value,
        per_run: output.duration,
    })
}

/// Which program a case runs through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prog {
    /// The XDP program (ingress): counts one reason per packet.
    Xdp,
    /// The TC egress program (replies leaving an interface): counts one
    /// egress verdict per packet (see [`egress_verdict`]). The test-run skb
    /// carries a dummy socket, as locally sent datagrams do.
    Egress,
}

/// Which counters besides the reason counter a case moves (by one packet,
/// and by the full frame length in bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hit {
    Nothing,
    /// Frontend and backend index, in configuration order.
    Backend(usize, usize),
    /// Frontend index.
    Reply(usize),
}

#[derive(Clone, Debug)]
pub struct Case {
    pub name: String,
    pub prog: Prog,
    pub input: Vec<u8>,
    /// `None`: plain BPF_PROG_TEST_RUN without a context, which the kernel
    /// runs on the loopback device's rx queue (ingress_ifindex 1, lo).
    /// `Some(i)`: with an xdp_md context whose ingress_ifindex is `i` (0
    /// keeps the default, lo). XDP only.
    pub ingress_ifindex: Option<u32>,
    pub verdict: u32,
    pub output: Vec<u8>,
    /// The reason counter that moves by one (XDP); `None`: none moves
    /// (the egress program counts no reasons, but an egress verdict:
    /// [`egress_verdict`]).
    pub reason: Option<u32>,
    pub hit: Hit,
    /// A passive signal besides the reply seen that `Hit::Reply` implies.
    pub passive: Option<PassiveHit>,
}

/// The passive counter of one backend (frontend and backend index) that a
/// case moves by one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PassiveHit {
    IcmpError(usize, usize),
    Reply(usize, usize),
}

impl Case {
    /// XDP: the frame must come out exactly as it went in, counted under
    /// `reason`.
    pub fn untouched(name: impl Into<String>, input: &[u8], reason: u32) -> Case {
        Case {
            name: name.into(),
            prog: Prog::Xdp,
            input: input.to_vec(),
            ingress_ifindex: None,
            verdict: XDP_PASS,
            output: input.to_vec(),
            reason: Some(reason),
            hit: Hit::Nothing,
            passive: None,
        }
    }

    /// XDP: a request balanced to `port`, backend `backend` of frontend
    /// `frontend`.
    pub fn balanced(
        name: impl Into<String>,
        f: &Frame,
        port: u16,
        (frontend, backend): (usize, usize),
    ) -> Case {
        Case {
            output: f.rewritten(Port::Destination, port),
            reason: Some(UDPLB_REASON_BALANCED),
            hit: Hit::Backend(frontend, backend),
            ..Case::untouched(name, &f.bytes, 0)
        }
    }

    /// XDP: a reply whose source port goes back to frontend `frontend`'s
    /// `port`.
    pub fn reply(name: impl Into<String>, f: &Frame, port: u16, frontend: usize) -> Case {
        Case {
            output: f.rewritten(Port::Source, port),
            reason: Some(UDPLB_REASON_REPLY),
            hit: Hit::Reply(frontend),
            ..Case::untouched(name, &f.bytes, 0)
        }
    }

    /// XDP: refused and dropped, untouched, counted under `reason` alone.
    pub fn dropped(name: impl Into<String>, input: &[u8], reason: u32) -> Case {
        Case {
            verdict: XDP_DROP,
            ..Case::untouched(name, input, reason)
        }
    }

    /// `input` leaves as `output`, both built from scratch by the packet
    /// builder (a rewrite of addresses or ports whose checksum covers bytes
    /// the frame does not carry, as in a first fragment, or a UDP length of
    /// 0). XDP passes it; TC answers TC_ACT_UNSPEC. No counter moves unless
    /// [`Case::counted`] and [`Case::hits`] say so.
    pub fn rebuilt(name: impl Into<String>, prog: Prog, input: &Udp, output: &Udp) -> Case {
        let (input, output) = (input.frame(), output.frame());
        let name = name.into();
        assert_eq!(input.len(), output.len(), "test bug: {name}");
        Case {
            name,
            prog,
            verdict: match prog {
                Prog::Xdp => XDP_PASS,
                Prog::Egress => TC_ACT_UNSPEC,
            },
            input,
            output,
            ingress_ifindex: None,
            reason: None,
            hit: Hit::Nothing,
            passive: None,
        }
    }

    /// The reason counter that moves by one (XDP).
    pub fn counted(mut self, reason: u32) -> Case {
        self.reason = Some(reason);
        self
    }

    /// The backend or reply counter that moves by one packet.
    pub fn hits(mut self, hit: Hit) -> Case {
        self.hit = hit;
        self
    }

    /// Runs the case with an xdp_md context arriving on `ifindex`.
    pub fn on(mut self, ifindex: u32) -> Case {
        self.ingress_ifindex = Some(ifindex);
        self
    }

    /// TC egress: `input` leaves byte for byte as it came, and no counter
    /// moves but the egress verdict `untouched`.
    pub fn egress_untouched(name: impl Into<String>, input: Vec<u8>) -> Case {
        Case {
            name: name.into(),
            prog: Prog::Egress,
            verdict: TC_ACT_UNSPEC,
            output: input.clone(),
            input,
            ingress_ifindex: None,
            reason: None,
            hit: Hit::Nothing,
            passive: None,
        }
    }

    /// TC egress: `dgram` leaves with its source port rewritten to `sport`
    /// (the expected frame rebuilt from scratch with that port) and counts
    /// one reply (and its frame length) for `frontend`.
    pub fn egress_reply(name: impl Into<String>, dgram: &Udp, sport: u16, frontend: usize) -> Case {
        let input = dgram.frame();
        let output = dgram.with_sport(sport).frame();
        assert_eq!(input.len(), output.len());
        assert_ne!(
            input, output,
            "a rewrite that changes nothing tests nothing"
        );
        Case {
            output,
            hit: Hit::Reply(frontend),
            ..Case::egress_untouched(name, input)
        }
    }
}

/// Whether BPF_PROG_TEST_RUN may refuse `frame` (EINVAL) before a TC
/// program runs: Linux 6.18 refuses an skb whose EtherType is IPv4 or IPv6
/// but which is shorter than Ethernet plus a minimal IP header. Such a frame
/// cannot reach the program through test runs; the same truncations behind
/// VLAN tags (EtherType 802.1Q/802.1ad, which the kernel does not check) do.
fn kernel_may_refuse(frame: &[u8]) -> bool {
    if frame.len() < 14 {
        return true;
    }
    match u16::from_be_bytes([frame[12], frame[13]]) {
        ETH_P_IP => frame.len() < 14 + 20,
        ETH_P_IPV6 => frame.len() < 14 + 40,
        _ => false,
    }
}

/// How a case went, when it did not fail.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Ran,
    /// The kernel refused the input (see [`kernel_may_refuse`]): an egress
    /// case that expected the frame untouched and no counter moved.
    RefusedByKernel,
}

/// Fails, loudly, without the privileges BPF_PROG_TEST_RUN needs: a
/// datapath test that passes because it did not run would be a lie.
pub fn require_privileges() {
    if let Err(e) =
        udplb::datapath::privileges::check_self(udplb::datapath::privileges::Task::Start)
    {
        panic!(
            "datapath tests need root (CAP_BPF): run `sudo make test` \
             or `sudo cargo test --test <name>` ({e})"
        );
    }
}

pub struct Fixture {
    pub dp: Datapath,
    /// Where the counters of each frontend and backend are.
    pub layout: Layout,
}

impl Fixture {
    /// A freshly loaded datapath (its own maps, all counters zero) holding
    /// the configuration `specs`, on a thread pinned to one CPU (the
    /// program runs on the caller's CPU and the round-robin cursor is
    /// per-CPU, so a migration between two runs would restart the
    /// rotation).
    pub fn new(specs: &[&str]) -> Fixture {
        let config = Config::from_specs(specs).expect("test configuration");
        Fixture::with_config(&config)
    }

    /// As [`Fixture::new`], for a configuration built by the test.
    pub fn with_config(config: &Config) -> Fixture {
        require_privileges();
        super::cpu::pin_to_one_cpu();
        let dp = Datapath::load().expect("loading the datapath");
        let state = dp.configure(config).expect("writing the maps");
        let layout = state.layout(config);
        Fixture { dp, layout }
    }

    pub fn counters(&self) -> Counters {
        self.dp.counters(&self.layout).expect("reading counters")
    }

    /// One XDP run; see [`Case::ingress_ifindex`].
    pub fn run(&self, ingress_ifindex: Option<u32>, packet: &[u8]) -> (u32, Vec<u8>) {
        run_once(self.dp.xdp_program(), packet, ingress_ifindex).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Runs one case; the error names what differed.
    pub fn check(&self, case: &Case) -> Result<Outcome, String> {
        let before = self.counters();
        let run = match case.prog {
            Prog::Xdp => run_once(self.dp.xdp_program(), &case.input, case.ingress_ifindex),
            Prog::Egress => {
                assert_eq!(case.ingress_ifindex, None, "test bug: no xdp_md for TC");
                run_once(self.dp.egress_prog(), &case.input, None)
            }
        };
        let after = self.counters();
        let (verdict, output) = match run {
            Ok(r) => r,
            Err(e) => {
                let einval = e.chain().any(|c| {
                    c.downcast_ref::<std::io::Error>()
                        .and_then(|io| io.raw_os_error())
                        == Some(nix::errno::Errno::EINVAL as i32)
                }) || format!("{e:#}").contains("os error 22");
                if case.prog == Prog::Egress
                    && einval
                    && kernel_may_refuse(&case.input)
                    && case.output == case.input
                {
                    if after != before {
                        return Err(format!(
                            "case {:?}: refused by the kernel, yet counters changed",
                            case.name
                        ));
                    }
                    return Ok(Outcome::RefusedByKernel);
                }
                return Err(format!(
                    "case {:?}: {e:#}\n  input:\n{}",
                    case.name,
                    hex_dump(&case.input)
                ));
            }
        };

        let mut want = before.clone();
        if let Some(r) = case.reason {
            want.reasons[r as usize] += 1;
        }
        if case.prog == Prog::Egress {
            want.egress[egress_verdict(case) as usize] += 1;
        }
        let frame_len = case.input.len() as u64;
        match case.hit {
            Hit::Nothing => {}
            Hit::Backend(f, b) => {
                want.backends[f][b].packets += 1;
                want.backends[f][b].bytes += frame_len;
            }
            Hit::Reply(f) => {
                want.replies[f].packets += 1;
                want.replies[f].bytes += frame_len;
                reply_seen(&before, &after, &mut want, f);
            }
        }
        match case.passive {
            None => {}
            Some(PassiveHit::IcmpError(f, b)) => want.passive[f][b].icmp_errors += 1,
            Some(PassiveHit::Reply(f, b)) => want.passive[f][b].replies += 1,
        }
        // Flow table events (Maglev frontends only) have fixtures of their
        // own, in tests/flows_datapath.rs.
        want.flow_events = after.flow_events;

        let mut err = String::new();
        if verdict != case.verdict {
            let _ = writeln!(err, "  verdict: expected {}, got {verdict}", case.verdict);
        }
        if output != case.output {
            let _ = writeln!(
                err,
                "  output differs ({} bytes expected, {} got):\n{}",
                case.output.len(),
                output.len(),
                hex_diff(&case.output, &output)
            );
        }
        if after != want {
            let _ = writeln!(
                err,
                "  counters: expected {}\n            got      {}",
                delta(&before, &want),
                delta(&before, &after)
            );
        }
        if err.is_empty() {
            return Ok(Outcome::Ran);
        }
        let on = match (case.prog, case.ingress_ifindex) {
            (Prog::Egress, _) => "TC egress".to_string(),
            (Prog::Xdp, None) => "XDP, no context".to_string(),
            (Prog::Xdp, Some(i)) => format!("XDP, ingress_ifindex {i}"),
        };
        Err(format!(
            "case {:?} ({on}):\n{err}  input:\n{}",
            case.name,
            hex_dump(&case.input)
        ))
    }

    /// Runs every case in order (later cases may depend on the round-robin
    /// position earlier ones left) and fails listing every mismatch.
    pub fn check_all(&self, cases: &[Case]) {
        assert!(!cases.is_empty());
        let mut failures = Vec::new();
        let mut refused = 0;
        for case in cases {
            match self.check(case) {
                Ok(Outcome::Ran) => {}
                Ok(Outcome::RefusedByKernel) => refused += 1,
                Err(e) => failures.push(e),
            }
        }
        if refused > 0 {
            eprintln!(
                "{} cases: {} ran, {refused} refused by BPF_PROG_TEST_RUN (short IP frame)",
                cases.len(),
                cases.len() - refused,
            );
        }
        if !failures.is_empty() {
            panic!(
                "{} of {} cases failed:\n\n{}",
                failures.len(),
                cases.len(),
                failures.join("\n")
            );
        }
    }
}

/// A datapath taken through configurations in turn, each plan from the
/// state the previous one left, as reloads take it: for cases about what a
/// reload leaves behind (a [`Fixture`] holds one configuration).
pub struct Reloads {
    pub dp: Datapath,
    pub state: State,
}

impl Reloads {
    /// A freshly loaded datapath, on a thread pinned to one CPU (see
    /// [`Fixture::new`]). No Default: it needs root and pins the thread.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Reloads {
        require_privileges();
        super::cpu::pin_to_one_cpu();
        Reloads {
            dp: Datapath::load().expect("loading the datapath"),
            state: State::default(),
        }
    }

    /// Plans and applies the configuration `specs`; returns it.
    pub fn to(&mut self, specs: &[&str]) -> Config {
        let config = Config::from_specs(specs).expect("test configuration");
        let (plan, next) = self.state.plan(&config);
        self.dp.apply(&plan).expect("writing the maps");
        self.state = next;
        config
    }

    /// One XDP run of `f`; see [`Case::ingress_ifindex`].
    pub fn run(&self, ingress_ifindex: Option<u32>, f: &Frame) -> (u32, Vec<u8>) {
        run_once(self.dp.xdp_program(), &f.bytes, ingress_ifindex)
            .unwrap_or_else(|e| panic!("{e:#}"))
    }
}

/// Only the given reasons have counted since `fx` was loaded, this many
/// times each (a reason listed twice counts the sum).
pub fn assert_reasons(fx: &Fixture, expected: &[(u32, u64)]) {
    let mut want = [0u64; REASON_COUNT];
    for &(r, n) in expected {
        want[r as usize] += n;
    }
    assert_eq!(fx.counters().reasons, want, "reason counters");
}

/// A reply of frontend `f` counts one reply seen from the backend that
/// sent it; the cases say which frontend, not which backend: expects
/// exactly one backend of `f` to have moved by one (and no other change,
/// which the caller's comparison of every counter checks).
pub fn reply_seen(before: &Counters, after: &Counters, want: &mut Counters, f: usize) {
    let moved: Vec<usize> = (0..before.passive[f].len())
        .filter(|&j| after.passive[f][j].replies == before.passive[f][j].replies + 1)
        .collect();
    // None moved: expect the first, so the mismatch shows.
    let j = if moved.len() == 1 { moved[0] } else { 0 };
    want.passive[f][j].replies += 1;
}

/// The egress verdict an egress case moves (one per packet): a reply it
/// rewrote (a local backend's: the test run's skb has a socket), an ICMP
/// error it translated (anything else it changes), or untouched.
fn egress_verdict(case: &Case) -> u32 {
    match case.hit {
        Hit::Reply(_) => UDPLB_EGRESS_REPLY,
        _ if case.output != case.input => UDPLB_EGRESS_ICMP_TRANSLATED,
        _ => UDPLB_EGRESS_UNTOUCHED,
    }
}

/// All-zero counters of a datapath whose frontends have `shape[f]`
/// backends each (a delta that nothing moved).
pub fn zero_counters(shape: &[usize]) -> Counters {
    Counters {
        backends: shape.iter().map(|&n| vec![Counter::default(); n]).collect(),
        replies: vec![Counter::default(); shape.len()],
        passive: shape.iter().map(|&n| vec![Passive::default(); n]).collect(),
        ..Counters::default()
    }
}

/// What moved from `before` to `after`, counter by counter (wrapping, so a
/// counter that went back shows as a huge delta rather than a panic).
pub fn counters_minus(after: &Counters, before: &Counters) -> Counters {
    let mut d = after.clone();
    each_counter(&mut d, before, u64::wrapping_sub);
    d
}

/// Adds `d` to `total`, counter by counter.
pub fn counters_add(total: &mut Counters, d: &Counters) {
    each_counter(total, d, u64::wrapping_add);
}

/// `a[i] = op(a[i], b[i])` for every counter `a` and `b` both have.
fn each_counter(a: &mut Counters, b: &Counters, op: fn(u64, u64) -> u64) {
    let all = |x: &mut u64, y: &u64| *x = op(*x, *y);
    for (x, y) in a.reasons.iter_mut().zip(&b.reasons) {
        all(x, y);
    }
    for (x, y) in a.egress.iter_mut().zip(&b.egress) {
        all(x, y);
    }
    for (x, y) in a.flow_events.iter_mut().zip(&b.flow_events) {
        all(x, y);
    }
    for (x, y) in a.quic_events.iter_mut().zip(&b.quic_events) {
        all(x, y);
    }
    for (xs, ys) in a.backends.iter_mut().zip(&b.backends) {
        for (x, y) in xs.iter_mut().zip(ys) {
            all(&mut x.packets, &y.packets);
            all(&mut x.bytes, &y.bytes);
        }
    }
    for (x, y) in a.replies.iter_mut().zip(&b.replies) {
        all(&mut x.packets, &y.packets);
        all(&mut x.bytes, &y.bytes);
    }
    for (xs, ys) in a.passive.iter_mut().zip(&b.passive) {
        for (x, y) in xs.iter_mut().zip(ys) {
            all(&mut x.icmp_errors, &y.icmp_errors);
            all(&mut x.replies, &y.replies);
        }
    }
    for (xs, ys) in a.live_flows.iter_mut().zip(&b.live_flows) {
        for (x, y) in xs.iter_mut().zip(ys) {
            all(x, y);
        }
    }
    all(&mut a.flow_entries, &b.flow_entries);
}

/// Nonzero counter changes from `a` to `b`, by name.
pub fn delta(a: &Counters, b: &Counters) -> String {
    let mut parts = Vec::new();
    for (i, (x, y)) in a.reasons.iter().zip(&b.reasons).enumerate() {
        if x != y {
            parts.push(format!("{} {:+}", REASON_NAMES[i], *y as i64 - *x as i64));
        }
    }
    for (i, (x, y)) in a.egress.iter().zip(&b.egress).enumerate() {
        if x != y {
            parts.push(format!(
                "egress {} {:+}",
                EGRESS_VERDICT_NAMES[i],
                *y as i64 - *x as i64
            ));
        }
    }
    for (f, (xs, ys)) in a.backends.iter().zip(&b.backends).enumerate() {
        for (i, (x, y)) in xs.iter().zip(ys).enumerate() {
            if x != y {
                parts.push(format!(
                    "backend[{f}][{i}] {:+} pkt {:+} B",
                    y.packets as i64 - x.packets as i64,
                    y.bytes as i64 - x.bytes as i64
                ));
            }
        }
    }
    for (f, (x, y)) in a.replies.iter().zip(&b.replies).enumerate() {
        if x != y {
            parts.push(format!(
                "reply[{f}] {:+} pkt {:+} B",
                y.packets as i64 - x.packets as i64,
                y.bytes as i64 - x.bytes as i64
            ));
        }
    }
    for (f, (xs, ys)) in a.passive.iter().zip(&b.passive).enumerate() {
        for (i, (x, y)) in xs.iter().zip(ys).enumerate() {
            if x != y {
                parts.push(format!(
                    "passive[{f}][{i}] icmp_errors {:+} replies {:+}",
                    y.icmp_errors as i64 - x.icmp_errors as i64,
                    y.replies as i64 - x.replies as i64
                ));
            }
        }
    }
    if parts.is_empty() {
        "(no change)".into()
    } else {
        parts.join(", ")
    }
}
