//! The status snapshot that `udplb status`, /metrics and the status page
//! show, as plain functions of what the balancer holds: the configuration,
//! the counters read from the datapath, the health state, the backends
//! reloads removed, and the samples rates are computed from. No kernel
//! access: the balancer reads, these functions only arrange.

use std::collections::BTreeMap;

use super::health::Health;
use super::report::Removed;
use super::status::{
    BackendState, BackendStatus, FrontendStatus, HealthStatus, PassiveStatus, ReloadStats, Status,
    Traffic,
};
use crate::abi::{EGRESS_VERDICT_NAMES, FLOW_COUNTER_NAMES, QUIC_COUNTER_NAMES, REASON_NAMES};
use crate::config::{Config, FrontendConfig, Listen, Sched};
use crate::datapath::{Counters, FlowTable};
use crate::plan::Layout;

/// Packets and bytes per (frontend, backend name), and replies per
/// frontend: what rates are computed from, whatever reloads did to the
/// counter layout in between.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Sample {
    backends: BTreeMap<(String, String), (u64, u64)>,
    replies: BTreeMap<String, (u64, u64)>,
}

impl Sample {
    pub fn of(config: &Config, c: &Counters) -> Sample {
        let mut s = Sample::default();
        for (i, fe) in config.frontends.iter().enumerate() {
            let listen = fe.listen.to_string();
            for (j, b) in fe.backends.iter().enumerate() {
                let v = c.backends[i][j];
                let key = (listen.clone(), b.name());
                s.backends.insert(key, (v.packets, v.bytes));
            }
            let r = c.replies[i];
            s.replies.insert(listen, (r.packets, r.bytes));
        }
        s
    }
}

/// Everything a snapshot is made of.
pub struct View<'a> {
    pub config: &'a Config,
    /// Laid out as `config`'s frontends and backends.
    pub counters: &'a Counters,
    pub health: &'a Health,
    pub removed: &'a [Removed],
    /// The older of the last two samples and its age in seconds: rates
    /// cover at least one full sampling period. None until there are two.
    pub base: Option<(&'a Sample, f64)>,
    /// Per frontend, in `config`'s order.
    pub fingerprints: &'a [u64],
    pub ring_sizes: &'a [u32],
    /// Whether an egress program is attached (its verdicts are shown).
    pub egress: bool,
    /// The interfaces as given.
    pub interfaces: &'a str,
    pub uptime_seconds: f64,
    pub start_time_unix: f64,
    pub reloads: &'a ReloadStats,
}

pub fn status(v: &View) -> Status {
    let c = v.counters;
    let named = |names: &[&str], values: &[u64]| -> BTreeMap<String, u64> {
        (names.iter().zip(values))
            .map(|(n, x)| (n.to_string(), *x))
            .collect()
    };
    let quic = v.config.frontends.iter().any(|f| f.sched == Sched::Quic);
    Status {
        version: env!("CARGO_PKG_VERSION").into(),
        interfaces: v.interfaces.to_string(),
        pid: std::process::id(),
        uptime_seconds: v.uptime_seconds,
        start_time_unix: v.start_time_unix,
        rate_interval_seconds: v.base.map_or(0.0, |(_, secs)| secs),
        frontends: frontends(v),
        verdicts: named(&REASON_NAMES, &c.reasons),
        egress_verdicts: match v.egress {
            true => named(&EGRESS_VERDICT_NAMES, &c.egress),
            false => BTreeMap::new(),
        },
        flow_events: named(&FLOW_COUNTER_NAMES, &c.flow_events),
        flow_entries: c.flow_entries,
        quic_events: match quic {
            true => named(&QUIC_COUNTER_NAMES, &c.quic_events),
            false => BTreeMap::new(),
        },
        reloads: v.reloads.clone(),
    }
}

