//! The balancer while it runs: owns the loaded datapath, what it last wrote
//! into the maps, and the attachments. Dropping it detaches everything
//! (unless `--pin` keeps it).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use libbpf_rs::PrintLevel;

use super::control::Answer;
use super::health::probe::{Prober, Target};
use super::health::{self, Health, Transition};
use super::reload::{self, ReloadError, Reloaded};
use super::report::{self, Removed};
use super::status::{
    BackendState, BackendStatus, FrontendStatus, HealthStatus, PassiveStatus, ReloadStats, Status,
    Traffic,
};
use super::{notify, warnings};
use crate::abi::{
    Endpoint, EGRESS_VERDICT_NAMES, FLOW_COUNTER_NAMES, QUIC_COUNTER_NAMES, REASON_NAMES,
};
use crate::config::announce::Announce;
use crate::config::health::CheckKind;
use crate::config::settings::{Settings, XdpMode};
use crate::config::Config;
use crate::datapath::attach::{self, EgressAttachment, XdpAttachment};
use crate::datapath::links::LinkEvent;
use crate::datapath::sock_diag::SocketTable;
use crate::datapath::{self, pin, privileges, sockets, Counters, Datapath, LOOPBACK_IFINDEX};
use crate::plan::Tables;
use crate::{say, warn};
/// How often the passive signals are read, and the rule they feed
/// ([`health::passive_verdict`]): at least 3 ICMP errors and no reply
/// within 3 s take a backend down for 5 s, then it is back on trial. Three,
/// not one: a single stray error (a router's hiccup) is no evidence. The
/// window is long enough for a backend host whose ICMP rate limit
/// (net.ipv4.icmp_ratelimit, per client) lets only one error a second
/// through once its burst of 6 is spent.
pub const PASSIVE_INTERVAL: Duration = Duration::from_millis(200);
pub const PASSIVE_RULE: health::PassiveRule = health::PassiveRule {
    window: Duration::from_secs(3),
    min_errors: 3,
    hold: Duration::from_secs(5),
};

/// Checks what the settings need of this host before anything is loaded:
/// the interfaces exist, `--pin` has a BPF filesystem to pin in, udplb has
/// the privileges. Returns the interfaces' names and indexes.
pub fn preflight(settings: &Settings) -> Result<Vec<(String, u32)>> {
    let ifaces = datapath::interfaces(&settings.iface)?;
    if settings.run.pin {
        pin::check_shared_bpffs()?;
    }
    privileges::check_self(match settings.run.force {
        true => privileges::Task::Force,
        false => privileges::Task::Start,
    })?;
    Ok(ifaces)
}

