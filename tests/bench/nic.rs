//! Section `nic`: the balancer as it runs behind a NIC, on a core of its own.
//!
//! The socket-sender sections (end_to_end.rs, e2e_remote.rs) hand the
//! balancer's veth skbs built by a local sender: no XDP headroom, so native
//! XDP copies every frame, and the sender, the balancer and the receivers
//! share CPU 0. Here instead:
//!
//!   client netns                 balancer netns                      backend hosts
//!   generator (CPU 0) ─ veth-a ══ veth-b ─[balancer]─ (local sockets, CPU 0)
//!                                 napi/veth-b kthread: CPU 1
//!                                        └──── veth-c ══ veth-d ─ XDP_DROP sink
//!                                                         napi/veth-d kthread: CPU 0
//!
//! - Source: bench_gen (bench_nic.bpf.c) run with BPF_PROG_RUN and live
//!   frames on veth-a, returning XDP_TX: the frames reach veth-b as
//!   xdp_frames in pages with XDP headroom, the path a NIC driver gives XDP.
//!   255 flows (source ports 10000..), 64-byte payloads, valid checksums.
//! - The balancer: whatever runs in veth-b's receive, moved by threaded
//!   NAPI into its kernel thread, pinned to CPU 1 (napi.rs). That thread's
//!   run time is the balancer core's time; CPU 1's busy share and the
//!   thread's are reported.
//! - Local cases: backends are sockets in the balancer namespace, drained
//!   on CPU 0 (receivers.rs). Remote cases: the e2e_remote topology, the
//!   backend host's veth-d running an XDP_DROP sink whose NAPI thread is
//!   pinned to CPU 0 with the generator.
//! - Figures, per run: datagrams the balancer *completed* (local: delivered
//!   to a backend socket, or refused by a full one, which is the socket's
//!   doing; remote: forwarded, by the kernel's Ip ForwDatagrams, udplb's
//!   `forwarded` verdict, or the bare forwarder's counter), per second of the
//!   balancer core's time: the rate a core of this machine sustains. Also
//!   per wall second, ns per datagram, the core's busy share, the share that
//!   reached the backends (the sink shares CPU 0 with the generator).
//!
//! Cases, measured in interleaved rounds: local — direct delivery (the
//! limit), udplb native, udplb generic, nftables DNAT numgen; remote — kernel
//! routing, the bare XDP forwarder (fib lookup + redirect, no NAT: the XDP
//! limit), udplb native, udplb generic, nftables DNAT with forwarding, and
//! udplb's direct server return (ipip, gue, l2; native), whose sink counts
//! the encapsulated frames.

use std::io::{Read, Write};
use std::net::SocketAddrV4;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::balancers::{install_nft_dnat, local, start_udplb, Proc};
use super::cpu::CpuTimes;
use super::deps::Tools;
use super::e2e_remote::{backends, topology, FRONTEND_PORT, VIP};
use super::end_to_end::skip;
use super::napi::{NapiThread, ThreadTimes};
use super::netns::{veth_pair, Netns, Spawn, NICE};
use super::nic_progs::{generate, NicProgs};
use super::packets;
use super::receivers::Receivers;
use super::report::{CaseResult, Report, Section};
use super::stats::Samples;
use super::stop_requested;

pub const ROUNDS: usize = 5;
pub const DURATION: Duration = Duration::from_secs(2);
const WARMUP: Duration = Duration::from_millis(500);
/// The generator, the receivers and the sink.
pub const GENERATOR_CPU: usize = 0;
/// The balancer's core: veth-b's NAPI thread.
pub const BALANCER_CPU: usize = 1;
/// The sink's NAPI thread's nice value: it runs when it has work.
const SINK_NICE: i32 = -20;
const FLOWS: usize = super::sender::FLOWS;
const FIRST_SOURCE_PORT: u16 = 10000;
/// Bound on one generator run, whatever its duration.
const MAX_FRAMES: u64 = 100_000_000;
const FRONTEND: u16 = 9875;
const LOCAL_BACKENDS: [u16; 3] = [9876, 9877, 9878];

