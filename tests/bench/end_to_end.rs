//! Case (b): datagrams per second delivered to three local backend ports,
//! sent by a client across a veth pair, through each balancer.
//!
//!   client netns                    balancer netns
//!   sender (CPU 0) ── veth-a ══ veth-b ── [balancer] ── backends 9876-9878
//!   198.18.0.1                      198.18.0.2          receivers (CPU 1)
//!
//! Cases: direct (the client sends to the three backend ports itself: the
//! limit), udplb (XDP on veth-b), nftables DNAT (`numgen inc mod 3`), nginx
//! (UDP stream proxy), and two informative ones that locate udplb's cost:
//! direct with GRO on veth-b (veth's NAPI receive mode, which an XDP program
//! also turns on, without XDP) and udplb in generic XDP mode. Each case has
//! its own pair of namespaces, set up once; rounds run the cases in turn
//! (A B C ... A B C ...), each for `DURATION`.
//!
//! Where the CPU goes: the whole receive path, including XDP or netfilter,
//! runs on CPU 0 inside the sender's system calls (shared/notes/kernel.md),
//! so CPU 0 is busy in every case and what a case costs shows as fewer
//! datagrams per second. CPU 1 runs the receivers (and nginx). Figures per
//! second of sender CPU time, and softirq CPU per datagram, separate the
//! path's cost from the share of CPU other processes took (cpu.rs).

use std::time::Duration;

use anyhow::{bail, Result};

use super::balancers::{install_nft_dnat, start_nginx, start_udplb, Nginx, Proc};
use super::cpu::{process_secs, CpuTimes};
use super::deps::Tools;
use super::netns::{veth_pair, Netns};
use super::receivers::Receivers;
use super::report::{CaseResult, Report, Section};
use super::sender::{self, FLOWS};
use super::stats::Samples;
use super::stop_requested;

/// Sending time of one measured run.
pub const DURATION: Duration = Duration::from_secs(3);
pub const ROUNDS: usize = 7;
/// One unrecorded run per case first: conntrack entries, nginx sessions,
/// caches.
const WARMUP: Duration = Duration::from_secs(1);
pub const SENDER_CPU: usize = 0;
pub const RECEIVER_CPU: usize = 1;
const FRONTEND: u16 = 9875;
const BACKENDS: [u16; 3] = [9876, 9877, 9878];

/// The cases, by the names the command line and results.json use.
pub const CASES: &[&str] = &[
    "direct",
    "udplb",
    "nftables",
    "nginx",
    "direct_gro",
    "udplb_generic",
];

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Direct,
    Udplb,
    Nftables,
    Nginx,
    /// Informative: direct, with GRO on the balancer's veth, which (like an
    /// XDP program) puts that veth's receive side in NAPI mode.
    DirectGro,
    /// Informative: udplb with generic (skb) XDP instead of native.
    UdplbGeneric,
}

const KINDS: [Kind; 6] = [
    Kind::Direct,
    Kind::Udplb,
    Kind::Nftables,
    Kind::Nginx,
    Kind::DirectGro,
    Kind::UdplbGeneric,
];

impl Kind {
    fn key(self) -> &'static str {
        match self {
            Kind::Direct => "direct",
            Kind::Udplb => "udplb",
            Kind::Nftables => "nftables",
            Kind::Nginx => "nginx",
            Kind::DirectGro => "direct_gro",
            Kind::UdplbGeneric => "udplb_generic",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Kind::Direct => "direct to 3 backends (limit)",
            Kind::Udplb => "udplb (XDP on veth)",
            Kind::Nftables => "nftables DNAT numgen inc mod 3",
            Kind::Nginx => "nginx stream proxy (UDP)",
            Kind::DirectGro => "(info) direct, GRO on balancer veth",
            Kind::UdplbGeneric => "(info) udplb, generic XDP",
        }
    }
}