/// Packets and bytes per (frontend, backend name), and replies per
/// frontend: what rates are computed from, whatever reloads did to the
/// counter layout in between.
#[derive(Default)]
struct Sample {
    backends: BTreeMap<(String, String), (u64, u64)>,
    replies: BTreeMap<String, (u64, u64)>,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// One interface's programs.
struct Attached {
    xdp: XdpAttachment,
    /// None on lo, where XDP sees replies too.
    egress: Option<EgressAttachment>,
}

pub struct Balancer {
    /// `--config FILE`: the file a reload re-reads.
    config_path: Option<String>,
    /// The last walk of the flow table, and how old it may get before the
    /// next (the `--stats` interval): walking it costs a syscall per batch.
    flow_walk: std::cell::RefCell<Option<(Instant, datapath::FlowTable)>>,
    flow_walk_every: std::time::Duration,
    /// The interface list as given (a reload may not change it).
    iface: String,
    pin: bool,
    xdp_mode: XdpMode,
    force: bool,
    /// The interfaces to be attached to, by name: one that is deleted and
    /// created again gets the programs again.
    ifnames: Vec<String>,
    config: Config,
    tables: Tables,
    datapath: Datapath,
    attached: Vec<Attached>,
    /// Pin directories this start created, removed again if it fails.
    created_dirs: Vec<std::path::PathBuf>,
    /// Reply keys that each reload left lingering, oldest first: each
    /// expires one grace period after its reload (one timer each).
    expiring: VecDeque<BTreeSet<Endpoint>>,
    started: Instant,
    /// Unix time of the start, for `udplb_start_time_seconds`.
    started_unix: f64,
    reloads: ReloadStats,
    /// Backends reloads removed, with their last counters.
    removed: Vec<Removed>,
    /// The last two samples (oldest first), taken every second: status
    /// rates are over the interval between them.
    samples: Vec<(Instant, Sample)>,
    /// Every backend's health, and the active checks that feed it.
    health: Health,
    prober: Prober,
    /// The socket table (sock_diag), opened at start.
    socket_table: Option<SocketTable>,
    /// Frontends whose backends are all down, as last logged.
    all_down: BTreeSet<crate::config::Listen>,
    /// What to announce (`super::announce` does it); a reload updates it.
    announce: Announce,
}

fn libbpf_print(_level: PrintLevel, msg: String) {
    warn!("{}", msg.trim_end());
}

impl Balancer {
    /// Reads the configuration, loads the datapath, writes the tables and
    /// attaches to every interface. An error leaves nothing attached.
    pub fn start(settings: Settings, ifaces: Vec<(String, u32)>) -> Result<Balancer> {
        let Settings {
            iface,
            config,
            config_path,
            announce,
            run,
            ..
        } = settings;
        let veth = ifaces
            .iter()
            .map(|(n, _)| n.as_str())
            .find(|n| attach::is_veth(n));
        let (xdp_mode, note) =
            attach::mode_for_veths(attach::kernel_version(), veth, run.xdp_mode)?;
        if let Some(note) = note {
            say!("{note}");
        }

        let level = match run.verbose {
            0 => PrintLevel::Warn,
            1 => PrintLevel::Info,
            _ => PrintLevel::Debug,
        };
        libbpf_rs::set_print(Some((level, libbpf_print)));

        let datapath = Datapath::load_with(&datapath::LoadOptions {
            flow_table_size: Some(run.flow_table_size),
            reuse_flows: match run.pin {
                true => ifaces.first().map(|(name, _)| pin::dir(name).join("flows")),
                false => None,
            },
        })?;
        if datapath.flows_reused() {
            say!("udplb: keeping the pinned flow table");
        }
        let mut tables = Tables::default();
        tables
            .apply(&datapath, &config)
            .context("writing the backend tables")?;
        let mut lb = Balancer {
            config_path,
            flow_walk: Default::default(),
            flow_walk_every: run.stats.unwrap_or(Duration::from_secs(5)),
            iface,
            pin: run.pin,
            xdp_mode,
            force: run.force,
            ifnames: ifaces.iter().map(|(n, _)| n.clone()).collect(),
            config,
            tables,
            datapath,
            attached: Vec::new(),
            created_dirs: Vec::new(),
            expiring: VecDeque::new(),
            started: Instant::now(),
            started_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            reloads: ReloadStats::default(),
            removed: Vec::new(),
            samples: Vec::new(),
            health: Health::default(),
            prober: Prober::default(),
            socket_table: None,
            all_down: BTreeSet::new(),
            announce,
        };
        lb.health.configure(&lb.config);
        for w in lb.prober.set_targets(lb.probe_targets(), Instant::now()) {
            warn!("{w}");
        }
        if lb.health.wants_socket_table() {
            lb.socket_table = Some(SocketTable::open()?);
        }
        // The passive rule's first baseline, before any traffic: errors
        // from the first datagrams on count (a backend host's ICMP rate
        // limit lets a burst of 6 through, then one a second).
        lb.passive_tick();
        let attached = ifaces
            .iter()
            .try_for_each(|(name, ifindex)| lb.attach(name, *ifindex, true))
            .and_then(|()| if lb.pin { lb.pin_all() } else { Ok(()) });
        if let Err(e) = attached {
            // Detach first (dropping the attachments), then remove the pin
            // directories this start made: a failed start leaves nothing.
            lb.attached.clear();
            pin::remove_created(&lb.created_dirs);
            return Err(e);
        }
        for fe in &lb.config.frontends {
            let backends: Vec<String> = fe.backends.iter().map(|b| b.to_string()).collect();
            say!(
                "  {} -> {} ({})",
                fe.listen,
                backends.join(", "),
                fe.sched.name()
            );
        }
        warnings::forwarding(&lb.config);
        lb.warn_about_sockets();
        for fe in &lb.config.frontends {
            for b in &fe.backends {
                let check = fe.health.check_of(&b.name());
                if check.kind != crate::config::CheckKind::None {
                    say!("  {} -> {} health: {check}", fe.listen, b.name());
                }
            }
        }
        // A local backend with no socket is down from the start.
        lb.poll_sockets();
        Ok(lb)
    }

