//! What a running balancer reports about itself: the one snapshot that
//! `udplb status` prints, `/metrics` exports and the control socket sends as
//! JSON. Built by the balancer from its configuration and the datapath's
//! counters; pure from here on.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    /// The interfaces as given (`eth0` or `eth0,eth1`).
    pub interfaces: String,
    pub pid: u32,
    pub uptime_seconds: f64,
    /// Unix time udplb started.
    #[serde(default)]
    pub start_time_unix: f64,
    /// The rates are over this many seconds before the snapshot (0: no
    /// interval yet, rates are 0).
    pub rate_interval_seconds: f64,
    pub frontends: Vec<FrontendStatus>,
    /// Packets per verdict reason of the XDP program, by reason name: one
    /// per packet received on the interfaces.
    pub verdicts: BTreeMap<String, u64>,
    /// Packets per verdict of the egress program, by name: one per packet
    /// sent on the interfaces it is attached to; empty without one (lo).
    #[serde(default)]
    pub egress_verdicts: BTreeMap<String, u64>,
    /// Flow table events by name (abi::FLOW_COUNTER_NAMES).
    #[serde(default)]
    pub flow_events: BTreeMap<String, u64>,
    /// Entries in the flow table at its last walk, live or idle.
    #[serde(default)]
    pub flow_entries: u64,
    /// How quic frontends routed requests, by outcome
    /// (abi::QUIC_COUNTER_NAMES); empty without quic frontends.
    #[serde(default)]
    pub quic_events: BTreeMap<String, u64>,
    pub reloads: ReloadStats,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FrontendStatus {
    /// `*:9875`, `198.18.0.1:53`, `[2001:2::1]:53`.
    pub listen: String,
    /// "rr", "maglev" or "quic".
    pub sched: String,
    /// What maglev and quic hash: "flow", "client" or "client/N".
    #[serde(default)]
    pub hash: String,
    /// How requests reach the backends: "nat", "ipip", "gue:PORT" or "l2".
    #[serde(default)]
    pub mode: String,
    /// FNV-1a 64 of the backends in ring order, as 16 hex digits: equal on
    /// balancers that send each flow to the same backend.
    pub table_fingerprint: String,
    pub ring_size: u32,
    pub replies: Traffic,
    pub backends: Vec<BackendStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BackendStatus {
    /// `9876` (a local port) or `198.18.1.2:53`.
    pub name: String,
    pub weight: u32,
    /// Configured, or taken away by a reload (its last counters stay for
    /// `report::KEEP_REMOVED`, for the newest `report::MAX_REMOVED`
    /// removed backends).
    pub state: BackendState,
    pub traffic: Traffic,
    #[serde(default)]
    pub health: HealthStatus,
    /// Flows pinned to it whose last reply is within the flow timeout (Maglev
    /// frontends with a flow table): a drained backend is empty at 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_flows: Option<u64>,
    /// What the datapath saw of it without sending anything.
    #[serde(default)]
    pub passive: PassiveStatus,
}

/// A backend's passive signals, as running totals (bpf/icmp.h,
/// bpf/counters.h): ICMP destination-unreachable errors about datagrams sent
/// to it, and replies seen from it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PassiveStatus {
    pub icmp_errors: u64,
    pub replies: u64,
}

/// Whether a backend is in the configuration: "active" and "removed" in
/// JSON.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendState {
    #[default]
    Active,
    Removed,
}

/// What the health checks say: "up" and "down" in JSON.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    #[default]
    Up,
    Down,
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Health::Up => "up",
            Health::Down => "down",
        })
    }
}

/// A backend's health as the checks see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthStatus {
    pub state: Health,
    /// Unix time of the last transition (or of the start).
    pub since_unix: f64,
    pub transitions: u64,
    /// Why it is in this state: "starting up", "2 dns probes timed out"...
    pub cause: String,
    /// Its active check: "none", or "dns every 200ms, ...".
    pub check: String,
}

impl Default for HealthStatus {
    fn default() -> Self {
        HealthStatus {
            state: Health::Up,
            since_unix: 0.0,
            transitions: 0,
            cause: String::new(),
            check: "none".into(),
        }
    }
}

impl HealthStatus {
    pub fn of(h: &super::health::BackendHealth, check: &crate::config::Check) -> HealthStatus {
        HealthStatus {
            state: if h.up { Health::Up } else { Health::Down },
            since_unix: h
                .since
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            transitions: h.transitions,
            cause: h.cause.clone(),
            check: check.to_string(),
        }
    }
}

/// "up 12s (since 09:51:02 UTC: starting up)".
pub fn health_line(h: &HealthStatus, now_unix: f64) -> String {
    let secs = h.since_unix as u64;
    let ago = (now_unix - h.since_unix).max(0.0);
    format!(
        "{} {:.0}s (since {:02}:{:02}:{:02} UTC: {})",
        h.state,
        ago,
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60,
        h.cause
    )
}