/// The cases, by the names the command line and results.json use.
pub const CASES: &[&str] = &[
    "nic_direct",
    "nic_udplb",
    "nic_udplb_generic",
    "nic_nftables",
    "nic_remote_routing",
    "nic_remote_xdp_fwd",
    "nic_remote_udplb",
    "nic_remote_udplb_generic",
    "nic_remote_nftables",
    "nic_remote_dsr_ipip",
    "nic_remote_dsr_gue",
    "nic_remote_dsr_l2",
];

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Direct,
    Udplb,
    UdplbGeneric,
    Nftables,
    Routing,
    XdpFwd,
    RemoteUdplb,
    RemoteUdplbGeneric,
    RemoteNftables,
    /// Direct server return: the request encapsulated or readdressed.
    Dsr(&'static str),
}

const KINDS: [Kind; 12] = [
    Kind::Direct,
    Kind::Udplb,
    Kind::UdplbGeneric,
    Kind::Nftables,
    Kind::Routing,
    Kind::XdpFwd,
    Kind::RemoteUdplb,
    Kind::RemoteUdplbGeneric,
    Kind::RemoteNftables,
    Kind::Dsr("ipip"),
    Kind::Dsr("gue:6080"),
    Kind::Dsr("l2"),
];

impl Kind {
    fn key(self) -> &'static str {
        CASES[KINDS.iter().position(|&k| k == self).expect("a kind")]
    }

    fn label(self) -> &'static str {
        match self {
            Kind::Direct => "direct delivery (limit)",
            Kind::Udplb => "udplb, native XDP",
            Kind::UdplbGeneric => "udplb, generic XDP",
            Kind::Nftables => "nftables DNAT numgen",
            Kind::Routing => "kernel routing, no NAT",
            Kind::XdpFwd => "bare XDP forwarder (XDP limit)",
            Kind::RemoteUdplb => "udplb remote, native XDP",
            Kind::RemoteUdplbGeneric => "udplb remote, generic XDP",
            Kind::RemoteNftables => "nftables DNAT + forwarding",
            Kind::Dsr("ipip") => "udplb DSR ipip, native XDP",
            Kind::Dsr("l2") => "udplb DSR l2, native XDP",
            Kind::Dsr(_) => "udplb DSR gue, native XDP",
        }
    }

    fn remote(self) -> bool {
        matches!(
            self,
            Kind::Routing
                | Kind::XdpFwd
                | Kind::RemoteUdplb
                | Kind::RemoteUdplbGeneric
                | Kind::RemoteNftables
                | Kind::Dsr(_)
        )
    }

    /// Where flow i goes: the backends themselves (no balancer, or one that
    /// only routes) or the frontend.
    fn dsts(self) -> Vec<SocketAddrV4> {
        match self {
            Kind::Direct => LOCAL_BACKENDS.map(local).to_vec(),
            Kind::Routing | Kind::XdpFwd => backends(),
            Kind::Udplb | Kind::UdplbGeneric | Kind::Nftables => vec![local(FRONTEND)],
            Kind::RemoteUdplb | Kind::RemoteUdplbGeneric | Kind::RemoteNftables | Kind::Dsr(_) => {
                vec![SocketAddrV4::new(VIP, FRONTEND_PORT)]
            }
        }
    }
}

/// The generator's frames: flow i from source port 10000 + i to
/// `dsts[i % dsts.len()]`, framed for the balancer's veth.
fn frames(dsts: &[SocketAddrV4]) -> Vec<Vec<u8>> {
    (0..FLOWS)
        .map(|i| {
            let d = dsts[i % dsts.len()];
            packets::udp4_to(d.ip().octets(), FIRST_SOURCE_PORT + i as u16, d.port())
        })
        .collect()
}

/// One case's namespaces, programs and balancer, kept for all rounds.
struct Setup {
    kind: Kind,
    // Fields drop in order: udplb stops and the bench's programs detach
    // before the namespaces go.
    udplb: Option<Proc>,
    progs: NicProgs,
    balancer_core: NapiThread,
    client: Netns,
    balancer: Netns,
    /// The backend host (remote cases), kept for the rounds.
    _hosts: Option<Netns>,
}