    /// The active checks of the configuration. A local backend of an
    /// announced frontend is probed on loopback, not at the frontend's
    /// address: that address is on this host only once announced, and it
    /// is announced only once a probe has answered.
    fn probe_targets(&self) -> Vec<Target> {
        let announced =
            |fe: &crate::config::FrontendConfig| self.announce.frontends.contains(&fe.listen);
        (self.config.frontends.iter())
            .flat_map(|fe| {
                fe.backends.iter().filter_map(move |b| {
                    let mut t = Target::of(fe, b)?;
                    if b.addr.is_none() && announced(fe) {
                        t.addr.set_ip(match t.addr {
                            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
                        });
                    }
                    Some(t)
                })
            })
            .collect()
    }

    /// Logs health transitions and, if there are any, applies the plan
    /// that takes the down backends out of their rings.
    fn transitions(&mut self, ts: Vec<Transition>) {
        if ts.is_empty() {
            return;
        }
        // The plan first, then the lines: a backend logged down is out of
        // its ring.
        let down = self.health.down();
        if let Err(e) = self.tables.apply_with(&self.datapath, &self.config, &down) {
            warn!("udplb: applying health changes: {e:#}");
        }
        for t in &ts {
            say!("{t}");
        }
        for fe in &self.config.frontends {
            let all = crate::plan::all_down(fe, &down);
            if all && self.all_down.insert(fe.listen) {
                match fe.health.on_all_down {
                    crate::config::OnAllDown::Open => warn!(
                        "udplb: {}: every backend is down; sending to all of them (fail open; on_all_down = \"drop\" drops instead)",
                        fe.listen
                    ),
                    crate::config::OnAllDown::Drop => warn!(
                        "udplb: {}: every backend is down; dropping its datagrams (on_all_down = \"drop\")",
                        fe.listen
                    ),
                }
            } else if !all && self.all_down.remove(&fe.listen) {
                say!("udplb: {}: a backend is up again", fe.listen);
            }
        }
    }

    /// Every 100 ms: the socket table, for local backends' liveness.
    pub fn poll_sockets(&mut self) {
        if !self.health.wants_socket_table() {
            return;
        }
        let Some(table) = self.socket_table.as_mut() else {
            return;
        };
        match table.udp_ports() {
            Ok(mut ports) => {
                // Our own probe sockets are not backends.
                for p in self.prober.own_udp_ports() {
                    ports.remove(&p);
                }
                let ts = self.health.socket_table(&ports, Instant::now());
                self.transitions(ts);
            }
            Err(e) => warn!("udplb: {e:#}"),
        }
    }

    /// Sends due probes and expires late ones.
    pub fn run_probes(&mut self) {
        let outcomes = self.prober.run(Instant::now());
        let ts = (outcomes.into_iter())
            .filter_map(|o| self.health.probe_result(o.frontend, o.backend, o.result))
            .collect();
        self.transitions(ts);
    }

    /// Probe `id`'s socket is ready.
    pub fn probe_ready(&mut self, id: u64) {
        if let Some(o) = self.prober.ready(id) {
            let t = self.health.probe_result(o.frontend, o.backend, o.result);
            self.transitions(t.into_iter().collect());
        }
    }

    /// When the probes next need [`run_probes`](Self::run_probes).
    pub fn probe_deadline(&self) -> Option<Instant> {
        self.prober.next_deadline()
    }

    /// The probes' sockets, for the event loop.
    pub fn probe_sources(&self) -> Vec<(std::os::fd::BorrowedFd<'_>, u64, nix::poll::PollFlags)> {
        self.prober.sources()
    }

    /// Whether the socket table needs polling.
    pub fn wants_socket_table(&self) -> bool {
        self.socket_table.is_some() && self.health.wants_socket_table()
    }

    /// Every [`PASSIVE_INTERVAL`]: the datapath's passive signals (ICMP
    /// errors about datagrams sent to each backend, replies seen from it)
    /// into the health state; [`PASSIVE_RULE`] takes a backend down for a
    /// hold time, then it is back on trial. Only for
    /// backends without an active check: where probes run, they decide, and
    /// a backend that answers them again comes back at once.
    pub fn passive_tick(&mut self) {
        let Ok(c) = self.counters() else {
            return;
        };
        let mut samples = BTreeMap::new();
        for (i, fe) in self.config.frontends.iter().enumerate() {
            for (j, b) in fe.backends.iter().enumerate() {
                if fe.health.check_of(&b.name()).kind != CheckKind::None {
                    continue;
                }
                let Some(p) = c.passive.get(i).and_then(|v| v.get(j)) else {
                    continue;
                };
                let sample = health::PassiveSample {
                    icmp_errors: p.icmp_errors,
                    replies: p.replies,
                };
                samples.insert((fe.listen, b.id()), sample);
            }
        }
        let ts = self.health.passive(&samples, PASSIVE_RULE, Instant::now());
        self.transitions(ts);
    }

