//! Feeds [`Health`] from its three sources: the active probes
//! ([`Prober`]), the socket table (sock_diag) and the datapath's passive
//! counters. Each entry point returns the transitions it caused; the
//! balancer applies them to the rings ([`Driver::log_all_down`] then says
//! what that means for whole frontends).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use anyhow::Result;
use nix::poll::PollFlags;

use super::probe::{Prober, Target};
use super::{Health, PassiveRule, PassiveSample, Transition};
use crate::config::announce::Announce;
use crate::config::{CheckKind, Config, Listen, OnAllDown};
use crate::datapath::sock_diag::SocketTable;
use crate::datapath::Counters;
use crate::plan::{BackendId, Down};
use crate::{say, warn};

/// How often the passive signals are read, and the rule they feed
/// ([`super::passive_verdict`]): at least 3 ICMP errors and no reply
/// within 3 s take a backend down for 5 s, then it is back on trial. Three,
/// not one: a single stray error (a router's hiccup) is no evidence. The
/// window is long enough for a backend host whose ICMP rate limit
/// (net.ipv4.icmp_ratelimit, per client) lets only one error a second
/// through once its burst of 6 is spent.
pub const PASSIVE_INTERVAL: Duration = Duration::from_millis(200);
pub const PASSIVE_RULE: PassiveRule = PassiveRule {
    window: Duration::from_secs(3),
    min_errors: 3,
    hold: Duration::from_secs(5),
};

#[derive(Default)]
pub struct Driver {
    health: Health,
    prober: Prober,
    /// Opened once some backend needs it, then kept.
    socket_table: Option<SocketTable>,
    /// Frontends whose backends are all down, as last logged.
    all_down: BTreeSet<Listen>,
}

impl Driver {
    /// Every backend's health state, and the active checks, for `config`
    /// (at start, and after each reload that was not refused). The error
    /// is the socket table's that could not be opened: fatal at start,
    /// a warning after a reload (the socket checks then wait for a reload
    /// that opens it).
    pub fn configure(&mut self, config: &Config, announce: &Announce) -> Result<()> {
        self.health.configure(config);
        for w in (self.prober).set_targets(probe_targets(config, announce), Instant::now()) {
            warn!("{w}");
        }
        self.all_down
            .retain(|l| config.frontends.iter().any(|f| f.listen == *l));
        if self.health.wants_socket_table() && self.socket_table.is_none() {
            self.socket_table = Some(SocketTable::open()?);
        }
        Ok(())
    }

    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Whether the socket table needs polling.
    pub fn wants_socket_table(&self) -> bool {
        self.socket_table.is_some() && self.health.wants_socket_table()
    }

    /// The socket table, for local backends' liveness.
    pub fn poll_sockets(&mut self) -> Vec<Transition> {
        if !self.health.wants_socket_table() {
            return Vec::new();
        }
        let Some(table) = self.socket_table.as_mut() else {
            return Vec::new();
        };
        match table.udp_ports() {
            Ok(mut ports) => {
                // Our own probe sockets are not backends.
                for p in self.prober.own_udp_ports() {
                    ports.remove(&p);
                }
                self.health.socket_table(&ports, Instant::now())
            }
            Err(e) => {
                warn!("udplb: {e:#}");
                Vec::new()
            }
        }
    }

    /// Sends due probes and expires late ones.
    pub fn run_probes(&mut self) -> Vec<Transition> {
        let outcomes = self.prober.run(Instant::now());
        (outcomes.into_iter())
            .filter_map(|o| self.health.probe_result(o.frontend, o.backend, o.result))
            .collect()
    }

    /// Probe `id`'s socket is ready.
    pub fn probe_ready(&mut self, id: u64) -> Vec<Transition> {
        let Some(o) = self.prober.ready(id) else {
            return Vec::new();
        };
        (self.health.probe_result(o.frontend, o.backend, o.result))
            .into_iter()
            .collect()
    }

    /// When the probes next need [`run_probes`](Self::run_probes).
    pub fn probe_deadline(&self) -> Option<Instant> {
        self.prober.next_deadline()
    }

    /// The probes' sockets, for the event loop.
    pub fn probe_sources(&self) -> Vec<(BorrowedFd<'_>, u64, PollFlags)> {
        self.prober.sources()
    }

    /// The addresses of the sockets that guard probe answers: bound by
    /// udplb itself, not a frontend's listener.
    pub fn guards(&self) -> Vec<SocketAddr> {
        self.prober.guards()
    }

