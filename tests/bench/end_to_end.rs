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
//! runs on CPU 0 inside the sender's system calls (as seen on the 6.18 hosts these were measured on),
//! so CPU 0 is busy in every case and what a case costs shows as fewer
//! datagrams per second. CPU 1 runs the receivers (and nginx). Figures per
//! second of sender CPU time, and softirq CPU per datagram, separate the
//! path's cost from the share of CPU other processes took (cpu.rs).

use std::net::SocketAddrV4;
use std::time::Duration;

use anyhow::{bail, Result};

use super::balancers::{install_nft_dnat, local, start_nginx, start_udplb, Nginx, Proc};
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
        let client = super::netns::create(&format!("{}-c", kind.key()))?;
        let balancer = super::netns::create(&format!("{}-b", kind.key()))?;
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
                s.balancer
                    .try_exec(&["ethtool", "-K", "veth-b", "gro", "on"])?;
            }
            Kind::Nftables => install_nft_dnat(&s.balancer, None, FRONTEND, &BACKENDS.map(local))?,
            Kind::Nginx => {
                s.nginx = Some(start_nginx(&s.balancer, FRONTEND, &BACKENDS, RECEIVER_CPU)?)
            }
        }
        Ok(s)
    }
}

impl Case for Setup {
    fn key(&self) -> &'static str {
        self.kind.key()
    }

    fn label(&self) -> &'static str {
        self.kind.label()
    }

    fn path(&self) -> Path<'_> {
        Path {
            client: &self.client,
            // The client's flows go to the backends themselves, or to the
            // frontend.
            dsts: match self.kind {
                Kind::Direct | Kind::DirectGro => BACKENDS.map(local).to_vec(),
                _ => vec![local(FRONTEND)],
            },
            hosts: &self.balancer,
            backends: BACKENDS
                .map(|p| SocketAddrV4::new([0, 0, 0, 0].into(), p))
                .to_vec(),
            balancer: Some(&self.balancer),
            pids: self
                .udplb
                .iter()
                .map(Proc::pid)
                .chain(self.nginx.iter().map(|n| n.proc.pid()))
                .collect(),
        }
    }

    fn udplb(&mut self) -> Option<&mut Proc> {
        self.udplb.as_mut()
    }
}

/// What a run needs to know about one case: where the client sends, where
/// the backends' sockets are, and what is the balancer's.
pub struct Path<'a> {
    /// The sender's namespace; it sends on its veth-a.
    pub client: &'a Netns,
    /// Flow i goes to `dsts[i % dsts.len()]`.
    pub dsts: Vec<SocketAddrV4>,
    /// The namespace the backends' sockets are in, and their addresses.
    pub hosts: &'a Netns,
    pub backends: Vec<SocketAddrV4>,
    /// The balancer's namespace (its kernel's forwarding counter; none in
    /// a reference without a balancer) and its own processes, whose CPU
    /// time counts on its side.
    pub balancer: Option<&'a Netns>,
    pub pids: Vec<u32>,
}

/// One end-to-end case, set up once and measured in every round.
pub trait Case {
    fn key(&self) -> &'static str;
    /// What the tables call the case.
    fn label(&self) -> &'static str;
    fn path(&self) -> Path<'_>;
    /// The udplb process, if the case runs one: its final counters are
    /// printed as a check that it balanced the traffic.
    fn udplb(&mut self) -> Option<&mut Proc>;
}

/// What one run measured.
pub struct Run {
    pub sent: u64,
    /// sendmmsg calls that sent nothing.
    pub failed_calls: u64,
    pub delivered: u64,
    pub secs: f64,
    /// CPU time the sender's CPU gave the sending loop (sender::Sent).
    pub sender_cpu: f64,
    pub per_port: Vec<u64>,
    /// Softirq on all CPUs + the balancer's processes, seconds.
    pub balancer_cpu: f64,
    /// Share of CPU 0's busy time in softirq (the receive path).
    pub sender_cpu_softirq: f64,
    pub steal: f64,
    pub rcvbuf_errors: u64,
    /// Datagrams the balancer's kernel forwarded (Ip ForwDatagrams).
    pub kernel_forwarded: u64,
    /// UDP checksum errors where the backends are (Udp InCsumErrors).
    pub csum_errors: u64,
}