    /// Attaches XDP (and, except on lo, the egress program), or with `--pin`
    /// and `adopt` takes over the links a previous `udplb --pin` left.
    fn attach(&mut self, name: &str, ifindex: u32, adopt: bool) -> Result<()> {
        let dir = pin::dir(name);
        let adopt = adopt && self.pin;
        if adopt {
            let created = pin::prepare(&dir)?;
            self.created_dirs.extend(created);
        }
        let dp = &self.datapath;
        let adopted = match adopt {
            true => attach::adopt_xdp(&dir.join(pin::XDP_LINK), dp.xdp_program(), name, ifindex)?,
            false => None,
        };
        let xdp = match adopted {
            Some(x) => x,
            None => attach::attach(dp.xdp_program(), name, ifindex, self.xdp_mode, self.force)?,
        };
        // On lo, replies from local backends come back in through the
        // receive path and XDP rewrites them; elsewhere they leave through
        // egress.
        let egress = if ifindex == LOOPBACK_IFINDEX {
            None
        } else {
            let adopted = match adopt {
                true => attach::adopt_egress(&dir.join(pin::EGRESS_LINK), dp.egress_prog())?,
                false => None,
            };
            match adopted {
                Some(e) => Some(e),
                None => Some(attach::attach_egress(dp.egress_prog(), name, ifindex)?),
            }
        };
        if ifindex != LOOPBACK_IFINDEX {
            self.datapath.add_tx_port(ifindex)?;
        }
        // --force replaces a udplb: both its programs. Its XDP program went
        // above; its egress program, left alone, would go on rewriting
        // replies to its own frontends (and, pinned, outlive us).
        if self.force && egress.is_some() {
            for what in attach::remove_udplb_egress(ifindex, dp.egress_prog())? {
                say!("udplb: {name}: removed the replaced udplb's {what}");
            }
        }
        let replies = egress.as_ref().map_or("XDP", |e| e.kind());
        let pinned = match self.pin {
            true => format!("; pinned under {}", dir.display()),
            false => String::new(),
        };
        say!(
            "udplb: attached to {} ({} XDP, program id {}; replies: {replies}){pinned}; Ctrl-C to stop",
            xdp.ifname,
            xdp.mode,
            xdp.prog_id,
        );
        self.attached.push(Attached { xdp, egress });
        Ok(())
    }

    /// `--pin`: pins links and maps under each interface's directory, once
    /// every interface is attached (an error before leaves nothing pinned).
    fn pin_all(&mut self) -> Result<()> {
        for a in &mut self.attached {
            let dir = pin::dir(&a.xdp.ifname);
            a.xdp.pin(&dir.join(pin::XDP_LINK))?;
            if let Some(e) = &mut a.egress {
                e.pin(&dir.join(pin::EGRESS_LINK))?;
            }
            self.datapath.pin_maps(&dir)?;
        }
        Ok(())
    }

    /// Link events: an interface we are attached to went away (its links
    /// went with it), or one of ours came back under a new ifindex.
    pub fn link_events(&mut self, events: Vec<LinkEvent>) {
        for event in events {
            match event {
                LinkEvent::Gone { name, ifindex } => {
                    let Some(i) = (self.attached.iter())
                        .position(|a| a.xdp.ifindex == ifindex && a.xdp.ifname == name)
                    else {
                        continue;
                    };
                    drop(self.attached.remove(i));
                    self.datapath.remove_tx_port(ifindex);
                    warn!(
                        "udplb: interface {name} (ifindex {ifindex}) went away; \
                         attaching again when it comes back"
                    );
                }
                LinkEvent::New { name, ifindex } => self.reattach(&name, Some(ifindex)),
                LinkEvent::Lost => {
                    // Some events were dropped (the socket's buffer ran
                    // over): look at every interface. One whose name no
                    // longer resolves went away unseen.
                    let gone: Vec<(String, u32)> = (self.attached.iter())
                        .filter(|a| nix::net::if_::if_nametoindex(a.xdp.ifname.as_str()).is_err())
                        .map(|a| (a.xdp.ifname.clone(), a.xdp.ifindex))
                        .collect();
                    let gone = gone
                        .into_iter()
                        .map(|(name, ifindex)| LinkEvent::Gone { name, ifindex });
                    self.link_events(gone.collect());
                    for name in self.ifnames.clone() {
                        self.reattach(&name, None);
                    }
                }
            }
        }
    }