    /// Every [`PASSIVE_INTERVAL`]: the datapath's passive signals (ICMP
    /// errors about datagrams sent to each backend, replies seen from it,
    /// in `c`) into the health state; [`PASSIVE_RULE`] takes a backend down
    /// for a hold time, then it is back on trial. Only for backends without
    /// an active check: where probes run, they decide, and a backend that
    /// answers them again comes back at once.
    pub fn passive(&mut self, config: &Config, c: &Counters) -> Vec<Transition> {
        let samples = passive_samples(config, c);
        self.health.passive(&samples, PASSIVE_RULE, Instant::now())
    }

    /// After transitions were applied with `down`: one line for each
    /// frontend that has just lost its last backend, or got one back.
    pub fn log_all_down(&mut self, config: &Config, down: &Down) {
        for fe in &config.frontends {
            let all = crate::plan::all_down(fe, down);
            if all && self.all_down.insert(fe.listen) {
                match fe.health.on_all_down {
                    OnAllDown::Open => warn!(
                        "udplb: {}: every backend is down; sending to all of them (fail open; on_all_down = \"drop\" drops instead)",
                        fe.listen
                    ),
                    OnAllDown::Drop => warn!(
                        "udplb: {}: every backend is down; dropping its datagrams (on_all_down = \"drop\")",
                        fe.listen
                    ),
                }
            } else if !all && self.all_down.remove(&fe.listen) {
                say!("udplb: {}: a backend is up again", fe.listen);
            }
        }
    }
}

/// The active checks of `config`. A local backend of an announced frontend
/// is probed on loopback, not at the frontend's address: that address is on
/// this host only once announced, and it is announced only once a probe
/// has answered.
fn probe_targets(config: &Config, announce: &Announce) -> Vec<Target> {
    let announced = |l: &Listen| announce.frontends.contains(l);
    (config.frontends.iter())
        .flat_map(|fe| {
            fe.backends.iter().filter_map(move |b| {
                let mut t = Target::of(fe, b)?;
                if b.addr.is_none() && announced(&fe.listen) {
                    t.addr.set_ip(match t.addr {
                        SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
                        SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
                    });
                }
                Some(t)
            })
        })
        .collect()
}

/// The passive counters of the backends that have no active check.
fn passive_samples(config: &Config, c: &Counters) -> BTreeMap<(Listen, BackendId), PassiveSample> {
    let mut samples = BTreeMap::new();
    for (i, fe) in config.frontends.iter().enumerate() {
        for (j, b) in fe.backends.iter().enumerate() {
            if fe.health.check_of(&b.name()).kind != CheckKind::None {
                continue;
            }
            let Some(p) = c.passive.get(i).and_then(|v| v.get(j)) else {
                continue;
            };
            let sample = PassiveSample {
                icmp_errors: p.icmp_errors,
                replies: p.replies,
            };
            samples.insert((fe.listen, b.id()), sample);
        }
    }
    samples
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::Passive;

    #[test]
    fn announced_local_backends_are_probed_on_loopback() {
        let config =
            Config::from_specs(&["198.18.0.1:53=5301,198.18.1.2:53", "[2001:2::1]:53=5302"])
                .unwrap();
        let mut config = config;
        config.set_check(&CheckKind::with_defaults("dns").unwrap());
        let listen = |i: usize| config.frontends[i].listen;
        let addrs = |a: &Announce| -> Vec<SocketAddr> {
            probe_targets(&config, a).iter().map(|t| t.addr).collect()
        };
        let none = Announce::default();
        assert_eq!(
            addrs(&none),
            ["198.18.0.1:5301", "198.18.1.2:53", "[2001:2::1]:5302"].map(|a| a.parse().unwrap())
        );
        let mut both = Announce::default();
        both.frontends.extend([listen(0), listen(1)]);
        // The remote backend keeps its own address.
        assert_eq!(
            addrs(&both),
            ["127.0.0.1:5301", "198.18.1.2:53", "[::1]:5302"].map(|a| a.parse().unwrap())
        );
    }

    #[test]
    fn passive_samples_only_where_no_probe_runs() {
        let mut config = Config::from_specs(&["53=5301,5302"]).unwrap();
        let c = Counters {
            passive: vec![vec![
                Passive {
                    icmp_errors: 4,
                    replies: 1,
                },
                Passive {
                    icmp_errors: 0,
                    replies: 9,
                },
            ]],
            ..Counters::default()
        };
        let s = passive_samples(&config, &c);
        let fe = &config.frontends[0];
        let first = s[&(fe.listen, fe.backends[0].id())];
        assert_eq!((first.icmp_errors, first.replies), (4, 1));
        assert_eq!(s.len(), 2);
        config.set_check(&CheckKind::with_defaults("udp").unwrap());
        assert!(passive_samples(&config, &c).is_empty());
    }
}