pub fn run_once(p: &Path, duration: Duration) -> Result<Run> {
    let rx = Receivers::start(p.hosts, RECEIVER_CPU, &p.backends)?;
    let errors_before = p.hosts.try_snmp("Udp", "RcvbufErrors")?;
    let csum_before = p.hosts.try_snmp("Udp", "InCsumErrors")?;
    let forwarded = || -> Result<u64> {
        p.balancer
            .map_or(Ok(0), |b| b.try_snmp("Ip", "ForwDatagrams"))
    };
    let forwarded_before = forwarded()?;
    let proc_before: f64 = p.pids.iter().map(|&p| process_secs(p)).sum();
    let cpu_before = CpuTimes::now()?;
    let sent = sender::send(p.client, "veth-a", SENDER_CPU, p.dsts.clone(), duration)
        .join()
        .map_err(|_| anyhow::anyhow!("sender thread panicked"))??;
    // Everything still queued when the sender stops is delivered and counted.
    let per_port = rx.finish()?;
    let cpu_after = CpuTimes::now()?;
    let proc_after: f64 = p.pids.iter().map(|&p| process_secs(p)).sum();
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
        rcvbuf_errors: p.hosts.try_snmp("Udp", "RcvbufErrors")? - errors_before,
        kernel_forwarded: forwarded()? - forwarded_before,
        csum_errors: p.hosts.try_snmp("Udp", "InCsumErrors")? - csum_before,
    })
}

/// Per-case samples, one value per round.
#[derive(Default)]
pub struct Collected {
    rate: Samples,
    per_cpu_rate: Samples,
    sender_cpu_share: Samples,
    cpu: Samples,
    loss: Samples,
    min_share: Samples,
    softirq_share: Samples,
    steal: Samples,
    rcvbuf_errors: Samples,
    kernel_forwarded: Samples,
    csum_errors: Samples,
}

impl Collected {
    /// Datagrams delivered per second of sender-CPU time, per round.
    pub fn per_cpu_rate(&self) -> &Samples {
        &self.per_cpu_rate
    }

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
        self.kernel_forwarded
            .push(100.0 * r.kernel_forwarded as f64 / r.sent.max(1) as f64);
        self.csum_errors.push(r.csum_errors as f64);
    }
}

/// Measures `cases` in interleaved rounds (after one warm-up run each) and
/// returns their samples, in the same order. `what` names the section in
/// progress lines.
pub fn measure<C: Case>(what: &str, cases: &mut [C]) -> Result<Vec<Collected>> {
    println!(
        "{what}: {} cases, {FLOWS} flows, {ROUNDS} rounds of {DURATION:?} each (+ warm-up) ...",
        cases.len()
    );
    let _priority = super::priority::Raised::new();
    for c in cases.iter() {
        run_once(&c.path(), WARMUP)?;
    }
    let mut collected: Vec<Collected> = cases.iter().map(|_| Collected::default()).collect();
    for round in 0..ROUNDS {
        for (case, col) in cases.iter_mut().zip(&mut collected) {
            if stop_requested() {
                bail!("interrupted");
            }
            let r = run_once(&case.path(), DURATION)?;
            if r.delivered == 0 {
                // Say whether udplb is still there, and what it printed.
                let state = match case.udplb().map(|u| u.check_alive()) {
                    Some(Err(e)) => format!(": {e:#}"),
                    Some(Ok(())) => "; udplb is still running".into(),
                    None => String::new(),
                };
                bail!("{}: no datagram reached the backends{state}", case.key());
            }
            println!(
                "{what}: round {}/{ROUNDS} {:<15} {:>7.0} k/s delivered, {:>7.0} k per \
                 sender CPU-second ({} sent, {} delivered, split {:?}, {} failed sendmmsg calls, \
                 {} forwarded by the kernel)",
                round + 1,
                case.key(),
                r.delivered as f64 / r.secs / 1e3,
                r.delivered as f64 / r.sender_cpu / 1e3,
                r.sent,
                r.delivered,
                r.per_port,
                r.failed_calls,
                r.kernel_forwarded
            );
            col.add(&r);
        }
    }
    // udplb's own counters, as a check that it balanced the traffic.
    for c in cases.iter_mut() {
        let key = c.key();
        if let Some(u) = c.udplb() {
            let out = u.stop();
            if let Some(line) = out.lines().find(|l| l.contains("verdicts:")) {
                println!("{what}: {key} final {}", line.trim());
            }
        }
    }
    Ok(collected)
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
            skip(report, "end to end", kind.key(), why);
            continue;
        }
        match Setup::new(kind) {
            Ok(s) => setups.push(s),
            // udplb and direct are what the bench is for; the others are
            // references and may be skipped with their reason.
            Err(e) if !matches!(kind, Kind::Direct | Kind::Udplb) => {
                skip(report, "end to end", kind.key(), &format!("{e:#}"))
            }
            Err(e) => return Err(e),
        }
    }
    let collected = measure("end to end", &mut setups)?;
    let rows = rows(&setups, &collected);
    report.sections.extend(sections(
        &Layout {
            key: "e2e",
            what: "local backends",
            bases: &[("direct", "direct"), ("nftables", "nftables")],
            forwarding: false,
        },
        &rows,
    ));
    Ok(())
}