    /// Attaches to `name` if it is one of ours and not attached at its
    /// current ifindex (`None`: look it up).
    fn reattach(&mut self, name: &str, ifindex: Option<u32>) {
        if !self.ifnames.iter().any(|n| n == name) {
            return;
        }
        let Some(ifindex) = ifindex.or_else(|| nix::net::if_::if_nametoindex(name).ok()) else {
            return;
        };
        let current = self.attached.iter().position(|a| a.xdp.ifname == name);
        if let Some(i) = current {
            if self.attached[i].xdp.ifindex == ifindex {
                return;
            }
            // Deleted and created again before we read the deletion.
            let old = self.attached.remove(i);
            self.datapath.remove_tx_port(old.xdp.ifindex);
            warn!(
                "udplb: interface {name} (ifindex {}) went away",
                old.xdp.ifindex
            );
        }
        say!("udplb: interface {name} is back (ifindex {ifindex}); attaching");
        let pinned = self
            .attach(name, ifindex, false)
            .and_then(|()| match self.pin {
                true => self.pin_all(),
                false => Ok(()),
            });
        if let Err(e) = pinned {
            warn!("udplb: attaching to {name} again: {e:#}");
        }
    }

    /// The datapath's counters, laid out as the current configuration's
    /// frontends and backends are.
    fn counters(&self) -> Result<Counters> {
        self.datapath
            .counters(&self.tables.state().layout(&self.config))
    }

    /// `--stats`: the counters now. A failed read is reported, not fatal: the
    /// datapath runs on.
    pub fn print_counters(&self) {
        match self.counters().map(|c| self.with_flows(c)) {
            Ok(c) => say!(
                "{}",
                report::render(&self.config, &c, &self.removed, &self.health).trim_end()
            ),
            Err(e) => warn!("udplb: reading counters: {e:#}"),
        }
    }

    /// Warnings about the sockets and addresses of this host, at start and
    /// after each reload.
    fn warn_about_sockets(&self) {
        let (mut bound, own) = (sockets::bound_udp(), sockets::own_addresses());
        // udplb's own guards of probe answers are no frontend's listener.
        let guards = self.prober.guards();
        bound.retain(|b| !guards.iter().any(|g| (g.ip(), g.port()) == *b));
        for w in warnings::sockets(&self.config, &bound, &own) {
            warn!("{w}");
        }
    }

    /// SIGHUP or `udplb reload`: re-read the configuration file; a bad one
    /// changes nothing. Logs the outcome and returns it as the control
    /// socket's answer, and whether it left reply entries of removed
    /// backends lingering: call [`expire_replies`](Self::expire_replies)
    /// once the grace period is over.
    pub fn reload(&mut self) -> (Answer, bool) {
        let Some(path) = self.config_path.clone() else {
            let msg = "started without --config, there is no file to re-read";
            warn!("udplb: reload ignored: {msg}");
            return (Answer::error(msg), false);
        };
        notify::reloading();
        let lingering = self.tables.state().lingering().clone();
        let before = self.counters();
        let old = self.config.clone();
        let down = self.health.down();
        let result = reload::reload(
            &path,
            &self.iface,
            &self.datapath,
            &mut self.tables,
            &mut self.config,
            &down,
            &mut self.announce,
        );
        if !matches!(result, Err(ReloadError::Rejected(_))) {
            self.health.configure(&self.config);
            for w in self
                .prober
                .set_targets(self.probe_targets(), Instant::now())
            {
                warn!("{w}");
            }
            if self.health.wants_socket_table() && self.socket_table.is_none() {
                match SocketTable::open() {
                    Ok(t) => self.socket_table = Some(t),
                    Err(e) => warn!("udplb: {e:#}"),
                }
            }
            self.all_down
                .retain(|l| self.config.frontends.iter().any(|f| f.listen == *l));
        }
        let answer = match result {
            Ok(Reloaded::Unchanged) => {
                say!("udplb: reloaded {path}: no change");
                Answer::changes(Vec::new())
            }
            Ok(Reloaded::Changed(changes)) => {
                say!("udplb: reloaded {path}:");
                for change in &changes {
                    say!("  {change}");
                }
                if let Ok(c) = before {
                    self.keep_removed(&old, &c);
                }
                self.warn_about_sockets();
                Answer::changes(changes)
            }
            Err(e) => {
                warn!("udplb: {e}");
                let refused = matches!(e, ReloadError::Rejected(_));
                Answer {
                    refused,
                    ..Answer::error(e.to_string())
                }
            }
        };
        match answer.ok {
            true => {
                self.reloads.succeeded += 1;
                self.reloads.last_success_unix = Some(unix_now());
                self.reloads.last_result = "ok".into();
            }
            false => {
                self.reloads.failed += 1;
                self.reloads.last_result = answer.error.clone().unwrap_or_default();
            }
        }
        notify::ready(&self.summary());
        let new: BTreeSet<Endpoint> = (self.tables.state().lingering())
            .difference(&lingering)
            .copied()
            .collect();
        let grace = !new.is_empty();
        if grace {
            self.expiring.push_back(new);
        }
        (answer, grace)
    }