/// Packets and bytes, with their rates over the last interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Traffic {
    pub packets: u64,
    pub bytes: u64,
    pub packets_per_second: f64,
    pub bytes_per_second: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReloadStats {
    /// Reloads that applied (a file with no change counts too).
    pub succeeded: u64,
    /// Reloads refused (bad file) or failed (map writes).
    pub failed: u64,
    /// Unix time of the last successful reload, if any.
    pub last_success_unix: Option<f64>,
    /// "ok", or the error the reload answered with ("reload rejected,
    /// configuration unchanged: ..." or "reload failed while writing the
    /// maps: ..."); empty before the first.
    pub last_result: String,
}

impl Traffic {
    /// `now` with rates against `before`, `secs` seconds earlier.
    pub fn since(packets: u64, bytes: u64, before: Option<(u64, u64)>, secs: f64) -> Traffic {
        let rate = |now: u64, then: u64| match secs > 0.0 {
            true => now.saturating_sub(then) as f64 / secs,
            false => 0.0,
        };
        let (p0, b0) = before.unwrap_or((packets, bytes));
        Traffic {
            packets,
            bytes,
            packets_per_second: rate(packets, p0),
            bytes_per_second: rate(bytes, b0),
        }
    }
}

/// Unix time now, in seconds (0 if the clock is before 1970).
pub fn now_unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The state column of `udplb status`: "down" for a configured backend
/// the health checks hold down (its weight column keeps the weight the
/// operator set: 0 there means drained, never down).
fn shown_state(b: &BackendStatus) -> &'static str {
    match (b.state, b.health.state) {
        (BackendState::Active, Health::Down) => "down",
        (BackendState::Active, Health::Up) => "active",
        (BackendState::Removed, _) => "removed",
    }
}

/// `udplb status`: a table in the manner of `ipvsadm -Ln --stats --rate`.
pub fn render_text(s: &Status) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "udplb {} on {} (pid {}), up {:.0} s; rates over the last {:.1} s",
        s.version, s.interfaces, s.pid, s.uptime_seconds, s.rate_interval_seconds
    );
    let _ = writeln!(
        out,
        "{:<28} {:>6} {:>9} {:>14} {:>16} {:>10} {:>12} {:>8}",
        "frontend / backend", "weight", "state", "packets", "bytes", "pkt/s", "bytes/s", "flows"
    );
    for fe in &s.frontends {
        frontend_rows(&mut out, fe);
    }
    totals_lines(&mut out, s);
    out
}

/// A frontend: its backends (each with its health line, if configured),
/// its replies, its ring.
fn frontend_rows(out: &mut String, fe: &FrontendStatus) {
    let mut scheme = match fe.hash.as_str() {
        "" | "flow" => fe.sched.clone(),
        by => format!("{}, by {by}", fe.sched),
    };
    if !matches!(fe.mode.as_str(), "" | "nat") {
        scheme += &format!(", {}", fe.mode);
    }
    let _ = writeln!(out, "{} ({scheme})", fe.listen);
    for b in &fe.backends {
        let _ = writeln!(
            out,
            "  -> {:<23} {:>6} {:>9} {:>14} {:>16} {:>10.0} {:>12.0} {:>8}",
            b.name,
            b.weight,
            shown_state(b),
            b.traffic.packets,
            b.traffic.bytes,
            b.traffic.packets_per_second,
            b.traffic.bytes_per_second,
            b.live_flows.map_or("-".to_string(), |n| n.to_string())
        );
        if b.state == BackendState::Active {
            let _ = writeln!(
                out,
                "     health {}; check {}",
                health_line(&b.health, now_unix()),
                b.health.check
            );
        }
    }
    let r = &fe.replies;
    let _ = writeln!(
        out,
        "  <- {:<23} {:>6} {:>9} {:>14} {:>16} {:>10.0} {:>12.0}",
        "replies", "", "", r.packets, r.bytes, r.packets_per_second, r.bytes_per_second
    );
    let _ = writeln!(
        out,
        "     ring {} entries, fingerprint {}",
        fe.ring_size, fe.table_fingerprint
    );
}