/// One case's namespaces and balancer, kept for all rounds.
struct Setup {
    kind: Kind,
    // Fields drop in order: the balancer stops before its namespaces go.
    udplb: Option<Proc>,
    nginx: Option<Nginx>,
    client: Netns,
    balancer: Netns,
}

impl Setup {
    fn new(kind: Kind) -> Result<Setup> {
        let client = Netns::new(&format!("{}-c", kind.key()))?;
        let balancer = Netns::new(&format!("{}-b", kind.key()))?;
        veth_pair(&client, &balancer)?;
        let mut s = Setup {
            kind,
            udplb: None,
            nginx: None,
            client,
            balancer,
        };
        let spec = format!("{FRONTEND}={},{},{}", BACKENDS[0], BACKENDS[1], BACKENDS[2]);
        match kind {
            Kind::Direct => {}
            Kind::Udplb => s.udplb = Some(start_udplb(&s.balancer, &[], "veth-b", &spec)?),
            Kind::UdplbGeneric => {
                let generic = ["--xdp-mode", "generic"];
                s.udplb = Some(start_udplb(&s.balancer, &generic, "veth-b", &spec)?)
            }
            Kind::DirectGro => {
                s.balancer.exec(&["ethtool", "-K", "veth-b", "gro", "on"])?;
            }
            Kind::Nftables => install_nft_dnat(&s.balancer, FRONTEND, &BACKENDS)?,
            Kind::Nginx => {
                s.nginx = Some(start_nginx(&s.balancer, FRONTEND, &BACKENDS, RECEIVER_CPU)?)
            }
        }
        Ok(s)
    }

    /// Where the client's flows go: the backends themselves, or the frontend.
    fn dst_ports(&self) -> Vec<u16> {
        match self.kind {
            Kind::Direct | Kind::DirectGro => BACKENDS.to_vec(),
            _ => vec![FRONTEND],
        }
    }

    /// The balancer's own processes, whose CPU time counts on its side.
    fn balancer_pids(&self) -> Vec<u32> {
        let mut pids = Vec::new();
        pids.extend(self.udplb.as_ref().map(Proc::pid));
        pids.extend(self.nginx.as_ref().map(|n| n.proc.pid()));
        pids
    }
}

/// What one run measured.
struct Run {
    sent: u64,
    /// sendmmsg calls that sent nothing.
    failed_calls: u64,
    delivered: u64,
    secs: f64,
    /// CPU time the sender's CPU gave the sending loop (sender::Sent).
    sender_cpu: f64,
    per_port: Vec<u64>,
    /// Softirq on all CPUs + the balancer's processes, seconds.
    balancer_cpu: f64,
    /// Share of CPU 0's busy time in softirq (the receive path).
    sender_cpu_softirq: f64,
    steal: f64,
    rcvbuf_errors: u64,
}

fn run_once(s: &Setup, duration: Duration) -> Result<Run> {
    let rx = Receivers::start(&s.balancer, RECEIVER_CPU, &BACKENDS)?;
    let errors_before = s.balancer.snmp("Udp", "RcvbufErrors")?;
    let pids = s.balancer_pids();
    let proc_before: f64 = pids.iter().map(|&p| process_secs(p)).sum();
    let cpu_before = CpuTimes::now()?;
    let sent = sender::send(&s.client, "veth-a", SENDER_CPU, s.dst_ports(), duration)
        .join()
        .map_err(|_| anyhow::anyhow!("sender thread panicked"))??;
    // Everything still queued when the sender stops is delivered and counted.
    let per_port = rx.finish()?;
    let cpu_after = CpuTimes::now()?;
    let proc_after: f64 = pids.iter().map(|&p| process_secs(p)).sum();
    Ok(Run {
        sent: sent.datagrams,
        failed_calls: sent.failed_calls,
        delivered: per_port.iter().sum(),
        secs: sent.secs,
        sender_cpu: sent.cpu_secs,
        per_port,
        balancer_cpu: cpu_after.softirq_since(&cpu_before) + (proc_after - proc_before),
        sender_cpu_softirq: cpu_after.softirq_share(&cpu_before, SENDER_CPU),
        steal: cpu_after.steal_since(&cpu_before),
        rcvbuf_errors: s.balancer.snmp("Udp", "RcvbufErrors")? - errors_before,
    })
}