    /// The oldest reload's grace period is over: delete the reply entries it
    /// left (but those a later configuration uses again).
    pub fn expire_replies(&mut self) {
        let Some(keys) = self.expiring.pop_front() else {
            return;
        };
        if let Err(e) = self.tables.expire(&self.datapath, &keys) {
            warn!("udplb: removing the reply entries of removed backends: {e:#}");
        }
    }

    /// After a reload from `old`: backends that are gone keep their
    /// counters (read just before) in the reports; backends that came back
    /// start a new line.
    fn keep_removed(&mut self, old: &Config, before: &Counters) {
        let at = Instant::now();
        let mut gone = Vec::new();
        for (i, fe) in old.frontends.iter().enumerate() {
            let now = self.config.frontends.iter().find(|f| f.listen == fe.listen);
            for (j, b) in fe.backends.iter().enumerate() {
                if now.is_some_and(|f| f.backends.iter().any(|x| x.id() == b.id())) {
                    continue;
                }
                let counter = before.backends[i][j];
                gone.push(Removed {
                    frontend: fe.listen,
                    backend: *b,
                    counter,
                    at,
                });
            }
        }
        report::keep_removed(&mut self.removed, gone, at);
        let config = &self.config;
        self.removed.retain(|r| {
            !config.frontends.iter().any(|f| {
                f.listen == r.frontend && f.backends.iter().any(|b| b.id() == r.backend.id())
            })
        });
    }

    /// One line for the service manager's status.
    pub fn summary(&self) -> String {
        let backends: usize = self.config.frontends.iter().map(|f| f.backends.len()).sum();
        format!(
            "balancing {} frontends over {backends} backends on {}",
            self.config.frontends.len(),
            self.iface
        )
    }

    /// Every second: a sample for the rates in `status`; removed backends
    /// past their time leave the reports.
    pub fn sample(&mut self) {
        report::keep_removed(&mut self.removed, Vec::new(), Instant::now());
        let Ok(c) = self.counters() else {
            return;
        };
        let mut s = Sample::default();
        for (i, fe) in self.config.frontends.iter().enumerate() {
            let listen = fe.listen.to_string();
            for (j, b) in fe.backends.iter().enumerate() {
                let v = c.backends[i][j];
                let key = (listen.clone(), b.name());
                s.backends.insert(key, (v.packets, v.bytes));
            }
            let r = c.replies[i];
            s.replies.insert(listen, (r.packets, r.bytes));
        }
        self.samples.push((Instant::now(), s));
        if self.samples.len() > 2 {
            self.samples.remove(0);
        }
    }

    /// The snapshot `udplb status` and `/metrics` show.
    pub fn status(&self) -> Result<Status> {
        self.snapshot(true)
    }

    /// As [`status`](Self::status) but without live flows: no walk of the
    /// flow table (up to 16M entries), so the status page's history can
    /// take one every few seconds whatever the table's size.
    pub fn status_without_flows(&self) -> Result<Status> {
        self.snapshot(false)
    }

