//! The balancer while it runs: owns the loaded datapath, what it last wrote
//! into the maps ([`MapWriter`]), the attachments ([`Attachments`]) and the
//! health checks ([`Driver`]), and answers the event loop's calls. Dropping
//! it detaches everything (unless `--pin` keeps it).

use std::cell::RefCell;
use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use libbpf_rs::PrintLevel;

use super::attachments::Attachments;
use super::control::Answer;
use super::health::driver::Driver;
use super::health::Transition;
use super::reload::{self, ReloadError, Reloaded};
use super::report::{self, Removed};
use super::snapshot::{self, Sample, View};
use super::status::{now_unix, ReloadStats, Status};
use super::{notify, warnings};
use crate::abi::Endpoint;
use crate::config::announce::Announce;
use crate::config::settings::Settings;
use crate::config::Config;
use crate::datapath::links::LinkEvent;
use crate::datapath::neighbours::Resolver;
use crate::datapath::{self, host, pin, privileges, sockets, Counters, Datapath, FlowTable};
use crate::plan::MapWriter;
use crate::{say, warn};

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

pub struct Balancer {
    /// The interface list as given (a reload may not change it).
    iface: String,
    /// `--config FILE`: the file a reload re-reads.
    config_path: Option<String>,
    config: Config,
    writer: MapWriter,
    datapath: Datapath,
    attachments: Attachments,
    checks: Driver,
    /// What to announce (`super::announce` does it); a reload updates it.
    announce: Announce,
    /// The last walk of the flow table, and how old it may get before the
    /// next (the `--stats` interval, 5 s without it): walking it costs a
    /// syscall per batch.
    flow_walk: RefCell<Option<(Instant, FlowTable)>>,
    flow_walk_every: Duration,
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
    /// Asks the kernel to resolve the next hops of direct server return
    /// that the datapath found unresolved (datapath/neighbours.rs).
    resolver: Resolver,
}

fn libbpf_print(_level: PrintLevel, msg: String) {
    warn!("{}", msg.trim_end());
}

impl Balancer {
    /// Loads the datapath, writes the maps, starts the health checks and
    /// attaches to every interface of `ifaces` (from [`preflight`]). An
    /// error leaves nothing attached.
    pub fn start(settings: Settings, ifaces: Vec<(String, u32)>) -> Result<Balancer> {
        let Settings {
            iface,
            config,
            config_path,
            announce,
            run,
            ..
        } = settings;
        let veth = (ifaces.iter())
            .map(|(n, _)| n.as_str())
            .find(|n| host::is_veth(n));
        let (xdp_mode, note) = host::mode_for_veths(host::kernel_version(), veth, run.xdp_mode)?;
        if let Some(note) = note {
            say!("{note}");
        }
        let level = match run.verbose {
            0 => PrintLevel::Warn,
            1 => PrintLevel::Info,
            _ => PrintLevel::Debug,
        };
        libbpf_rs::set_print(Some((level, libbpf_print)));

        let mut datapath = Datapath::load_with(&datapath::LoadOptions {
            flow_table_size: Some(run.flow_table_size),
            reuse_flows: match run.pin {
                true => ifaces.first().map(|(name, _)| pin::dir(name).join("flows")),
                false => None,
            },
        })?;
        if datapath.flows_reused() {
            say!("udplb: keeping the pinned flow table");
        }
        let mut writer = MapWriter::default();
        writer
            .apply(&datapath, &config)
            .context("writing the backend maps")?;
        let mut checks = Driver::default();
        checks.configure(&config, &announce)?;
        // The passive rule's first baseline, before any traffic: errors
        // from the first datagrams on count (a backend host's ICMP rate
        // limit lets a burst of 6 through, then one a second).
        if let Ok(c) = datapath.counters(&writer.state().layout(&config)) {
            checks.passive(&config, &c);
        }
        let attachments = Attachments::start(&mut datapath, &ifaces, &run, xdp_mode)?;
        let mut lb = Balancer {
            iface,
            config_path,
            config,
            writer,
            datapath,
            attachments,
            checks,
            announce,
            flow_walk: Default::default(),
            flow_walk_every: run.stats.unwrap_or(Duration::from_secs(5)),
            expiring: VecDeque::new(),
            started: Instant::now(),
            started_unix: now_unix(),
            reloads: ReloadStats::default(),
            removed: Vec::new(),
            samples: Vec::new(),
            resolver: Resolver::open()?,
        };
        lb.say_started();
        // A local backend with no socket is down from the start.
        lb.poll_sockets();
        Ok(lb)
    }