/// A case that cannot run here, printed and noted with the reason.
pub fn skip(report: &mut Report, what: &str, key: &str, why: &str) {
    println!("{what}: skipping {key}: {why}");
    report.notes.push(format!("{what}: {key} skipped: {why}"));
}

/// One measured case in the tables.
pub struct Row<'a> {
    pub key: &'static str,
    pub label: &'static str,
    pub c: &'a Collected,
}

/// The table rows of measured cases, in order.
pub fn rows<'a, C: Case>(cases: &[C], collected: &'a [Collected]) -> Vec<Row<'a>> {
    cases
        .iter()
        .zip(collected)
        .map(|(s, c)| Row {
            key: s.key(),
            label: s.label(),
            c,
        })
        .collect()
}

/// How a set of end-to-end cases is reported.
pub struct Layout<'a> {
    /// Section keys: `key`, `key_per_cpu`, `key_cpu`.
    pub key: &'a str,
    /// "local backends", "remote backends": in the titles.
    pub what: &'a str,
    /// (ratio name, case key): every row gets its ratio to each of these;
    /// the first is the limit, whose CPU cost the others are compared to.
    pub bases: &'a [(&'a str, &'a str)],
    /// Report the share the balancer's kernel forwarded and the backends'
    /// checksum errors (the remote cases).
    pub forwarding: bool,
}

pub fn sections(layout: &Layout, rows: &[Row]) -> Vec<Section> {
    let find = |key: &str| rows.iter().find(|r| r.key == key).map(|r| r.c);
    let bases: Vec<(&str, &Collected)> = layout
        .bases
        .iter()
        .filter_map(|&(name, key)| Some((name, find(key)?)))
        .collect();
    let limit = layout
        .bases
        .first()
        .and_then(|&(name, key)| Some((name, find(key)?)));
    // A row with its ratios to each base.
    let row = |r: &Row, unit: &str, pick: fn(&Collected) -> &Samples| {
        let mut out = CaseResult::new(r.key, r.label, unit, pick(r.c).clone());
        for (name, b) in &bases {
            out.ratios
                .push(((*name).into(), pick(r.c).ratio_to(pick(b))));
        }
        out
    };
    let (mut rates, mut per_cpu, mut cpus) = (Vec::new(), Vec::new(), Vec::new());
    for r in rows {
        let c = r.c;
        let mut rate = row(r, "kdgram/s", |c| &c.rate);
        rate.extra.push(("loss %".into(), c.loss.median()));
        rate.extra
            .push(("rcvbuf drops".into(), c.rcvbuf_errors.median()));
        rate.extra
            .push(("min backend share %".into(), c.min_share.median()));
        if layout.forwarding {
            rate.extra
                .push(("kernel-forwarded %".into(), c.kernel_forwarded.median()));
            rate.extra
                .push(("csum errors".into(), c.csum_errors.median()));
        }
        rate.extra
            .push(("sender got CPU %".into(), c.sender_cpu_share.median()));
        rate.extra
            .push(("CPU0 softirq %".into(), c.softirq_share.median()));
        rate.extra.push(("steal s".into(), c.steal.median()));
        rates.push(rate);
        per_cpu.push(row(r, "kdgram/cpu-s", |c| &c.per_cpu_rate));

        let mut u = row(r, "cpu-s/Mdgram", |c| &c.cpu);
        if let Some((name, b)) = limit {
            let above: Vec<f64> = c.cpu.0.iter().zip(&b.cpu.0).map(|(a, b)| a - b).collect();
            u.extra
                .push((format!("above {name}"), super::stats::median(&above)));
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
    let key = layout.key;
    let what = layout.what;
    vec![
        Section {
            key: key.into(),
            title: format!("End to end, {what}: datagrams/s delivered"),
            method,
            cases: rates,
        },
        Section {
            key: format!("{key}_per_cpu"),
            title: format!("End to end, {what}: datagrams delivered per second of sender-CPU time"),
            method: "delivered / CPU time of the sending thread (its system calls, with the \
                     receive path inline) + ksoftirqd on its CPU: the path's cost, whatever \
                     share of the CPU other processes took"
                .into(),
            cases: per_cpu,
        },
        Section {
            key: format!("{key}_cpu"),
            title: format!("End to end, {what}: balancer-side CPU per million datagrams delivered"),
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