    fn snapshot(&self, flows: bool) -> Result<Status> {
        let c = self.counters()?;
        let c = if flows { self.with_flows(c) } else { c };
        let fingerprints = self.tables.state().fingerprints(&self.config);
        let rings = self.tables.state().ring_sizes(&self.config);
        // Rates: counters now against the older sample, over its age, so
        // the rate covers at least one full sampling period.
        let (base, secs) = match self.samples.first() {
            Some((t, s)) if self.samples.len() == 2 => (Some(s), t.elapsed().as_secs_f64()),
            _ => (None, 0.0),
        };
        let mut frontends = Vec::new();
        for (i, fe) in self.config.frontends.iter().enumerate() {
            let listen = fe.listen.to_string();
            let mut backends: Vec<BackendStatus> = fe
                .backends
                .iter()
                .enumerate()
                .map(|(j, b)| {
                    let v = c.backends[i][j];
                    let then = base.and_then(|s| s.backends.get(&(listen.clone(), b.name())));
                    let h = self.health.get(fe.listen, b.id());
                    BackendStatus {
                        name: b.name(),
                        weight: b.weight,
                        state: BackendState::Active,
                        traffic: Traffic::since(v.packets, v.bytes, then.copied(), secs),
                        health: h
                            .map(|h| HealthStatus::of(h, fe.health.check_of(&b.name())))
                            .unwrap_or_default(),
                        live_flows: c.live_flows.get(i).and_then(|f| f.get(j)).copied(),
                        passive: (c.passive.get(i).and_then(|v| v.get(j)))
                            .map(|p| PassiveStatus {
                                icmp_errors: p.icmp_errors,
                                replies: p.replies,
                            })
                            .unwrap_or_default(),
                    }
                })
                .collect();
            backends.extend(self.removed_of(&fe.listen));
            let r = c.replies[i];
            let then = base.and_then(|s| s.replies.get(&listen)).copied();
            frontends.push(FrontendStatus {
                listen,
                sched: fe.sched.code().into(),
                table_fingerprint: format!("{:016x}", fingerprints[i]),
                ring_size: rings[i],
                replies: Traffic::since(r.packets, r.bytes, then, secs),
                backends,
            });
        }
        let mut gone: Vec<_> = self.removed.iter().map(|r| r.frontend).collect();
        gone.retain(|l| self.config.frontends.iter().all(|f| f.listen != *l));
        gone.dedup();
        for listen in gone {
            frontends.push(FrontendStatus {
                listen: listen.to_string(),
                sched: "removed".into(),
                backends: self.removed_of(&listen),
                ..FrontendStatus::default()
            });
        }
        Ok(Status {
            version: env!("CARGO_PKG_VERSION").into(),
            interfaces: self.iface.clone(),
            pid: std::process::id(),
            uptime_seconds: self.started.elapsed().as_secs_f64(),
            start_time_unix: self.started_unix,
            rate_interval_seconds: secs,
            frontends,
            verdicts: REASON_NAMES
                .iter()
                .zip(c.reasons)
                .map(|(n, v)| (n.to_string(), v))
                .collect(),
            egress_verdicts: match self.attached.iter().any(|a| a.egress.is_some()) {
                true => EGRESS_VERDICT_NAMES
                    .iter()
                    .zip(c.egress)
                    .map(|(n, v)| (n.to_string(), v))
                    .collect(),
                false => BTreeMap::new(),
            },
            flow_events: FLOW_COUNTER_NAMES
                .iter()
                .zip(c.flow_events)
                .map(|(n, v)| (n.to_string(), v))
                .collect(),
            flow_entries: c.flow_entries,
            quic_events: match (self.config.frontends.iter())
                .any(|f| f.sched == crate::config::Sched::Quic)
            {
                true => QUIC_COUNTER_NAMES
                    .iter()
                    .zip(c.quic_events)
                    .map(|(n, v)| (n.to_string(), v))
                    .collect(),
                false => BTreeMap::new(),
            },
            reloads: self.reloads.clone(),
        })
    }

    fn removed_of(&self, listen: &crate::config::Listen) -> Vec<BackendStatus> {
        self.removed
            .iter()
            .filter(|r| r.frontend == *listen)
            .map(|r| BackendStatus {
                name: r.backend.name(),
                weight: r.backend.weight,
                state: BackendState::Removed,
                traffic: Traffic::since(r.counter.packets, r.counter.bytes, None, 0.0),
                health: HealthStatus::default(),
                live_flows: None,
                passive: PassiveStatus::default(),
            })
            .collect()
    }