    /// The start's lines: each frontend with its backends, then warnings
    /// about the host, then each backend's health check.
    fn say_started(&self) {
        for fe in &self.config.frontends {
            let backends: Vec<String> = fe.backends.iter().map(|b| b.to_string()).collect();
            say!(
                "  {} -> {} ({})",
                fe.listen,
                backends.join(", "),
                fe.scheme()
            );
        }
        warnings::forwarding(&self.config);
        self.warn_about_sockets();
        for fe in &self.config.frontends {
            for b in &fe.backends {
                let check = fe.health.check_of(&b.name());
                if check.kind != crate::config::CheckKind::None {
                    say!("  {} -> {} health: {check}", fe.listen, b.name());
                }
            }
        }
    }

    /// Logs health transitions and, if there are any, applies the plan
    /// that takes the down backends out of their rings.
    fn transitions(&mut self, ts: Vec<Transition>) {
        if ts.is_empty() {
            return;
        }
        // The plan first, then the lines: a backend logged down is out of
        // its ring.
        let down = self.checks.health().down();
        if let Err(e) = self.writer.apply_with(&self.datapath, &self.config, &down) {
            warn!("udplb: applying health changes: {e:#}");
        }
        for t in &ts {
            say!("{t}");
        }
        self.checks.log_all_down(&self.config, &down);
    }

    /// Every [`SOCKET_POLL`](super::SOCKET_POLL): the socket table, for
    /// local backends' liveness.
    pub fn poll_sockets(&mut self) {
        let ts = self.checks.poll_sockets();
        self.transitions(ts);
    }

    /// Sends due probes and expires late ones.
    pub fn run_probes(&mut self) {
        let ts = self.checks.run_probes();
        self.transitions(ts);
    }

    /// Probe `id`'s socket is ready.
    pub fn probe_ready(&mut self, id: u64) {
        let ts = self.checks.probe_ready(id);
        self.transitions(ts);
    }

    /// When the probes next need [`run_probes`](Self::run_probes).
    pub fn probe_deadline(&self) -> Option<Instant> {
        self.checks.probe_deadline()
    }

    /// The probes' sockets, for the event loop.
    pub fn probe_sources(&self) -> Vec<(std::os::fd::BorrowedFd<'_>, u64, nix::poll::PollFlags)> {
        self.checks.probe_sources()
    }

    /// Whether the socket table needs polling.
    pub fn wants_socket_table(&self) -> bool {
        self.checks.wants_socket_table()
    }

    /// Every [`PASSIVE_INTERVAL`](super::health::driver::PASSIVE_INTERVAL):
    /// the datapath's passive signals into the health state.
    pub fn passive_tick(&mut self) {
        let Ok(c) = self.counters() else {
            return;
        };
        let ts = self.checks.passive(&self.config, &c);
        self.transitions(ts);
    }

    /// Every [`NEIGHBOUR_POLL`](super::NEIGHBOUR_POLL): the next hops
    /// that DSR requests found without a neighbour entry (and were dropped
    /// for), handed to the kernel to resolve.
    pub fn resolve_neighbours(&mut self) {
        let Ok(hops) = self.datapath.unresolved_neighbours() else {
            return;
        };
        for (ifindex, addr) in hops {
            // Refused (the interface went away, say): noted again by the
            // next request, asked again then.
            if let Err(e) = self.resolver.resolve(ifindex, addr) {
                warn!("udplb: {e:#}");
            }
        }
    }

    /// Link events: an interface we are attached to went away, or came
    /// back.
    pub fn link_events(&mut self, events: Vec<LinkEvent>) {
        self.attachments.link_events(&mut self.datapath, events);
    }

    /// The datapath's counters, laid out as the current configuration's
    /// frontends and backends are.
    fn counters(&self) -> Result<Counters> {
        self.datapath
            .counters(&self.writer.state().layout(&self.config))
    }

    /// `--stats`: the counters now. A failed read is reported, not fatal: the
    /// datapath runs on.
    pub fn print_counters(&self) {
        match self.counters().map(|c| self.with_flows(c)) {
            Ok(c) => say!(
                "{}",
                report::render(&self.config, &c, &self.removed, self.checks.health()).trim_end()
            ),
            Err(e) => warn!("udplb: reading counters: {e:#}"),
        }
    }