/// The configured frontends with their backends, then those a reload took
/// away that kept no configured frontend ("removed").
fn frontends(v: &View) -> Vec<FrontendStatus> {
    let (base, secs) = match v.base {
        Some((s, secs)) => (Some(s), secs),
        None => (None, 0.0),
    };
    let mut out = Vec::new();
    for (i, fe) in v.config.frontends.iter().enumerate() {
        let listen = fe.listen.to_string();
        let mut backends: Vec<BackendStatus> = (fe.backends.iter().enumerate())
            .map(|(j, b)| {
                let then = base.and_then(|s| s.backends.get(&(listen.clone(), b.name())));
                let traffic = v.counters.backends[i][j];
                BackendStatus {
                    traffic: Traffic::since(traffic.packets, traffic.bytes, then.copied(), secs),
                    ..backend(v, i, fe, j)
                }
            })
            .collect();
        backends.extend(removed_of(v.removed, &fe.listen));
        let r = v.counters.replies[i];
        let then = base.and_then(|s| s.replies.get(&listen)).copied();
        out.push(FrontendStatus {
            listen,
            sched: fe.sched.code().into(),
            hash: fe.hash.code(),
            mode: fe.mode.code(),
            table_fingerprint: format!("{:016x}", v.fingerprints[i]),
            ring_size: v.ring_sizes[i],
            replies: Traffic::since(r.packets, r.bytes, then, secs),
            backends,
        });
    }
    let mut gone: Vec<_> = v.removed.iter().map(|r| r.frontend).collect();
    gone.retain(|l| v.config.frontends.iter().all(|f| f.listen != *l));
    gone.dedup();
    for listen in gone {
        out.push(FrontendStatus {
            listen: listen.to_string(),
            sched: "removed".into(),
            backends: removed_of(v.removed, &listen),
            ..FrontendStatus::default()
        });
    }
    out
}