impl Setup {
    fn new(kind: Kind) -> Result<Setup> {
        let tag = format!("n{}", kind.key().trim_start_matches("nic_"));
        let client = super::netns::create(&format!("{tag}-c"))?;
        let balancer = super::netns::create(&format!("{tag}-b"))?;
        let mut progs = NicProgs::load()?;
        progs.set_frames(&frames(&kind.dsts()))?;
        let mut udplb = None;
        let hosts = if kind.remote() {
            let hosts = super::netns::create(&format!("{tag}-s"))?;
            topology(&client, &balancer, &hosts)?;
            progs.attach_sink(&hosts, "veth-d")?;
            Some(hosts)
        } else {
            veth_pair(&client, &balancer)?;
            // veth-b takes XDP_TX frames only with NAPI on (GRO, or an XDP
            // program); GRO gives every case the same receive mode.
            balancer.try_exec(&["ethtool", "-K", "veth-b", "gro", "on"])?;
            None
        };
        let remote_spec = || {
            let list: Vec<String> = backends().iter().map(|b| b.to_string()).collect();
            format!("{VIP}:{FRONTEND_PORT}={}", list.join(","))
        };
        let local_spec = format!(
            "{FRONTEND}={}",
            LOCAL_BACKENDS.map(|p| p.to_string()).join(",")
        );
        let generic: &[&str] = &["--xdp-mode", "generic"];
        match kind {
            Kind::Direct | Kind::Routing => {}
            Kind::Udplb => udplb = Some(start_udplb(&balancer, &[], "veth-b", &local_spec)?),
            Kind::UdplbGeneric => {
                udplb = Some(start_udplb(&balancer, generic, "veth-b", &local_spec)?)
            }
            Kind::Nftables => {
                install_nft_dnat(&balancer, None, FRONTEND, &LOCAL_BACKENDS.map(local))?
            }
            Kind::XdpFwd => progs.attach_forwarder(&balancer, "veth-b", "veth-c")?,
            Kind::RemoteUdplb => {
                udplb = Some(start_udplb(
                    &balancer,
                    &[],
                    "veth-b,veth-c",
                    &remote_spec(),
                )?)
            }
            Kind::RemoteUdplbGeneric => {
                let spec = remote_spec();
                udplb = Some(start_udplb(&balancer, generic, "veth-b,veth-c", &spec)?)
            }
            Kind::RemoteNftables => {
                install_nft_dnat(&balancer, Some(VIP), FRONTEND_PORT, &backends())?
            }
            Kind::Dsr(mode) => {
                // The backend hosts own the frontend's address: each
                // backend at the frontend's port, the balancer's veth-c
                // address the tunnel source.
                let list: Vec<String> = (backends().iter())
                    .map(|b| format!("{}:{FRONTEND_PORT}", b.ip()))
                    .collect();
                let spec = format!("{VIP}:{FRONTEND_PORT}={}", list.join(","));
                let options = ["--mode", mode, "--tunnel-source", "198.18.1.1"];
                let options = if mode == "l2" {
                    &options[..2]
                } else {
                    &options[..]
                };
                udplb = Some(start_udplb(&balancer, options, "veth-b,veth-c", &spec)?)
            }
        }
        // Threaded NAPI last: the balancer's XDP program or GRO has enabled
        // NAPI on veth-b by now, so its thread exists to be pinned.
        let balancer_core = NapiThread::start(&balancer, "veth-b", BALANCER_CPU, NICE)?;
        if let Some(h) = &hosts {
            // Above the generator it shares CPU 0 with: a sink that falls
            // behind drops frames the balancer completed.
            NapiThread::start(h, "veth-d", GENERATOR_CPU, SINK_NICE)?;
        }
        Ok(Setup {
            kind,
            udplb,
            progs,
            balancer_core,
            client,
            balancer,
            _hosts: hosts,
        })
    }