/// Per-case samples, one value per round.
#[derive(Default)]
struct Collected {
    rate: Samples,
    per_cpu_rate: Samples,
    sender_cpu_share: Samples,
    cpu: Samples,
    loss: Samples,
    min_share: Samples,
    softirq_share: Samples,
    steal: Samples,
    rcvbuf_errors: Samples,
}

impl Collected {
    fn add(&mut self, r: &Run) {
        let delivered = r.delivered as f64;
        self.rate.push(delivered / r.secs / 1e3);
        self.per_cpu_rate.push(delivered / r.sender_cpu / 1e3);
        self.sender_cpu_share.push(100.0 * r.sender_cpu / r.secs);
        self.cpu.push(r.balancer_cpu / (delivered / 1e6));
        self.loss
            .push(100.0 * (1.0 - delivered / r.sent.max(1) as f64));
        let min = r.per_port.iter().copied().min().unwrap_or(0);
        self.min_share.push(100.0 * min as f64 / delivered);
        self.softirq_share.push(100.0 * r.sender_cpu_softirq);
        self.steal.push(r.steal);
        self.rcvbuf_errors.push(r.rcvbuf_errors as f64);
    }
}

/// Runs every case, or those named in `only`.
pub fn run(report: &mut Report, tools: &Tools, only: &[String]) -> Result<()> {
    let mut setups = Vec::new();
    for kind in KINDS
        .into_iter()
        .filter(|k| only.is_empty() || only.iter().any(|o| o == k.key()))
    {
        let missing = match kind {
            Kind::Nftables => tools.nft.as_ref().err(),
            Kind::Nginx => tools.nginx.as_ref().err(),
            _ => None,
        };
        if let Some(why) = missing {
            println!("end to end: skipping {}: {why}", kind.key());
            report
                .notes
                .push(format!("end to end: {} skipped: {why}", kind.key()));
            continue;
        }
        match Setup::new(kind) {
            Ok(s) => setups.push((s, Collected::default())),
            // udplb and direct are what the bench is for; the others are
            // references and may be skipped with their reason.
            Err(e) if !matches!(kind, Kind::Direct | Kind::Udplb) => {
                println!("end to end: skipping {}: {e:#}", kind.key());
                report
                    .notes
                    .push(format!("end to end: {} skipped: {e:#}", kind.key()));
            }
            Err(e) => return Err(e),
        }
    }
    println!(
        "end to end: {} cases, {FLOWS} flows, {ROUNDS} rounds of {DURATION:?} each (+ warm-up) ...",
        setups.len()
    );
    let _priority = super::priority::Raised::new();
    for (s, _) in &setups {
        run_once(s, WARMUP)?;
    }
    for round in 0..ROUNDS {
        for (s, c) in &mut setups {
            if stop_requested() {
                bail!("interrupted");
            }
            let r = run_once(s, DURATION)?;
            if r.delivered == 0 {
                bail!("{}: no datagram reached the backends", s.kind.key());
            }
            println!(
                "end to end: round {}/{ROUNDS} {:<13} {:>7.0} k/s delivered, {:>7.0} k per \
                 sender CPU-second ({} sent, {} delivered, split {:?}, {} failed sendmmsg calls)",
                round + 1,
                s.kind.key(),
                r.delivered as f64 / r.secs / 1e3,
                r.delivered as f64 / r.sender_cpu / 1e3,
                r.sent,
                r.delivered,
                r.per_port,
                r.failed_calls
            );
            c.add(&r);
        }
    }
    // udplb's own counters, as a check that it balanced the traffic.
    for (s, _) in &mut setups {
        if let Some(u) = s.udplb.as_mut() {
            let out = u.stop();
            if let Some(line) = out.lines().find(|l| l.contains("verdicts:")) {
                println!("end to end: {} final {}", s.kind.key(), line.trim());
            }
        }
    }
    report.sections.extend(sections(&setups));
    Ok(())
}