/// Backend `j` of frontend `i` (`fe`), but for its traffic.
fn backend(v: &View, i: usize, fe: &FrontendConfig, j: usize) -> BackendStatus {
    let b = &fe.backends[j];
    let c = v.counters;
    BackendStatus {
        name: b.name(),
        weight: b.weight,
        state: BackendState::Active,
        traffic: Traffic::default(),
        health: (v.health.get(fe.listen, b.id()))
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
}

fn removed_of(removed: &[Removed], listen: &Listen) -> Vec<BackendStatus> {
    (removed.iter())
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

/// Whether a frontend's flows are pinned in the flow table: Maglev
/// hashing with a flow timeout.
pub fn uses_flows(fe: &FrontendConfig) -> bool {
    fe.sched.hashes() && fe.flow_timeout > 0
}

/// Per backend slot of the frontends that use the flow table: their flow
/// timeout and the backend's identity, what a walk of the table needs to
/// count a pin as live (see `Datapath::flows`).
pub fn flow_slots(layout: &Layout, config: &Config) -> BTreeMap<u32, (u32, u32)> {
    let mut slots = BTreeMap::new();
    for ((_, fe_slots), fe) in layout.frontends.iter().zip(&config.frontends) {
        for (slot, b) in fe_slots.iter().zip(&fe.backends) {
            let ident = crate::plan::backend_ident(&fe.listen, b);
            slots.insert(*slot, (fe.flow_timeout, ident));
        }
    }
    slots
}

/// `c` with a walk's live flows per backend (config order; empty for
/// frontends without a flow table) and its entry count.
pub fn with_flows(mut c: Counters, layout: &Layout, config: &Config, t: &FlowTable) -> Counters {
    c.flow_entries = t.entries;
    c.live_flows = (layout.frontends.iter().zip(&config.frontends))
        .map(|((_, fe_slots), fe)| match uses_flows(fe) {
            true => (fe_slots.iter())
                .map(|s| t.live.get(s).copied().unwrap_or(0))
                .collect(),
            false => Vec::new(),
        })
        .collect();
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::{Counter, Passive};
    use crate::config::Defaults;
    use std::time::Instant;

    fn counter(packets: u64, bytes: u64) -> Counter {
        Counter { packets, bytes }
    }

    /// `53=5301,5302` (rr) and `54=5401` (quic off) with traffic.
    fn setup() -> (Config, Counters) {
        let config = Config::from_specs(&["53=5301,5302@2", "54=5401"]).unwrap();
        let mut c = Counters {
            backends: vec![
                vec![counter(10, 1000), counter(20, 2000)],
                vec![counter(0, 0)],
            ],
            replies: vec![counter(30, 9000), counter(0, 0)],
            passive: vec![vec![Passive::default(); 2], vec![Passive::default()]],
            ..Counters::default()
        };
        c.passive[0][1] = Passive {
            icmp_errors: 3,
            replies: 0,
        };
        c.reasons[0] = 7;
        (config, c)
    }

    fn view<'a>(
        config: &'a Config,
        c: &'a Counters,
        health: &'a Health,
        removed: &'a [Removed],
        base: Option<(&'a Sample, f64)>,
        reloads: &'a ReloadStats,
    ) -> View<'a> {
        View {
            config,
            counters: c,
            health,
            removed,
            base,
            fingerprints: &[0xabc, 0xdef],
            ring_sizes: &[3, 1],
            egress: false,
            interfaces: "lo",
            uptime_seconds: 12.0,
            start_time_unix: 1e9,
            reloads,
        }
    }

    #[test]
    fn backends_in_config_order_with_their_counters() {
        let (config, c) = setup();
        let (health, reloads) = (Health::default(), ReloadStats::default());
        let s = status(&view(&config, &c, &health, &[], None, &reloads));
        assert_eq!(s.interfaces, "lo");
        assert_eq!(s.frontends.len(), 2);
        let fe = &s.frontends[0];
        assert_eq!((fe.listen.as_str(), fe.sched.as_str()), ("*:53", "rr"));
        assert_eq!(fe.table_fingerprint, "0000000000000abc");
        assert_eq!(fe.ring_size, 3);
        let names: Vec<_> = fe
            .backends
            .iter()
            .map(|b| (b.name.as_str(), b.weight))
            .collect();
        assert_eq!(names, [("5301", 1), ("5302", 2)]);
        assert_eq!(fe.backends[1].traffic.packets, 20);
        assert_eq!(fe.backends[1].passive.icmp_errors, 3);
        assert_eq!(fe.replies.bytes, 9000);
        // No sample yet: no rate, no interval.
        assert_eq!(
            (
                fe.backends[0].traffic.packets_per_second,
                s.rate_interval_seconds
            ),
            (0.0, 0.0)
        );
        assert_eq!(s.verdicts[REASON_NAMES[0]], 7);
        // No egress program, no quic frontend: their counters are not shown.
        assert!(s.egress_verdicts.is_empty() && s.quic_events.is_empty());
        assert_eq!(s.flow_events.len(), FLOW_COUNTER_NAMES.len());
    }

    #[test]
    fn rates_are_over_the_older_sample() {
        let (config, c) = setup();
        let mut before = c.clone();
        before.backends[0][0] = counter(4, 400);
        before.replies[0] = counter(10, 3000);
        let base = Sample::of(&config, &before);
        let (health, reloads) = (Health::default(), ReloadStats::default());
        let s = status(&view(
            &config,
            &c,
            &health,
            &[],
            Some((&base, 2.0)),
            &reloads,
        ));
        let fe = &s.frontends[0];
        assert_eq!(s.rate_interval_seconds, 2.0);
        assert_eq!(fe.backends[0].traffic.packets_per_second, 3.0);
        assert_eq!(fe.backends[0].traffic.bytes_per_second, 300.0);
        assert_eq!(fe.replies.packets_per_second, 10.0);
    }

    #[test]
    fn removed_backends_follow_their_frontend_or_stand_alone() {
        let (config, c) = setup();
        let gone = Config::from_specs_with(&["55=5501", "53=5399"], Defaults::default()).unwrap();
        let removed: Vec<Removed> = (gone.frontends.iter())
            .map(|fe| Removed {
                frontend: fe.listen,
                backend: fe.backends[0],
                counter: counter(5, 50),
                at: Instant::now(),
            })
            .collect();
        let (health, reloads) = (Health::default(), ReloadStats::default());
        let s = status(&view(&config, &c, &health, &removed, None, &reloads));
        assert_eq!(s.frontends.len(), 3);
        let last = &s.frontends[0].backends[2];
        assert_eq!(
            (last.name.as_str(), last.state),
            ("5399", BackendState::Removed)
        );
        assert_eq!(last.traffic.packets, 5);
        let alone = &s.frontends[2];
        assert_eq!(
            (alone.listen.as_str(), alone.sched.as_str()),
            ("*:55", "removed")
        );
        assert_eq!(alone.backends[0].state, BackendState::Removed);
    }

    #[test]
    fn live_flows_only_for_frontends_that_pin() {
        let config = Config::from_specs_with(
            &["53=5301,5302"],
            Defaults {
                sched: Sched::Maglev,
                ..Defaults::default()
            },
        )
        .unwrap();
        let mut config = config;
        config
            .frontends
            .extend(Config::from_specs(&["54=5401"]).unwrap().frontends);
        let layout = Layout {
            frontends: vec![(0, vec![10, 11]), (1, vec![12])],
        };
        let slots = flow_slots(&layout, &config);
        assert_eq!(slots.len(), 3);
        assert_eq!(slots[&10].0, config.frontends[0].flow_timeout);
        let table = FlowTable {
            entries: 9,
            live: [(10, 4), (12, 1)].into_iter().collect(),
        };
        let c = with_flows(Counters::default(), &layout, &config, &table);
        assert_eq!(c.flow_entries, 9);
        assert_eq!(c.live_flows, vec![vec![4, 0], vec![]]);
    }
}