    /// `c` with the live flows per backend of Maglev frontends with a flow
    /// table, from a walk of the table at most once per `--stats` interval.
    fn with_flows(&self, mut c: Counters) -> Counters {
        let uses_flows =
            |fe: &crate::config::FrontendConfig| fe.sched.hashes() && fe.flow_timeout > 0;
        if !self.config.frontends.iter().any(uses_flows) {
            return c;
        }
        let layout = self.tables.state().layout(&self.config);
        let mut slots = BTreeMap::new();
        for ((_, fe_slots), fe) in layout.frontends.iter().zip(&self.config.frontends) {
            for (slot, b) in fe_slots.iter().zip(&fe.backends) {
                let ident = crate::plan::backend_ident(&fe.listen, b);
                slots.insert(*slot, (fe.flow_timeout, ident));
            }
        }
        let mut walk = self.flow_walk.borrow_mut();
        let stale = walk
            .as_ref()
            .is_none_or(|(t, _)| t.elapsed() >= self.flow_walk_every);
        if stale {
            match self.datapath.flows(|slot| slots.get(&slot).copied()) {
                Ok(table) => *walk = Some((Instant::now(), table)),
                Err(e) => warn!("udplb: reading the flow table: {e:#}"),
            }
        }
        let Some((_, table)) = walk.as_ref() else {
            return c;
        };
        c.flow_entries = table.entries;
        c.live_flows = layout
            .frontends
            .iter()
            .zip(&self.config.frontends)
            .map(|((_, fe_slots), fe)| match uses_flows(fe) {
                true => fe_slots
                    .iter()
                    .map(|s| table.live.get(s).copied().unwrap_or(0))
                    .collect(),
                false => Vec::new(),
            })
            .collect();
        c
    }

    /// What to announce.
    pub fn announce(&self) -> &Announce {
        &self.announce
    }

    /// The announced frontends' backends that are up and proven (weight 0
    /// is not up: a drained backend serves no new flow).
    pub fn serving(&self) -> Vec<super::announce::Serving> {
        let fes = self.config.frontends.iter();
        fes.filter(|fe| self.announce.frontends.contains(&fe.listen))
            .map(|fe| {
                let weighted = fe.backends.iter().filter(|b| b.weight > 0);
                let up =
                    weighted.filter(|b| self.health.get(fe.listen, b.id()).is_some_and(|h| h.up));
                let up: Vec<_> = up.collect();
                super::announce::Serving {
                    listen: fe.listen,
                    up: up.len(),
                    proven: (up.iter())
                        .filter(|b| self.health.proven(fe.listen, b.id()))
                        .count(),
                }
            })
            .collect()
    }

    /// Whether the programs are attached to every interface.
    pub fn attached_everywhere(&self) -> bool {
        (self.ifnames.iter()).all(|n| self.attached.iter().any(|a| a.xdp.ifname == *n))
    }

    /// An interface whose XDP link was detached while the interface is
    /// still there (same name, same ifindex): another udplb (`--force`)
    /// replaced this one. (A deleted interface takes its links with it;
    /// link events handle that.)
    pub fn replaced_on(&self) -> Option<&str> {
        let here = |a: &Attached| {
            nix::net::if_::if_nametoindex(a.xdp.ifname.as_str()).ok() == Some(a.xdp.ifindex)
        };
        (self.attached.iter())
            .find(|a| !a.xdp.still_attached() && here(a))
            .map(|a| a.xdp.ifname.as_str())
    }

    /// The interfaces as given.
    pub fn interfaces(&self) -> &str {
        &self.iface
    }

    /// Detaches (or, with `--pin`, leaves attached) and prints the final
    /// counters.
    pub fn stop(self) -> Result<()> {
        *self.flow_walk.borrow_mut() = None; // the final figures are fresh
        let counters = self.with_flows(self.counters()?);
        for Attached { xdp, egress } in self.attached {
            let name = xdp.ifname.clone();
            if self.pin {
                if let Some(e) = egress {
                    e.keep();
                }
                drop(xdp);
                say!(
                    "udplb: left attached to {name}, pinned under {}; `udplb --unpin {name}` removes it",
                    pin::dir(&name).display()
                );
            } else {
                drop(egress);
                drop(xdp);
                say!("udplb: detached from {name}");
            }
        }
        say!("udplb: final counters:");
        say!(
            "{}",
            report::render(&self.config, &counters, &self.removed, &self.health).trim_end()
        );
        Ok(())
    }
}