    /// The udplb interfaces, as on its command line (its control socket's
    /// name).
    fn udplb_ifaces(&self) -> &'static str {
        if self.kind.remote() {
            "veth-b,veth-c"
        } else {
            "veth-b"
        }
    }

    /// udplb's count of the datagrams it balanced (local) or forwarded
    /// (remote), from its control socket; 0 for other cases.
    fn udplb_count(&self) -> Result<u64> {
        if self.udplb.is_none() {
            return Ok(0);
        }
        let verdict = match self.kind {
            Kind::Dsr(_) => "dsr_sent",
            k if k.remote() => "forwarded",
            _ => "balanced",
        };
        // Its control socket is named after the namespace's inode
        // (src/daemon/control.rs), which the bench's /run/netns file has.
        let ino = std::fs::metadata(format!("/run/netns/{}", self.balancer.name))?.ino();
        let path = format!(
            "{}/{}@{ino}.sock",
            udplb::daemon::control::DIR,
            self.udplb_ifaces()
        );
        let mut sock =
            UnixStream::connect(&path).with_context(|| format!("connecting to {path}"))?;
        sock.set_read_timeout(Some(Duration::from_secs(5)))?;
        sock.write_all(b"status\n")?;
        let mut text = String::new();
        sock.read_to_string(&mut text)?;
        let answer: udplb::daemon::control::Answer =
            serde_json::from_str(&text).with_context(|| format!("udplb's answer on {path}"))?;
        let status = answer.status.context("udplb answered without a status")?;
        Ok(status.verdicts.get(verdict).copied().unwrap_or(0))
    }

    /// Counters that only grow, read before and after a run.
    fn counters(&self) -> Result<Counters> {
        let snmp = |proto, field| self.balancer.try_snmp(proto, field);
        Ok(Counters {
            core: self.balancer_core.times()?,
            rcvbuf_errors: snmp("Udp", "RcvbufErrors")?,
            kernel_forwarded: snmp("Ip", "ForwDatagrams")?,
            ip_in: snmp("Ip", "InReceives")?,
            udplb: self.udplb_count()?,
            xdp_forwarded: self.progs.forwarded()?,
            sink: self.progs.sink_dropped()?,
        })
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    core: ThreadTimes,
    rcvbuf_errors: u64,
    kernel_forwarded: u64,
    ip_in: u64,
    udplb: u64,
    xdp_forwarded: u64,
    sink: u64,
}

/// What one run measured.
struct Run {
    generated: u64,
    secs: f64,
    /// Datagrams the balancer completed (see the module comment).
    completed: u64,
    /// Datagrams that reached a backend socket or the sink.
    reached: u64,
    /// Run time of the balancer core's NAPI thread, seconds.
    core_secs: f64,
    /// Time it waited for CPU 1 while runnable, seconds.
    core_wait: f64,
    /// CPU time of the generator's thread, and time it waited for CPU 0.
    generator_cpu: f64,
    generator_wait: f64,
    /// Share of CPU 1's time busy with anything (/proc/stat).
    cpu1_busy: f64,
    /// udplb's own count (0 for other cases).
    udplb: u64,
    /// The balancer namespace's Ip InReceives.
    ip_in: u64,
}

fn run_once(s: &Setup, duration: Duration) -> Result<Run> {
    let receivers = if s.kind.remote() {
        None
    } else {
        let addrs = LOCAL_BACKENDS.map(|p| SocketAddrV4::new([0, 0, 0, 0].into(), p));
        Some(Receivers::start(&s.balancer, GENERATOR_CPU, &addrs)?)
    };
    let before = s.counters()?;
    let cpu_before = CpuTimes::now()?;
    let prog = s.progs.generator()?;
    let generated = s
        .client
        .spawn(GENERATOR_CPU, move || {
            generate(&prog, "veth-a", duration, MAX_FRAMES)
        })
        .join()
        .map_err(|_| anyhow::anyhow!("generator thread panicked"))??;
    let delivered: u64 = match receivers {
        // Waits until the sockets are drained.
        Some(r) => r.finish()?.iter().sum(),
        None => {
            // The rings (256 frames) drain within microseconds.
            std::thread::sleep(Duration::from_millis(50));
            0
        }
    };
    let cpu_after = CpuTimes::now()?;
    let after = s.counters()?;
    let sink = after.sink - before.sink;
    let completed = match s.kind {
        Kind::Direct | Kind::Udplb | Kind::UdplbGeneric | Kind::Nftables => {
            delivered + (after.rcvbuf_errors - before.rcvbuf_errors)
        }
        Kind::Routing | Kind::RemoteNftables => after.kernel_forwarded - before.kernel_forwarded,
        Kind::XdpFwd => after.xdp_forwarded - before.xdp_forwarded,
        Kind::RemoteUdplb | Kind::RemoteUdplbGeneric | Kind::Dsr(_) => after.udplb - before.udplb,
    };
    Ok(Run {
        generated: generated.frames,
        secs: generated.secs,
        completed,
        reached: if s.kind.remote() { sink } else { delivered },
        core_secs: after.core.run - before.core.run,
        core_wait: after.core.wait - before.core.wait,
        generator_cpu: generated.cpu_secs,
        generator_wait: generated.wait_secs,
        cpu1_busy: cpu_after.busy_share(&cpu_before, BALANCER_CPU),
        udplb: after.udplb - before.udplb,
        ip_in: after.ip_in - before.ip_in,
    })
}