    /// Warnings about the sockets and addresses of this host, at start and
    /// after each reload that changed something.
    fn warn_about_sockets(&self) {
        let (mut bound, own) = (sockets::bound_udp(), sockets::own_addresses());
        // udplb's own guards of probe answers are no frontend's listener.
        let guards = self.checks.guards();
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
        let lingering = self.writer.state().lingering().clone();
        let before = self.counters();
        let old = self.config.clone();
        let down = self.checks.health().down();
        let result = reload::reload(
            &path,
            &self.iface,
            &self.datapath,
            &mut self.writer,
            &mut self.config,
            &down,
            &mut self.announce,
        );
        if !matches!(result, Err(ReloadError::Rejected(_))) {
            // A socket table that cannot be opened leaves the old one (or
            // none): the socket checks wait for the next reload.
            if let Err(e) = self.checks.configure(&self.config, &self.announce) {
                warn!("udplb: {e:#}");
            }
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
                self.reloads.last_success_unix = Some(now_unix());
                self.reloads.last_result = "ok".into();
            }
            false => {
                self.reloads.failed += 1;
                self.reloads.last_result = answer.error.clone().unwrap_or_default();
            }
        }
        notify::ready(&self.summary());
        let new: BTreeSet<Endpoint> = (self.writer.state().lingering())
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
        if let Err(e) = self.writer.expire(&self.datapath, &keys) {
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
        self.samples
            .push((Instant::now(), Sample::of(&self.config, &c)));
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
        let state = self.writer.state();
        let base = match self.samples.first() {
            Some((t, s)) if self.samples.len() == 2 => Some((s, t.elapsed().as_secs_f64())),
            _ => None,
        };
        Ok(snapshot::status(&View {
            config: &self.config,
            counters: &c,
            health: self.checks.health(),
            removed: &self.removed,
            base,
            fingerprints: &state.fingerprints(&self.config),
            ring_sizes: &state.ring_sizes(&self.config),
            egress: self.attachments.any_egress(),
            interfaces: &self.iface,
            uptime_seconds: self.started.elapsed().as_secs_f64(),
            start_time_unix: self.started_unix,
            reloads: &self.reloads,
        }))
    }

    /// `c` with the live flows per backend of Maglev frontends with a flow
    /// table, from a walk of the table at most once per `flow_walk_every`.
    fn with_flows(&self, c: Counters) -> Counters {
        if !self.config.frontends.iter().any(snapshot::uses_flows) {
            return c;
        }
        let layout = self.writer.state().layout(&self.config);
        let mut walk = self.flow_walk.borrow_mut();
        let stale = (walk.as_ref()).is_none_or(|(t, _)| t.elapsed() >= self.flow_walk_every);
        if stale {
            let slots = snapshot::flow_slots(&layout, &self.config);
            match self.datapath.flows(|slot| slots.get(&slot).copied()) {
                Ok(table) => *walk = Some((Instant::now(), table)),
                Err(e) => warn!("udplb: reading the flow table: {e:#}"),
            }
        }
        match walk.as_ref() {
            Some((_, table)) => snapshot::with_flows(c, &layout, &self.config, table),
            None => c,
        }
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
                let up = weighted.filter(|b| {
                    self.checks
                        .health()
                        .get(fe.listen, b.id())
                        .is_some_and(|h| h.up)
                });
                let up: Vec<_> = up.collect();
                super::announce::Serving {
                    listen: fe.listen,
                    up: up.len(),
                    proven: (up.iter())
                        .filter(|b| self.checks.health().proven(fe.listen, b.id()))
                        .count(),
                }
            })
            .collect()
    }

    /// Whether the programs are attached to every interface.
    pub fn attached_everywhere(&self) -> bool {
        self.attachments.everywhere()
    }

    /// An interface where another udplb (`--force`) replaced this one.
    pub fn replaced_on(&self) -> Option<&str> {
        self.attachments.replaced_on()
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
        self.attachments.stop();
        say!("udplb: final counters:");
        say!(
            "{}",
            report::render(&self.config, &counters, &self.removed, self.checks.health()).trim_end()
        );
        Ok(())
    }
}