fn sections(setups: &[(Setup, Collected)]) -> Vec<Section> {
    let find = |k: Kind| setups.iter().find(|(s, _)| s.kind == k).map(|(_, c)| c);
    let (direct, nft) = (find(Kind::Direct), find(Kind::Nftables));
    // A row with its ratios to direct and to nftables.
    let row = |s: &Setup, unit: &str, pick: fn(&Collected) -> &Samples, c: &Collected| {
        let mut r = CaseResult::new(s.kind.key(), s.kind.label(), unit, pick(c).clone());
        for (name, base) in [("direct", direct), ("nftables", nft)] {
            if let Some(b) = base {
                r.ratios.push((name.into(), pick(c).ratio_to(pick(b))));
            }
        }
        r
    };
    let (mut rates, mut per_cpu, mut cpus) = (Vec::new(), Vec::new(), Vec::new());
    for (s, c) in setups {
        let mut r = row(s, "kdgram/s", |c| &c.rate, c);
        r.extra.push(("loss %".into(), c.loss.median()));
        r.extra
            .push(("rcvbuf drops".into(), c.rcvbuf_errors.median()));
        r.extra
            .push(("min backend share %".into(), c.min_share.median()));
        r.extra
            .push(("sender got CPU %".into(), c.sender_cpu_share.median()));
        r.extra
            .push(("CPU0 softirq %".into(), c.softirq_share.median()));
        r.extra.push(("steal s".into(), c.steal.median()));
        rates.push(r);
        per_cpu.push(row(s, "kdgram/cpu-s", |c| &c.per_cpu_rate, c));

        let mut u = row(s, "cpu-s/Mdgram", |c| &c.cpu, c);
        if let Some(b) = direct {
            let above: Vec<f64> = c.cpu.0.iter().zip(&b.cpu.0).map(|(a, b)| a - b).collect();
            u.extra
                .push(("above direct".into(), super::stats::median(&above)));
        }
        cpus.push(u);
    }
    let method = format!(
        "{FLOWS} flows, {}-byte datagrams as raw frames (AF_PACKET sendmmsg x{}) from CPU \
         {SENDER_CPU}, \
         non-blocking recvmmsg receivers on CPU {RECEIVER_CPU}, nice {}, {}s per run, {ROUNDS} \
         rounds interleaved; ratios = median of per-round ratios",
        super::packets::PAYLOAD,
        sender::BATCH,
        super::netns::NICE,
        DURATION.as_secs()
    );
    vec![
        Section {
            key: "e2e".into(),
            title: "End to end, local backends: datagrams/s delivered".into(),
            method,
            cases: rates,
        },
        Section {
            key: "e2e_per_cpu".into(),
            title: "End to end: datagrams delivered per second of sender-CPU time".into(),
            method: "delivered / CPU time of the sending thread (its system calls, with the \
                     receive path inline) + ksoftirqd on its CPU: the path's cost, whatever \
                     share of the CPU other processes took"
                .into(),
            cases: per_cpu,
        },
        Section {
            key: "e2e_cpu".into(),
            title: "End to end: balancer-side CPU per million datagrams delivered".into(),
            method: "softirq time on all CPUs (/proc/stat: the receive path incl. XDP/netfilter) \
                     + the balancer's own processes (/proc/PID/stat), per million delivered"
                .into(),
            cases: cpus,
        },
    ]
}

#[cfg(test)]
mod tests {
    #[test]
    fn case_names_match_the_kinds() {
        let keys: Vec<&str> = super::KINDS.iter().map(|k| k.key()).collect();
        assert_eq!(keys, super::CASES);
    }
}