/// Per-case samples, one value per round.
#[derive(Default)]
struct Collected {
    per_core: Samples,
    rate: Samples,
    ns_per_datagram: Samples,
    core_busy: Samples,
    core_waited: Samples,
    cpu1_busy: Samples,
    reached: Samples,
    offered: Samples,
    udplb_counted: Samples,
}

impl Collected {
    fn add(&mut self, r: &Run) {
        let done = r.completed as f64;
        self.per_core.push(done / r.core_secs / 1e3);
        self.rate.push(done / r.secs / 1e3);
        self.ns_per_datagram.push(r.core_secs * 1e9 / done);
        self.core_busy.push(100.0 * r.core_secs / r.secs);
        self.core_waited.push(100.0 * r.core_wait / r.secs);
        self.cpu1_busy.push(100.0 * r.cpu1_busy);
        self.reached.push(100.0 * r.reached as f64 / done);
        self.offered.push(r.generated as f64 / r.secs / 1e3);
        self.udplb_counted.push(100.0 * r.udplb as f64 / done);
    }
}

/// Runs every case, or those named in `only`.
pub fn run(report: &mut Report, tools: &Tools, only: &[String]) -> Result<()> {
    let mut setups = Vec::new();
    for kind in KINDS
        .into_iter()
        .filter(|k| only.is_empty() || only.iter().any(|o| o == k.key()))
    {
        if let (Kind::Nftables | Kind::RemoteNftables, Err(why)) = (kind, &tools.nft) {
            skip(report, "nic", kind.key(), why);
            continue;
        }
        println!("nic: setting up {}", kind.key());
        setups.push(Setup::new(kind).with_context(|| format!("setting up {}", kind.key()))?);
    }
    println!(
        "nic: {} cases, {FLOWS} flows, {ROUNDS} rounds of {DURATION:?} each (+ warm-up) ...",
        setups.len()
    );
    let _priority = super::priority::Raised::new();
    for s in &setups {
        run_once(s, WARMUP)?;
    }
    let mut collected: Vec<Collected> = setups.iter().map(|_| Collected::default()).collect();
    for round in 0..ROUNDS {
        for (s, col) in setups.iter_mut().zip(&mut collected) {
            if stop_requested() {
                bail!("interrupted");
            }
            let r = run_once(s, DURATION)?;
            if r.completed == 0 {
                let state = match s.udplb.as_mut().map(|u| u.check_alive()) {
                    Some(Err(e)) => format!(": {e:#}"),
                    Some(Ok(())) => "; udplb is still running".into(),
                    None => String::new(),
                };
                bail!(
                    "{}: the balancer completed no datagram{state}",
                    s.kind.key()
                );
            }
            println!(
                "nic: round {}/{ROUNDS} {:<25} {:>6.0} k per core-second, {:>6.0} k/s, core \
                 busy {:>3.0} % (waited {:>3.0} %, CPU1 {:>3.0} %), {:>7.0} k/s offered \
                 (generator CPU {:>3.0} %, waited {:>3.0} %), reached {:.1} %, udplb {}, Ip InReceives {}",
                round + 1,
                s.kind.key(),
                r.completed as f64 / r.core_secs / 1e3,
                r.completed as f64 / r.secs / 1e3,
                100.0 * r.core_secs / r.secs,
                100.0 * r.core_wait / r.secs,
                100.0 * r.cpu1_busy,
                r.generated as f64 / r.secs / 1e3,
                100.0 * r.generator_cpu / r.secs,
                100.0 * r.generator_wait / r.secs,
                100.0 * r.reached as f64 / r.completed as f64,
                r.udplb,
                r.ip_in,
            );
            col.add(&r);
        }
    }
    for s in &mut setups {
        if let Some(u) = s.udplb.as_mut() {
            let out = u.stop();
            if let Some(line) = out.lines().find(|l| l.contains("verdicts:")) {
                println!("nic: {} final {}", s.kind.key(), line.trim());
            }
        }
    }
    let rows: Vec<(Kind, &Collected)> = setups.iter().map(|s| s.kind).zip(&collected).collect();
    let local: Vec<_> = rows.iter().filter(|r| !r.0.remote()).copied().collect();
    let remote: Vec<_> = rows.iter().filter(|r| r.0.remote()).copied().collect();
    if !local.is_empty() {
        report.sections.extend(sections(
            "nic_local",
            "local backends",
            &[("direct", Kind::Direct), ("nftables", Kind::Nftables)],
            &local,
        ));
    }
    if !remote.is_empty() {
        report.sections.extend(sections(
            "nic_remote",
            "remote backends",
            &[
                ("XDP fwd", Kind::XdpFwd),
                ("routing", Kind::Routing),
                ("nftables", Kind::RemoteNftables),
            ],
            &remote,
        ));
    }
    Ok(())
}