/// Verdicts seen, egress verdicts, flow table and quic events where there
/// are any, and the reloads.
fn totals_lines(out: &mut String, s: &Status) {
    let pairs = |m: &BTreeMap<String, u64>, nonzero: bool| -> String {
        let shown: Vec<String> = (m.iter())
            .filter(|(_, n)| !nonzero || **n > 0)
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        shown.join(", ")
    };
    let _ = writeln!(out, "verdicts: {}", pairs(&s.verdicts, true));
    if !s.egress_verdicts.is_empty() {
        let _ = writeln!(out, "egress verdicts: {}", pairs(&s.egress_verdicts, true));
    }
    if s.flow_events.values().any(|n| *n > 0) || s.flow_entries > 0 {
        let events = pairs(&s.flow_events, false);
        let _ = writeln!(out, "flow table: {} entries; {events}", s.flow_entries);
    }
    if !s.quic_events.is_empty() {
        let _ = writeln!(out, "quic: {}", pairs(&s.quic_events, false));
    }
    let r = &s.reloads;
    let _ = writeln!(
        out,
        "reloads: {} applied, {} refused or failed{}",
        r.succeeded,
        r.failed,
        match r.last_result.as_str() {
            "" => String::new(),
            last => format!("; last: {last}"),
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_differences_over_the_interval() {
        let t = Traffic::since(300, 3000, Some((100, 1000)), 2.0);
        assert_eq!((t.packets_per_second, t.bytes_per_second), (100.0, 1000.0));
        let first = Traffic::since(300, 3000, None, 2.0);
        assert_eq!(first.packets_per_second, 0.0);
        let zero = Traffic::since(300, 3000, Some((100, 1000)), 0.0);
        assert_eq!(zero.bytes_per_second, 0.0);
        // Counters that went back (a backend's slot reused) give 0, not a
        // huge rate.
        assert_eq!(
            Traffic::since(5, 5, Some((9, 9)), 1.0).packets_per_second,
            0.0
        );
    }

    #[test]
    fn the_table_shows_every_backend_and_what_changed() {
        let s = Status {
            version: "0.1.0".into(),
            interfaces: "lo".into(),
            pid: 42,
            uptime_seconds: 12.0,
            rate_interval_seconds: 1.0,
            frontends: vec![FrontendStatus {
                listen: "*:9875".into(),
                sched: "maglev".into(),
                hash: "client/64".into(),
                mode: "nat".into(),
                table_fingerprint: "00112233aabbccdd".into(),
                ring_size: 13,
                replies: Traffic::since(7, 700, None, 1.0),
                backends: vec![
                    BackendStatus {
                        name: "9876".into(),
                        weight: 1,
                        state: BackendState::Active,
                        traffic: Traffic::since(10, 1000, Some((5, 500)), 1.0),
                        health: HealthStatus {
                            state: Health::Down,
                            since_unix: 3600.0 + 62.0,
                            transitions: 1,
                            cause: "2 dns probes timed out".into(),
                            check: "dns every 200ms".into(),
                        },
                        live_flows: Some(3),
                        passive: PassiveStatus::default(),
                    },
                    BackendStatus {
                        name: "9877".into(),
                        weight: 2,
                        state: BackendState::Removed,
                        traffic: Traffic::default(),
                        health: HealthStatus::default(),
                        live_flows: None,
                        passive: PassiveStatus::default(),
                    },
                ],
            }],
            verdicts: [("balanced".to_string(), 10), ("reply".to_string(), 0)].into(),
            egress_verdicts: [("reply".to_string(), 6), ("untouched".to_string(), 0)].into(),
            start_time_unix: 1.0,
            flow_events: Default::default(),
            flow_entries: 0,
            quic_events: Default::default(),
            reloads: ReloadStats {
                succeeded: 2,
                failed: 1,
                last_success_unix: Some(1.0),
                last_result: "rejected: lb.toml:3: backends: bad".into(),
            },
        };
        let t = render_text(&s);
        assert!(t.contains("*:9875 (maglev, by client/64)"), "{t}");
        assert!(t.contains("-> 9876"), "{t}");
        assert!(t.contains("removed"), "{t}");
        assert!(t.contains("fingerprint 00112233aabbccdd"), "{t}");
        assert!(
            t.contains("health down ")
                && t.contains(
                    "(since 01:01:02 UTC: 2 dns probes timed out); check dns every 200ms"
                ),
            "{t}"
        );
        assert!(t.contains("verdicts: balanced 10\n"), "{t}");
        assert!(t.contains("egress verdicts: reply 6\n"), "{t}");
        // Health took 9876 out: "down" in the state column, its weight as
        // set (never 0); 9877, removed, says so.
        let row = |name: &str| {
            let line = t.lines().find(|l| l.starts_with(&format!("  -> {name} ")));
            line.unwrap_or_else(|| panic!("no row for {name} in\n{t}"))
                .split_whitespace()
                .skip(2)
                .take(2)
                .collect::<Vec<_>>()
        };
        assert_eq!(row("9876"), ["1", "down"], "{t}");
        assert_eq!(row("9877"), ["2", "removed"], "{t}");
        assert!(t.contains("last: rejected: lb.toml:3"), "{t}");
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Status>(&json).unwrap(), s);
    }
}