/// Two sections: per balancer-core second (the figure judged), and per wall
/// second with what reached the backends.
fn sections(
    key: &str,
    what: &str,
    bases: &[(&str, Kind)],
    rows: &[(Kind, &Collected)],
) -> Vec<Section> {
    let find = |k: Kind| rows.iter().find(|r| r.0 == k).map(|r| r.1);
    let bases: Vec<(&str, &Collected)> = bases
        .iter()
        .filter_map(|&(name, k)| Some((name, find(k)?)))
        .collect();
    let row = |kind: Kind, c: &Collected, unit: &str, pick: fn(&Collected) -> &Samples| {
        let mut out = CaseResult::new(kind.key(), kind.label(), unit, pick(c).clone());
        for (name, b) in &bases {
            out.ratios.push(((*name).into(), pick(c).ratio_to(pick(b))));
        }
        out
    };
    let (mut per_core, mut wall) = (Vec::new(), Vec::new());
    for &(kind, c) in rows {
        let mut r = row(kind, c, "kdgram/core-s", |c| &c.per_core);
        r.extra
            .push(("ns per datagram".into(), c.ns_per_datagram.median()));
        r.extra.push(("core busy %".into(), c.core_busy.median()));
        // Runnable but waiting for CPU 1: other processes on a shared machine.
        r.extra
            .push(("core waited %".into(), c.core_waited.median()));
        per_core.push(r);
        let mut w = row(kind, c, "kdgram/s", |c| &c.rate);
        w.extra.push(("reached %".into(), c.reached.median()));
        w.extra.push(("offered k/s".into(), c.offered.median()));
        w.extra.push(("CPU1 busy %".into(), c.cpu1_busy.median()));
        if matches!(
            kind,
            Kind::Udplb
                | Kind::UdplbGeneric
                | Kind::RemoteUdplb
                | Kind::RemoteUdplbGeneric
                | Kind::Dsr(_)
        ) {
            w.extra
                .push(("udplb counted %".into(), c.udplb_counted.median()));
        }
        wall.push(w);
    }
    let method = format!(
        "XDP generator (BPF_PROG_RUN live frames, XDP_TX) on CPU {GENERATOR_CPU}, {FLOWS} flows, \
         {}-byte payloads; balancer in veth-b's threaded NAPI kthread on CPU {BALANCER_CPU}; \
         completed datagrams per second of that kthread's run time; {}s per run, {ROUNDS} \
         rounds interleaved; ratios = median of per-round ratios",
        packets::PAYLOAD,
        DURATION.as_secs()
    );
    vec![
        Section {
            key: key.into(),
            title: format!("NIC-speed source, {what}: datagrams per second of the balancer core"),
            method,
            cases: per_core,
        },
        Section {
            key: format!("{key}_wall"),
            title: format!("NIC-speed source, {what}: datagrams completed per second"),
            method: "completed per wall second of the generator's run; reached = share that \
                     arrived at a backend socket (local) or the backend host's XDP sink (remote, \
                     on CPU 0 with the generator)"
                .into(),
            cases: wall,
        },
    ]
}

#[cfg(test)]
mod tests {
    #[test]
    fn case_names_match_the_kinds() {
        for k in super::KINDS {
            assert!(k.key().starts_with("nic_"));
        }
        assert_eq!(super::KINDS.len(), super::CASES.len());
    }

    #[test]
    fn frames_fit_the_generator() {
        for k in super::KINDS {
            let f = super::frames(&k.dsts());
            assert_eq!(f.len(), super::FLOWS);
            assert!(f.len() <= super::super::nic_progs::GEN_MAX_FLOWS);
            assert!(f
                .iter()
                .all(|f| f.len() == super::super::nic_progs::GEN_FRAME_LEN));
        }
    }
}
